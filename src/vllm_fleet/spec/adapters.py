"""A generate service's `adapters:`: LoRA adapters on its base model, each a model name clients call.

    services:
      - name: chat
        storage_uri: hf://Qwen/Qwen2.5-7B-Instruct
        adapters:
          - name: chat-support            # the model name clients send
            storage_uri: hf://acme/qwen-support-lora
            revision: 3f1c...             # pinned like base weights
            storage: {credentials: {hf_token: {env: HF_TOKEN}}}
        lora:                             # optional: the limits vLLM starts with (derived when left out)
          max_loras: 4
          max_lora_rank: 16

The adapters' files come through the weights stage like base weights; vLLM serves them with --enable-lora, and an
adapter added or removed later is loaded or unloaded at runtime. Only a change of the limits restarts the base
model, so the derived limits leave room (`derived_limits`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from vllm_fleet.spec.errors import SpecIssue, fail, show_value
from vllm_fleet.spec.model import Storage, StorageUriField, Strict, storage_secret_refs
from vllm_fleet.spec.uri import StorageUri, parse_storage_uri

if TYPE_CHECKING:
    from vllm_fleet.spec.model import SecretRef, Service

# The ranks vLLM accepts for --max-lora-rank (vllm.config.lora.MaxLoRARanks, vLLM 0.32).
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# What the derived limits hold at least: adapters can be added up to this many, of up to this rank, without a restart.
MIN_DERIVED_LORAS = 4
MIN_DERIVED_RANK = 16
# A model name clients send: letters, digits and ._/:- (it becomes an HAProxy map key and a metrics label).
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$")


class Adapter(Strict):
    name: str = Field(description="the model name clients call the adapter by")
    storage_uri: StorageUriField
    revision: str | None = None
    storage: Storage = Field(default_factory=Storage)
    rank: int | None = Field(None, ge=1, le=LORA_RANKS[-1],
                             description="the adapter's LoRA rank (r), when its adapter_config.json is not at hand")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not MODEL_NAME.match(v):
            raise fail("is not a model name clients can send",
                       "use letters, digits and . _ / : - (at most 128), starting with a letter or digit")
        return v

    @field_validator("revision")
    @classmethod
    def _revision(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise fail("is empty", "give a revision, or leave the field out")
        return v

    @property
    def directory(self) -> str:
        """The directory its files go to below the service's adapters directory (or a pod's adapters mount)."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", self.name)

    @property
    def uri(self) -> StorageUri:
        return parse_storage_uri(self.storage_uri)

    @property
    def effective_revision(self) -> str | None:
        return self.revision or self.uri.revision

    def secret_refs(self) -> dict[str, SecretRef]:
        """The adapter's storage credentials by reference, keyed like a service's (storage.credentials....)."""
        return storage_secret_refs(self.storage)


class LoraLimits(Strict):
    """What vLLM reserves for adapters at start (--max-loras, --max-lora-rank); a change restarts the service."""

    max_loras: int | None = Field(None, ge=1, le=256, description="adapters in one batch (and kept loaded)")
    max_lora_rank: int | None = Field(None, description=f"one of {', '.join(map(str, LORA_RANKS))}")

    @field_validator("max_lora_rank")
    @classmethod
    def _rank(cls, v: int | None) -> int | None:
        if v is not None and v not in LORA_RANKS:
            above = next((r for r in LORA_RANKS if r >= v), LORA_RANKS[-1])
            raise fail(f"is not a rank vLLM accepts ({', '.join(map(str, LORA_RANKS))})",
                       f"give {above}, the next one up")
        return v


def derived_limits(adapters: Sequence[Adapter], limits: LoraLimits | None) -> tuple[int, int]:
    """(max_loras, max_lora_rank) for a service's adapters: the spec's values, else room for at least
    MIN_DERIVED_LORAS adapters (the next power of two above the count) of the smallest accepted rank that holds
    every known rank and at least MIN_DERIVED_RANK, so that adding an adapter rarely restarts the base model."""
    limits = limits or LoraLimits()
    count = max(len(adapters), 1)
    loras = limits.max_loras or max(MIN_DERIVED_LORAS, 1 << (count - 1).bit_length())
    known = max((a.rank for a in adapters if a.rank), default=0)
    rank = limits.max_lora_rank or next(r for r in LORA_RANKS if r >= max(known, MIN_DERIVED_RANK))
    return loras, rank


def adapter_rules(services: Sequence[Service]) -> Iterator[SpecIssue]:
    """Across the fleet: adapters on generate services only, every adapter name a model name of its own, ranks
    within the service's limit, credentials that match the URI scheme."""
    from vllm_fleet.spec.model import Task
    from vllm_fleet.spec.rules import source_rules

    owners: dict[str, str] = {}
    for i, svc in enumerate(services):
        owners.setdefault(svc.model_name, f"services[{i}] ({svc.name})")
    for i, svc in enumerate(services):
        at = f"services[{i}]"
        if svc.adapters and svc.task is not Task.GENERATE:
            yield SpecIssue(f"{at}.adapters", f"{len(svc.adapters)} adapter(s)",
                            f"are set on a '{svc.task.value}' service; vLLM applies LoRA adapters to generation",
                            "move the adapters to a generate service of their base model")
            continue
        if svc.lora is not None and not svc.adapters:
            yield SpecIssue(f"{at}.lora", show_value(svc.lora.model_dump(exclude_none=True)),
                            "sets adapter limits on a service without adapters",
                            "remove lora, or list the service's adapters")
        loras, max_rank = derived_limits(svc.adapters, svc.lora)
        if len(svc.adapters) > loras:
            yield SpecIssue(f"{at}.lora.max_loras", show_value(loras),
                            f"is below the {len(svc.adapters)} adapters listed; vLLM would swap them in and out",
                            f"give max_loras: {len(svc.adapters)} or more, or leave it out to derive it")
        for j, adapter in enumerate(svc.adapters):
            here = f"{at}.adapters[{j}]"
            if adapter.name in owners:
                yield SpecIssue(f"{here}.name", show_value(adapter.name),
                                f"is already a model name, of {owners[adapter.name]}",
                                "give every adapter a model name no service or other adapter has")
            owners.setdefault(adapter.name, f"{here} on {svc.name}")
            if adapter.rank and adapter.rank > max_rank:
                yield SpecIssue(f"{here}.rank", show_value(adapter.rank),
                                f"is above the service's max_lora_rank {max_rank}",
                                f"raise {at}.lora.max_lora_rank to "
                                f"{next(r for r in LORA_RANKS if r >= adapter.rank)}, or leave it out to derive it")
            yield from source_rules(adapter.uri, adapter.revision, adapter.storage, here)
