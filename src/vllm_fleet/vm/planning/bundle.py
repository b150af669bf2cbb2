"""An air-gapped fleet's bundle, planned: what a fleet needs carried across, the signed manifest that lists it, and
the checks of a bundle's bytes against that manifest before anything is installed.

A bundle is one uncompressed tar (its items are compressed already, or are weights that do not compress):

    manifest.json        every item: its path in the bundle, sha256, size, kind, where it goes, who needs it
    manifest.json.asc    a detached OpenPGP signature of manifest.json (GnuPG)
    items/...            the items, each exactly once, regular files only

`vllm-fleet bundle create` writes it on a connected machine (vm/running/bundle.py); `vllm-fleet bundle verify` and
the deploy from a bundle read it back with `read_members`, which refuses a second reader's tricks (a member twice,
a path out of the bundle, a link, a member the manifest does not list) as well as a changed or missing byte.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Literal

from pydantic import ValidationError

from vllm_fleet.spec import SpecIssue
from vllm_fleet.vm.planning.fleet import FleetPlan
from vllm_fleet.vm.planning.plan import PlanModel

FORMAT: Literal[1] = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.asc"
ITEMS = "items/"
# A hub revision that names one commit, whatever the branch does later.
COMMIT = re.compile(r"^[0-9a-f]{40}$")
ItemKind = Literal["collection", "wheel", "image", "weights", "deb"]
CHUNK = 1 << 20


class BundleItem(PlanModel):
    """One file of the bundle: `path` under items/, what it is, where it goes and which spec entries need it.
    `identity` names what it was made from (an image id, a weights source at its revision and file, a wheel's
    file name), so that `--since` can reuse it without making it again."""

    path: str
    kind: ItemKind
    identity: str
    sha256: str
    size: int
    dest: str
    needed_by: list[str] = []


class BaseBundle(PlanModel):
    """The bundle a `--since` bundle was written against: its items that are not in this one are read there."""

    file: str
    manifest_sha256: str


class Manifest(PlanModel):
    format: Literal[1] = FORMAT
    created: str
    # The sha256 of the fleet plan's parts the bundle serves (services, weights, images), to tell a bundle made for
    # another spec.
    fleet_digest: str
    since: BaseBundle | None = None
    items: list[BundleItem]

    def dumps(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()

    def by_path(self) -> dict[str, BundleItem]:
        return {item.path: item for item in self.items}


@dataclass(frozen=True)
class Need:
    """Something the fleet needs from a bundle: an item of `kind` made from `identity`, for `needed_by`."""

    kind: ItemKind
    identity: str
    needed_by: tuple[str, ...]


def weights_identity(uri: str, revision: str | None) -> str:
    return f"{uri}@{revision}" if revision else uri


def fleet_needs(plan: FleetPlan) -> list[Need]:
    """Every image and set of weights the plan's services and adapters use (the collection, the wheels and the
    host packages are needed by every fleet and are not listed here), each once, with the entries that use it."""
    users: dict[tuple[ItemKind, str], set[str]] = {}
    for host in plan.hosts.values():
        for svc in host.services:
            users.setdefault(("image", svc.image), set()).add(f"services.{svc.name}.image")
        for w in host.weights:
            entry = f"services.{w.service}" + (f".adapters.{w.name}" if w.kind == "adapter" else "")
            users.setdefault(("weights", weights_identity(w.source.uri, w.source.revision)), set()).add(entry)
    return [Need(kind, identity, tuple(sorted(by))) for (kind, identity), by in sorted(users.items())]


def fleet_digest(plan: FleetPlan) -> str:
    return hashlib.sha256(json.dumps([n.__dict__ for n in fleet_needs(plan)], sort_keys=True).encode()).hexdigest()


def unpinned(plan: FleetPlan) -> list[SpecIssue]:
    """Weights a bundle cannot pin: a hub source must name one commit (its branch moves; the bundle would carry
    whatever the branch held that day and name it as the spec's)."""
    issues: dict[str, SpecIssue] = {}
    for host in plan.hosts.values():
        for w in host.weights:
            if w.source.scheme not in ("hf", "ms") or (w.source.revision and COMMIT.match(w.source.revision)):
                continue
            at = f"services.{w.service}" + (f".adapters.{w.name}" if w.kind == "adapter" else "") + ".revision"
            issues[at] = SpecIssue(at, repr(w.source.revision), "is not a pinned commit: a bundle carries one "
                                   "revision of the weights, and a branch or no revision names no single one",
                                   "give the 40-hex commit id the branch points at "
                                   "(huggingface_hub.model_info(repo).sha)")
    return list(issues.values())


def missing_needs(manifest: Manifest, plan: FleetPlan, packages: Mapping[str, list[str]]) -> list[str]:
    """What the fleet needs that the manifest has no item for, each named with who needs it: its images and
    weights, the host `packages` its stages install (package name: stages), the collection and the wheels."""
    have = {(item.kind, item.identity.split("#", 1)[0]) for item in manifest.items}
    kinds = {item.kind for item in manifest.items}
    missing = [f"{need.kind} {need.identity} (needed by {', '.join(need.needed_by)})"
               for need in fleet_needs(plan) if (need.kind, need.identity) not in have]
    debs = {item.identity.split("_", 1)[0] for item in manifest.items if item.kind == "deb"}
    missing += [f"the package {name} (installed by {', '.join(stages)})"
                for name, stages in packages.items() if name not in debs]
    missing += [f"the {kind} (needed by every fleet)" for kind in ("collection", "wheel") if kind not in kinds]
    return missing


class BundleError(Exception):
    """A bundle that must not be used, with every reason (each names the item)."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("the bundle is refused, before any host is touched:\n" +
                         "\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True)
class Member:
    """A tar member as the reader found it: its name, whether it is a regular file, and its bytes (a stream)."""

    name: str
    regular: bool
    stream: IO[bytes] | None


def safe_item_path(name: str) -> bool:
    """A path inside items/: relative, no empty, '.' or '..' part, no backslash or NUL, no leading slash."""
    if not name.startswith(ITEMS) or "\\" in name or "\x00" in name:
        return False
    parts = name[len(ITEMS):].split("/")
    return all(p not in ("", ".", "..") for p in parts)


def check_members(members: Iterator[Member], manifest: Manifest, *, partial: bool = False
                  ) -> tuple[set[str], list[str]]:
    """Read every member once, hashing each listed item as it streams. Returns (the item paths found intact,
    problems). `partial`: a `--since` bundle, whose absent items are looked for in its base."""
    listed = manifest.by_path()
    seen: set[str] = set()
    intact: set[str] = set()
    problems: list[str] = []
    for member in members:
        if member.name in (MANIFEST, SIGNATURE):
            if member.name in seen:
                problems.append(f"{member.name} is in the bundle twice (a second reader could take the other one)")
            seen.add(member.name)
            continue
        if not safe_item_path(member.name):
            problems.append(f"member {member.name!r} is outside items/ or has an unsafe path")
            continue
        if member.name in seen:
            problems.append(f"{member.name} is in the bundle twice (a second reader could take the other one)")
            intact.discard(member.name)
            continue
        seen.add(member.name)
        item = listed.get(member.name)
        if item is None:
            problems.append(f"{member.name} is not in the manifest")
            continue
        if not member.regular or member.stream is None:
            problems.append(f"{member.name} is not a regular file (a link or a device)")
            continue
        digest, size = hashlib.sha256(), 0
        while chunk := member.stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        if size != item.size or digest.hexdigest() != item.sha256:
            problems.append(f"{member.name} ({item.kind} {item.identity}) does not match the manifest: "
                            f"{size} bytes with sha256 {digest.hexdigest()[:16]}..., the manifest says {item.size} "
                            f"bytes with sha256 {item.sha256[:16]}...")
            continue
        intact.add(member.name)
    if not partial:
        problems += [f"{path} ({item.kind} {item.identity}) is missing from the bundle"
                     for path, item in listed.items() if path not in seen]
    return intact, problems


def manifest_from(data: bytes) -> Manifest:
    """The manifest's bytes as the model, refusing duplicate keys (a second JSON reader could take the other)."""

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in pairs]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise BundleError([f"{MANIFEST} has the key {', '.join(map(repr, dup))} twice"])
        return dict(pairs)

    try:
        raw = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError([f"{MANIFEST} is not JSON: {exc}"]) from None
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError([f"{MANIFEST}: {e['loc']}: {e['msg']}" for e in exc.errors()]) from None
    paths = [item.path for item in manifest.items]
    dup = sorted({p for p in paths if paths.count(p) > 1})
    unsafe = [p for p in paths if not safe_item_path(p)]
    problems = [f"{MANIFEST} lists {p} twice" for p in dup] + [f"{MANIFEST} lists an unsafe path {p!r}" for p in unsafe]
    if problems:
        raise BundleError(problems)
    return manifest
