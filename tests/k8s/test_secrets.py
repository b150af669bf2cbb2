"""Secrets are secret Outputs and secret resource inputs, and never plain text in YAML, messages or logs."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.k8s.harness import FAKE_SECRETS, run_program, unwrap
from tests.k8s.specs import EXAMPLE_STACK, GOOD, load
from vllm_fleet.cli import app

runner = CliRunner()
CASES = [*GOOD, EXAMPLE_STACK]


def spec_of(path):
    return load(path)["config"]["vllm-fleet:spec"] if path == EXAMPLE_STACK else load(path)


def test_secret_values_are_secret_inputs_and_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    run = run_program(spec_of(EXAMPLE_STACK))
    secrets = [r for r in run.custom if r.typ == "kubernetes:core/v1:Secret"]
    assert len(secrets) == 3
    for r in secrets:
        paths: list[str] = []
        plain = unwrap(r.inputs, paths)
        assert paths and all(p.startswith("stringData") for p in paths), r.name
        assert set(plain["stringData"].values()) <= set(FAKE_SECRETS.values())
        assert {"data", "stringData"} <= set(run.monitor.requests[r.name]["additional_secret_outputs"])
    secret_outputs = {k: v for k, v in run.secret_outputs.items() if ".secret-" in k}
    assert len(secret_outputs) == 3 and all(secret_outputs.values())
    for r in run.custom:
        if r.typ != "kubernetes:core/v1:Secret":
            text = repr(r.inputs)
            assert not any(v in text for v in FAKE_SECRETS.values()), r.name
    captured = capsys.readouterr()
    logged = "\n".join(run.logs) + captured.out + captured.err
    assert run.logs, "the mock engine logged nothing; this check would be empty"
    assert not any(v in logged for v in FAKE_SECRETS.values())


def test_urls_and_model_names_are_not_secret() -> None:
    run = run_program(spec_of(EXAMPLE_STACK))
    plain = {k: v for k, v in run.secret_outputs.items() if ".secret-" not in k}
    assert plain and not any(plain.values())


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_rendered_yaml_holds_markers_not_values(path) -> None:
    flag = "--stack-config" if path == EXAMPLE_STACK else "--spec"
    result = runner.invoke(app, ["k8s", "render", flag, str(path), "-o", "-"])
    assert result.exit_code == 0
    assert not any(v in result.output for v in FAKE_SECRETS.values())
    if "pulumi_config" in path.read_text():
        assert "<secret: set by `pulumi config set --secret" in result.stdout


def test_a_spec_error_never_echoes_a_pasted_secret() -> None:
    pasted = "hf_REALLOOKINGTOKEN0123456789abcdefgh"
    spec = {"services": [{"name": "chat", "storage_uri": "hf://a/b",
                          "storage": {"credentials": {"hf_token": pasted}}}]}
    run = run_program(spec)
    assert run.error is not None
    assert run.mocks.resources == []
    assert pasted not in str(run.error)
    assert "services[0].storage.credentials.hf_token" in str(run.error)


def test_a_namespaced_config_key_is_read_from_its_namespace() -> None:
    spec = {"services": [{"name": "chat", "storage_uri": "hf://a/b",
                          "api_key": {"pulumi_config": "shared:apiKey"}}]}
    # The harness prefixes every key with vllm-fleet:, so set the namespaced key directly.
    import json

    import pulumi

    from tests.k8s.harness import RecordingMocks, RecordingMonitor

    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="vllm-fleet", stack="test", preview=False,
                             monitor=RecordingMonitor(mocks))
    pulumi.runtime.set_all_config({"vllm-fleet:spec": json.dumps(spec), "shared:apiKey": "k-from-shared-ns"},
                                  secret_keys=["shared:apiKey"])

    @pulumi.runtime.test
    def body() -> None:
        from vllm_fleet.k8s.program import main

        main()

    body()
    [secret] = [r for r in mocks.resources if r.typ == "kubernetes:core/v1:Secret"]
    assert unwrap(secret.inputs)["stringData"] == {"api-key": "k-from-shared-ns"}


def test_an_unset_secret_config_key_stops_the_program_before_anything_is_registered() -> None:
    run = run_program(load(EXAMPLE_STACK)["config"]["vllm-fleet:spec"], secrets={"hfToken": "x"})
    assert run.mocks.resources == []
    assert run.error is not None
    paths = sorted(i.path for i in run.error.issues)
    assert paths == ["services[0].api_key", "services[1].storage.credentials.s3.access_key_id",
                     "services[1].storage.credentials.s3.secret_access_key"]
    assert "pulumi config set --secret vllmApiKey" in run.error.render()
