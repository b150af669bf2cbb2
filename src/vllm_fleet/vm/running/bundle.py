"""`vllm-fleet bundle create` and `bundle verify`: one signed tar that carries a fleet's collection, controller
wheels, images and weights across to a controller with no route out (the format: vm/planning/bundle.py).

Create runs on a connected machine: it plans the fleet from the inventory (a hub revision that is not a commit is
refused first), makes each item (the collection with ansible-galaxy, the wheels with pip, the images with
`docker save`, the weights from their origins at their revisions), hashes it, and signs the manifest with GnuPG.
With `since`, an item the earlier bundle already holds (same kind, identity and bytes) is not written again; the
manifest still lists every item and names the earlier bundle by its manifest's sha256.

Verify checks the signature against the key file the user names (with gpgv, against a keyring made from that file
alone, so no other key the machine trusts can sign), then every member's bytes against the manifest; nothing is
installed from a bundle that has not passed both.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vllm_fleet.spec import parse_storage_uri
from vllm_fleet.vm.planning.bundle import (
    ITEMS,
    MANIFEST,
    SIGNATURE,
    BaseBundle,
    BundleError,
    BundleItem,
    ItemKind,
    Manifest,
    Member,
    Need,
    check_members,
    fleet_digest,
    fleet_needs,
    manifest_from,
    missing_needs,
    unpinned,
    weights_identity,
)
from vllm_fleet.vm.planning.fleet import FleetPlan
from vllm_fleet.vm.planning.plan import WeightsPlan
from vllm_fleet.vm.running.paths import collection_root

Log = Callable[[str], None]


@dataclass(frozen=True)
class Staged:
    """An item made for the bundle: its file on this machine (None when the base bundle holds it already)."""

    item: BundleItem
    file: Path | None


def sha256_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise BundleError([f"{what} failed ({cmd[0]} exit {proc.returncode}): {proc.stderr.strip()[-600:]}"])
    return proc


# ---- making the items --------------------------------------------------------------------------------------------

def _item(kind: ItemKind, identity: str, path: str, file: Path, dest: str, needed_by: list[str]) -> Staged:
    sha, size = sha256_file(file)
    return Staged(BundleItem(path=ITEMS + path, kind=kind, identity=identity, sha256=sha, size=size, dest=dest,
                             needed_by=needed_by), file)


def collection_items(work: Path, log: Log) -> list[Staged]:
    """The collection, built by ansible-galaxy from the checkout or the installed collection."""
    out = work / "collection"
    out.mkdir()
    log("building the collection")
    # ansible-galaxy beside this interpreter, as the runner finds ansible-playbook, even outside an activated venv.
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    _run([str(galaxy) if galaxy.exists() else "ansible-galaxy", "collection", "build", str(collection_root()),
          "--output-path", str(out)], "ansible-galaxy collection build")
    (built,) = out.glob("*.tar.gz")
    # Two builds of the same files differ in their archive's timestamps; FILES.json (each file's sha256) does not.
    with tarfile.open(built, "r:gz") as tf:
        listing = tf.extractfile("FILES.json")
        files = hashlib.sha256(listing.read() if listing else b"").hexdigest()
    return [_item("collection", f"{built.name}#files:{files}", f"collection/{built.name}", built,
                  "controller: ansible-galaxy collection install", ["the deploy playbook"])]


def wheel_items(work: Path, log: Log, project: Path | None = None) -> list[Staged]:
    """vllm-fleet with its [vm] extra and every dependency, as wheels for this controller's Python."""
    project = project or collection_root()
    if not (project / "pyproject.toml").is_file():
        raise BundleError([f"{project} has no pyproject.toml: run `bundle create` from a checkout of vllm-fleet"])
    out = work / "wheels"
    log("building the controller's wheels (pip wheel .[vm])")
    # A fixed SOURCE_DATE_EPOCH makes vllm-fleet's own wheel the same bytes for the same sources (`--since`).
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(out), f"{project}[vm]"], "pip wheel",
         os.environ | {"SOURCE_DATE_EPOCH": "315532800"})
    return [_item("wheel", w.name, f"wheels/{w.name}", w, "controller: pip install --no-index --find-links",
                  ["vllm-fleet[vm]"]) for w in sorted(out.glob("*.whl"))]


def image_id(ref: str) -> str:
    found = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True,
                           text=True, check=False)
    if found.returncode != 0:
        _run(["docker", "pull", ref], f"docker pull {ref}")
        found = _run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], f"docker image inspect {ref}")
    return found.stdout.strip()


def image_item(need: Need, work: Path, log: Log, reuse: Callable[[ItemKind, str], BundleItem | None]) -> Staged:
    """The image as `docker save` writes it, named by its id: an earlier bundle's archive of the same id is reused
    without saving it again."""
    identity = f"{need.identity}#{image_id(need.identity)}"
    old = reuse("image", identity)
    if old is not None:
        return Staged(old.model_copy(update={"needed_by": list(need.needed_by)}), None)
    slug = identity.split("#", 1)[1].removeprefix("sha256:")[:16]
    file = work / "images" / f"{slug}.tar"
    file.parent.mkdir(exist_ok=True)
    log(f"saving image {need.identity}")
    _run(["docker", "save", "--output", str(file), need.identity], f"docker save {need.identity}")
    return _item("image", identity, f"images/{slug}.tar", file, "hosts: docker load", list(need.needed_by))


def weights_items(need: Need, plan: WeightsPlan, work: Path, log: Log, token: str | None = None) -> list[Staged]:
    """The weights' files as their origin holds them at the pinned revision (an archive stays an archive: the
    hosts' weights stage reads the bundle as it would the origin)."""
    source = plan.source
    root = work / "weights" / plan.slug
    root.mkdir(parents=True)
    log(f"fetching {source.display_uri}")
    if source.scheme == "file":
        src = Path(source.uri.removeprefix("file://"))
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for f in files:
            rel = f.name if src.is_file() else f.relative_to(src).as_posix()
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, root / rel)
    elif source.scheme in ("hf",):
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id=parse_storage_uri(source.uri).repo_id, revision=source.revision,
                          allow_patterns=source.allow_patterns or None, ignore_patterns=source.ignore_patterns or None,
                          local_dir=str(root), token=token, endpoint=source.endpoint)
        shutil.rmtree(root / ".cache", ignore_errors=True)
    elif source.scheme in ("http", "https"):
        import requests

        name = source.uri.rstrip("/").rsplit("/", 1)[-1] or "object"
        with requests.get(source.uri, stream=True, timeout=source.timeout_seconds) as got:
            got.raise_for_status()
            with (root / name).open("wb") as out:
                for chunk in got.iter_content(1 << 20):
                    out.write(chunk)
    else:
        raise BundleError([f"{need.identity}: {source.scheme}:// weights cannot be bundled yet (needed by "
                           f"{', '.join(need.needed_by)}); copy them to a file:// or https:// origin first"])
    return [_item("weights", f"{need.identity}#{f.relative_to(root).as_posix()}",
                  f"weights/{plan.slug}/{f.relative_to(root).as_posix()}", f,
                  f"hosts: the weights stage, as the origin of {source.display_uri}", list(need.needed_by))
            for f in sorted(p for p in root.rglob("*") if p.is_file())]


# Debian 12's archive, as the hosts' own apt reads it (or a mirror: --debian-mirror), and the keyring that signs it.
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def _role_default(role: str, name: str, file: str = "defaults/main.yml") -> object:
    import yaml

    data = yaml.safe_load((collection_root() / "roles" / role / file).read_text()) or {}
    return data[name]


def host_packages(plan: FleetPlan) -> dict[str, list[str]]:
    """The Debian 12 packages the fleet's stages install, each with the stages that install it, read from the roles'
    own defaults (the lists the roles install from). Docker is Debian's own (docker_source: distribution): Docker's
    and NVIDIA's repositories are not Debian's archive and are not bundled."""
    wanted: dict[str, set[str]] = {}

    def add(names: object, stage: str) -> None:
        for name in names if isinstance(names, list) else []:
            wanted.setdefault(str(name), set()).add(stage)

    add(_role_default("docker", "_docker_distribution_packages", "vars/Debian.yml"), "prepare (docker)")
    add(_role_default("docker", "_docker_distribution_compose_packages", "vars/Debian.yml"), "prepare (docker)")
    add(_role_default("firewall", "firewall_packages"), "firewall")
    venv = _role_default("model_weights", "model_weights_venv_packages")
    add(venv.get("Debian") if isinstance(venv, dict) else None, "weights")
    add(_role_default("vllm_server", "vllm_server_packages"), "serve")
    if plan.gateway is not None:
        add(_role_default("gateway", "gateway_packages"), "gateway")
        if plan.gateway.high_availability is not None:
            add(_role_default("gateway", "gateway_ha_packages"), "gateway (high availability)")
    if plan.monitoring is not None:
        add(_role_default("monitoring", "monitoring_exporter_packages"), "monitoring (exporters)")
        add(_role_default("monitoring", "monitoring_packages"), "monitoring")
    return {name: sorted(stages) for name, stages in sorted(wanted.items())}


def deb_package(file_name: str) -> str:
    """The package a .deb file holds, from its file name (name_version_arch.deb)."""
    return file_name.split("_", 1)[0]


def deb_items(packages: dict[str, list[str]], work: Path, log: Log, *, mirror: str = DEBIAN_MIRROR,
              security: str = DEBIAN_SECURITY, arch: str = "amd64") -> list[Staged]:
    """Every package and its whole dependency closure, downloaded by apt from Debian 12's archive (signature
    checked against Debian's keyring) into a private apt state: as if nothing were installed, so that a host
    missing any of them finds it in the bundle."""
    if not Path(DEBIAN_KEYRING).is_file():
        raise BundleError([f"Debian's archive keyring {DEBIAN_KEYRING} is not on this machine: install the "
                           "debian-archive-keyring package (bundle create fetches Debian 12 packages with apt)"])
    root = work / "apt"
    for d in ("lists/partial", "archives/partial", "parts", "prefs"):
        (root / d).mkdir(parents=True)
    (root / "status").touch()
    signed = f"[arch={arch} signed-by={DEBIAN_KEYRING}]"
    (root / "sources.list").write_text(f"deb {signed} {mirror} bookworm main\n"
                                       f"deb {signed} {mirror} bookworm-updates main\n"
                                       f"deb {signed} {security} bookworm-security main\n")
    options = ["-o", f"Dir::Etc::SourceList={root / 'sources.list'}", "-o", f"Dir::Etc::SourceParts={root / 'parts'}",
               "-o", f"Dir::Etc::PreferencesParts={root / 'prefs'}", "-o", f"Dir::State::Lists={root / 'lists'}",
               "-o", f"Dir::State::status={root / 'status'}", "-o", f"Dir::Cache::Archives={root / 'archives'}",
               "-o", f"Dir::Cache={root}", "-o", f"APT::Architecture={arch}", "-o", f"APT::Architectures={arch}",
               "-o", "Debug::NoLocking=1", "-o", "APT::Install-Recommends=false", "-q"]
    log(f"resolving {len(packages)} Debian 12 packages and their dependencies with apt")
    _run(["apt-get", *options, "update"], "apt-get update (Debian 12's archive)")
    _run(["apt-get", *options, "install", "--download-only", "--yes", *packages], "apt-get install --download-only")
    debs = sorted((root / "archives").glob("*.deb"))
    got = {deb_package(d.name) for d in debs}
    lost = [name for name in packages if name not in got]
    if lost:
        raise BundleError([f"apt downloaded no package {name} (needed by {', '.join(packages[name])})"
                           for name in lost])
    from urllib.parse import unquote

    return [_item("deb", unquote(d.name), f"debs/{unquote(d.name)}", d, "hosts: the bundle's apt repository",
                  packages.get(deb_package(d.name), ["a dependency"])) for d in debs]


# ---- signing and writing --------------------------------------------------------------------------------------------

def sign(manifest: Path, key: str, gnupg_home: Path | None = None) -> Path:
    """A detached, armored signature of the manifest by `key` (a key id, fingerprint or user id in the keyring)."""
    env = os.environ | ({"GNUPGHOME": str(gnupg_home)} if gnupg_home else {})
    sig = manifest.with_name(SIGNATURE)
    _run(["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--local-user", key, "--armor",
          "--detach-sign", "--output", str(sig), str(manifest)], f"signing the manifest with key {key}", env)
    return sig


def write_bundle(staged: list[Staged], out: Path, *, fleet: str, key: str, gnupg_home: Path | None = None,
                 since: BaseBundle | None = None) -> Manifest:
    """The tar at `out` (written beside it and renamed, so a failed run leaves no half bundle): the signed
    manifest of every item, and the files of the items not taken from the base bundle."""
    manifest = Manifest(created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), fleet_digest=fleet,
                        since=since, items=[s.item for s in staged])
    with tempfile.TemporaryDirectory(prefix="vllm-fleet-bundle-") as tmp:
        mpath = Path(tmp) / MANIFEST
        mpath.write_bytes(manifest.dumps())
        sig = sign(mpath, key, gnupg_home)
        part = out.with_name(out.name + ".part")
        with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tf:
            tf.add(mpath, MANIFEST)
            tf.add(sig, SIGNATURE)
            for s in staged:
                if s.file is not None:
                    tf.add(s.file, s.item.path, recursive=False)
        part.replace(out)
    return manifest


# ---- reading and verifying ------------------------------------------------------------------------------------------

def _members(tf: tarfile.TarFile) -> Iterator[Member]:
    for m in tf:
        yield Member(m.name, m.isreg(), tf.extractfile(m) if m.isreg() else None)


def _signed_manifest(bundle: Path, key_file: Path) -> tuple[Manifest, bytes]:
    """The manifest, once its signature verifies against `key_file` alone."""
    if not bundle.is_file():
        raise BundleError([f"{bundle} does not exist"])
    if not key_file.is_file():
        raise BundleError([f"the signing key file {key_file} does not exist: give the public key (armored or "
                           "binary) the bundle was signed with"])
    try:
        with tarfile.open(bundle, "r:") as tf:
            found: dict[str, list[tarfile.TarInfo]] = {}
            for m in tf:
                if m.name in (MANIFEST, SIGNATURE):
                    found.setdefault(m.name, []).append(m)
            problems = [f"{name} is in the bundle {len(found[name])} times" for name in found if len(found[name]) > 1]
            problems += [f"{name} is missing from the bundle" for name in (MANIFEST, SIGNATURE) if name not in found]
            if problems:
                raise BundleError(problems)
            data = {}
            for name in (MANIFEST, SIGNATURE):
                f = tf.extractfile(found[name][0]) if found[name][0].isreg() else None
                if f is None:
                    raise BundleError([f"{name} is not a regular file"])
                data[name] = f.read()
    except tarfile.TarError as exc:
        raise BundleError([f"{bundle} is not a readable tar: {exc}"]) from None
    with tempfile.TemporaryDirectory(prefix="vllm-fleet-verify-") as tmp:
        keyring = Path(tmp) / "key.gpg"
        raw = key_file.read_bytes()
        if raw.lstrip().startswith(b"-----BEGIN PGP"):
            _run(["gpg", "--batch", "--dearmor", "--output", str(keyring), str(key_file)], "reading the key file")
        else:
            keyring.write_bytes(raw)
        (Path(tmp) / MANIFEST).write_bytes(data[MANIFEST])
        (Path(tmp) / SIGNATURE).write_bytes(data[SIGNATURE])
        checked = subprocess.run(["gpgv", "--keyring", str(keyring), str(Path(tmp) / SIGNATURE),
                                  str(Path(tmp) / MANIFEST)], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        raise BundleError([f"{MANIFEST}'s signature does not verify against {key_file}: "
                           f"{checked.stderr.strip().splitlines()[-1] if checked.stderr.strip() else 'gpgv failed'}"])
    return manifest_from(data[MANIFEST]), data[MANIFEST]


def verify(bundle: Path, key_file: Path, *, plan: FleetPlan | None = None, base: Path | None = None) -> Manifest:
    """The bundle's manifest, once the signature, every item's bytes (in the base bundle too, for a `--since`
    bundle) and, given a plan, the fleet's needs all check; else BundleError naming every problem."""
    manifest, _ = _signed_manifest(bundle, key_file)
    with tarfile.open(bundle, "r:") as tf:
        intact, problems = check_members(_members(tf), manifest, partial=manifest.since is not None)
    if manifest.since is not None:
        base = base or bundle.with_name(manifest.since.file)
        rest = Manifest(created=manifest.created, fleet_digest=manifest.fleet_digest,
                        items=[i for i in manifest.items if i.path not in intact])
        if not base.is_file():
            problems.append(f"the bundle was written since {manifest.since.file}, which is not at {base}: give it "
                            f"with --base ({len(rest.items)} items are read there)")
        else:
            _, base_bytes = _signed_manifest(base, key_file)
            if hashlib.sha256(base_bytes).hexdigest() != manifest.since.manifest_sha256:
                problems.append(f"{base} is not the bundle this one was written since (its manifest's sha256 "
                                "differs)")
            else:
                with tarfile.open(base, "r:") as tf:
                    members = (m for m in _members(tf) if m.name in rest.by_path() or m.name in (MANIFEST, SIGNATURE))
                    _, base_problems = check_members(members, rest)
                problems += [f"in {base.name}: {p}" for p in base_problems]
    if plan is not None:
        problems += [f"the bundle lacks {m}" for m in missing_needs(manifest, plan, host_packages(plan))]
    if problems:
        raise BundleError(problems)
    return manifest


def read_base(base: Path, key_file: Path | None, *, signer: str, gnupg_home: Path | None = None
              ) -> tuple[Manifest, BaseBundle]:
    """The earlier bundle a `--since` bundle reuses, once its signature verifies: against `key_file`, or else
    against the public half of the key this run signs with (its hashes are copied into the new signed manifest, so
    an unsigned or re-signed base must not be trusted)."""
    if key_file is not None:
        manifest, data = _signed_manifest(base, key_file)
    else:
        env = os.environ | ({"GNUPGHOME": str(gnupg_home)} if gnupg_home else {})
        with tempfile.TemporaryDirectory(prefix="vllm-fleet-signer-") as tmp:
            own = Path(tmp) / "signer.gpg"
            own.write_bytes(subprocess.run(["gpg", "--batch", "--export", signer], capture_output=True, check=False,
                                           env=env).stdout)
            if not own.stat().st_size:
                raise BundleError([f"the signing key {signer} has no public key to check {base.name} with: give "
                                   "--since-key"])
            manifest, data = _signed_manifest(base, own)
    return manifest, BaseBundle(file=base.name, manifest_sha256=hashlib.sha256(data).hexdigest())


def _reused(made: Staged, found: BundleItem | None) -> Staged:
    """What the base bundle already holds is not written again: an item of the same identity, which for the
    collection (its files' digests) and an image (its id) names its content, and for weights and wheels (a source
    file's or a wheel's name) must also have the same bytes."""
    if made.file is None or found is None or found.path != made.item.path:
        return made
    if made.item.kind in ("collection", "image") or found.sha256 == made.item.sha256:
        return Staged(found.model_copy(update={"needed_by": made.item.needed_by}), None)
    return made


Maker = Callable[..., list[Staged]]


def _hub_token(w: WeightsPlan) -> str | None:
    """The hub token of a private repository, from the environment variable its reference names (the value is used
    for the download only: it is in no item and no message)."""
    ref = w.source.scheme == "hf" and w.secrets.hf_token
    if not ref:
        return None
    if "env" not in ref or not os.environ.get(ref["env"]):
        raise BundleError([f"{w.name}: its hub token is referenced as {ref}, which bundle create cannot read: give it "
                           "as {env: NAME} with NAME set in this shell"])
    return os.environ[ref["env"]]


def create(plan: FleetPlan, out: Path, *, key: str, gnupg_home: Path | None = None, since: Path | None = None,
           since_key: Path | None = None, log: Log = print, makers: dict[str, Maker] | None = None,
           debian_mirror: str = DEBIAN_MIRROR, debian_security: str = DEBIAN_SECURITY
           ) -> tuple[Manifest, list[Staged]]:
    """Plan-checked, made, signed and written; returns the manifest and what was staged (file None = reused)."""
    issues = unpinned(plan)
    if issues:
        raise BundleError([f"{i.path}: {i.value} {i.problem}; fix: {i.fix}" for i in issues])
    base_manifest, base = (read_base(since, since_key, signer=key, gnupg_home=gnupg_home) if since is not None
                           else (None, None))
    old = {(i.kind, i.identity): i for i in base_manifest.items} if base_manifest else {}

    def reuse(kind: ItemKind, identity: str) -> BundleItem | None:
        return old.get((kind, identity))

    weights_by_identity: dict[str, WeightsPlan] = {}
    for host in plan.hosts.values():
        for w in host.weights:
            weights_by_identity.setdefault(weights_identity(w.source.uri, w.source.revision), w)
    # Every hub token is read before anything is made: a reference this shell cannot read stops the run at once.
    tokens: dict[str, str | None] = {}
    unreadable: list[str] = []
    for identity, w in weights_by_identity.items():
        try:
            tokens[identity] = _hub_token(w)
        except BundleError as exc:
            unreadable += exc.problems
    if unreadable:
        raise BundleError(unreadable)
    makers = makers or {}
    with tempfile.TemporaryDirectory(prefix="vllm-fleet-bundle-items-", dir=out.parent) as tmp:
        work = Path(tmp)
        staged: list[Staged] = []
        staged += makers.get("collection", collection_items)(work, log)
        staged += makers.get("wheels", wheel_items)(work, log)
        if "debs" in makers:
            staged += makers["debs"](host_packages(plan), work, log)
        else:
            staged += deb_items(host_packages(plan), work, log, mirror=debian_mirror, security=debian_security)
        for need in fleet_needs(plan):
            if need.kind == "image":
                staged.append(makers.get("image", image_item)(need, work, log, reuse))  # type: ignore[arg-type]
            else:
                staged += makers.get("weights", weights_items)(need, weights_by_identity[need.identity], work, log,
                                                               tokens[need.identity])
        staged = [_reused(s, reuse(s.item.kind, s.item.identity)) for s in staged]
        manifest = write_bundle(staged, out, fleet=fleet_digest(plan), key=key, gnupg_home=gnupg_home, since=base)
    return manifest, staged
