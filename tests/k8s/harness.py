"""Run the Pulumi program under mocks and keep what it registered."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor

# The marker Pulumi's RPC layer wraps a secret value in (sig key and secret sig value).
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

# Test-only secret values, recognisable when searching output for leaks.
FAKE_SECRETS = {
    "hfToken": "hf_TESTTOKENnotarealvalue000001",
    "vllmApiKey": "sk-test-api-key-not-real-000002",
    "s3AccessKeyId": "AKIATESTNOTREAL00003",
    "s3SecretAccessKey": "test-s3-secret-not-real-0000000000000004",
    "gcsCredentials": '{"type": "service_account", "private_key": "test-gcs-not-real-5"}',
    "msToken": "ms-test-token-not-real-000006",
}


@dataclass
class Registered:
    typ: str
    name: str
    inputs: dict[str, Any]
    parent: str | None = None


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    resources: list[Registered] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs)))
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


class RecordingMonitor(MockMonitor):
    """The mock monitor, also keeping each registration's parent, dependencies and secret outputs."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.requests: dict[str, dict[str, Any]] = {}
        self.registered_outputs: dict[str, list[str]] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.requests[request.name] = {
            "type": request.type,
            "parent": request.parent,
            "dependencies": list(request.dependencies),
            "additional_secret_outputs": list(request.additionalSecretOutputs),
        }
        return super().RegisterResource(request)

    def RegisterResourceOutputs(self, request: Any) -> Any:
        self.registered_outputs[request.urn] = sorted(request.outputs.fields.keys())
        return super().RegisterResourceOutputs(request)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass
class Run:
    mocks: RecordingMocks
    monitor: RecordingMonitor
    outputs: dict[str, Any]
    secret_outputs: dict[str, bool]
    logs: list[str]
    error: Exception | None = None
    exports: dict[str, Any] = field(default_factory=dict)  # the stack outputs the program exported

    @property
    def custom(self) -> list[Registered]:
        return [r for r in self.mocks.resources if r.typ.startswith("kubernetes:")]


def run_program(spec: Any, secrets: dict[str, str] | None = None) -> Run:
    """Run vllm_fleet.k8s.program.run(spec) under mocks; the spec travels as stack config does."""
    from vllm_fleet.k8s import program

    mocks = RecordingMocks()
    handler = ListHandler()
    logger = logging.getLogger("vllm-fleet-test-pulumi")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="vllm-fleet", stack="test", preview=False, logger=logger,
                             monitor=monitor)
    given = FAKE_SECRETS if secrets is None else secrets
    config = {f"vllm-fleet:{k}": v for k, v in given.items()}
    config["vllm-fleet:spec"] = json.dumps(spec)
    pulumi.runtime.set_all_config(config, secret_keys=[f"vllm-fleet:{k}" for k in given])
    outputs: dict[str, Any] = {}
    secret_outputs: dict[str, bool] = {}
    error: list[Exception] = []

    exports: dict[str, Any] = {}

    @pulumi.runtime.test
    def body() -> Any:
        real_export = pulumi.export
        pulumi.export = lambda name, value: exports.__setitem__(name, value)  # type: ignore[assignment]
        try:
            components = program.run(pulumi.Config("vllm-fleet").require_object("spec"))
        except Exception as exc:
            error.append(exc)
            return None
        finally:
            pulumi.export = real_export
        pending = []
        for name, comp in components.items():
            for attr in ("internal_url", "openai_base_url", "external_url", "served_model_name"):
                out: pulumi.Output[Any] = getattr(comp, attr)

                async def grab(o: pulumi.Output[Any] = out, key: str = f"{name}.{attr}") -> None:
                    outputs[key] = await o.future()
                    secret_outputs[key] = await o.is_secret()

                pending.append(pulumi.Output.from_input(grab()))
            for child in comp.children:
                if child.__class__.__name__ == "Secret":
                    async def grab_secret(o: Any = child.string_data, key: str = f"{name}.{child._name}") -> None:
                        await o.future()
                        secret_outputs[key] = await o.is_secret()

                    pending.append(pulumi.Output.from_input(grab_secret()))
        return pulumi.Output.all(*pending)

    body()
    logger.removeHandler(handler)
    return Run(mocks, monitor, outputs, secret_outputs, handler.messages, error[0] if error else None, exports)


def unwrap(value: Any, secret_paths: list[str] | None = None, path: str = "") -> Any:
    """Mock inputs as plain manifests: secrets unwrapped (their paths noted), whole floats back to ints."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            if secret_paths is not None:
                secret_paths.append(path)
            return unwrap(value["value"], secret_paths, path)
        return {k: unwrap(v, secret_paths, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v, secret_paths, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
