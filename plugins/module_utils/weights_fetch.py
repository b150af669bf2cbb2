"""Publish model weights at <models_root>/<service>/<revision>/: staged, verified, then renamed into place.

Nothing in here imports a network library at module level: checking a completed revision, verifying a
file:// path and pruning work with the host's plain python3; the sources (weights_sources) import
huggingface_hub, boto3 or requests lazily from the fetch venv.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import ssl
import struct
import tarfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

# The options of every module that manages a service's weights directory; documented once in the doc fragment
# vllmfleet.fleet.weights_store.
WEIGHTS_STORE_ARGS = dict(
    service=dict(type="str", required=True),
    models_root=dict(type="path", default="/var/lib/vllm-fleet/models"),
)

MANIFEST = ".vllm-fleet-manifest.json"
STAGING_PREFIX = ".staging-"
LOCK_NAME = ".lock"
PART_SUFFIX = ".part"
CHUNK = 1 << 20
GIB = float(1 << 30)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
# Unpacked size is unknown before the archive is read; budget the archive plus this many times its size.
ARCHIVE_EXPANSION = 2
SAFETENSORS_MAX_HEADER = 100 * (1 << 20)


class WeightsError(Exception):
    """A failure reported to the user; the message names the display URI, never a credential."""


class VerifyError(WeightsError):
    """Downloaded bytes are wrong; the staging directory is discarded rather than resumed."""


@dataclass
class RemoteFile:
    path: str  # relative path inside the model directory
    size: int | None
    sha256: str | None = None  # expected digest, when the origin or the spec gives one
    ref: Any = None  # where the source finds it (URL, object key, ...)
    git_sha1: str | None = None  # a hub's git blob id for small non-LFS files


@dataclass
class Listing:
    revision: str
    files: list[RemoteFile]
    archive: bool = False  # one file that is unpacked into the model directory
    origin: dict[str, Any] = field(default_factory=dict)  # origin metadata recorded in the manifest

    @property
    def total_size(self) -> int:
        return sum(f.size or 0 for f in self.files)


@dataclass
class Outcome:
    changed: bool
    path: str
    revision: str
    manifest: str
    bytes_downloaded: int = 0
    files: int = 0
    total_bytes: int = 0


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def safe_revision(revision: str) -> str:
    """A revision usable as one directory name (branch names may contain '/')."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in revision)
    if not cleaned or cleaned.startswith("."):
        raise WeightsError(f"revision {revision!r} cannot name a directory")
    return cleaned


def fingerprint(*parts: Any) -> str:
    """A stable short revision for origins without one (derived from ETag/Last-Modified/size)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return "r-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def sha256_file(path: str, limit: int | None = None) -> hashlib._Hash:
    h = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as fh:
        while remaining is None or remaining > 0:
            chunk = fh.read(CHUNK if remaining is None else min(CHUNK, remaining))
            if not chunk:
                break
            h.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return h


def git_blob_sha1(path: str) -> str:
    h = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode(), usedforsecurity=False)  # git's object id
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def safetensors_header(path: str) -> tuple[dict[str, Any], int]:
    """(header, header length) of a safetensors file; raise unless the header is a readable mapping."""
    size = os.path.getsize(path)
    name = os.path.basename(path)
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise VerifyError(f"{name} is too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len > SAFETENSORS_MAX_HEADER or 8 + header_len > size:
            raise VerifyError(f"{name} has an unreadable safetensors header (length {header_len})")
        try:
            header = json.loads(fh.read(header_len))
        except ValueError as exc:
            raise VerifyError(f"{name} has a safetensors header that is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise VerifyError(f"{name} has a safetensors header that is not a mapping")
    return header, header_len


def check_safetensors(path: str) -> None:
    """Raise unless the file has a readable safetensors header whose tensors fit the file."""
    size = os.path.getsize(path)
    name = os.path.basename(path)
    header, header_len = safetensors_header(path)
    data_len = size - 8 - header_len
    end = 0
    for tensor, info in header.items():
        if tensor == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1] <= data_len):
            raise VerifyError(f"{name}: tensor {tensor!r} lies outside the file's data")
        end = max(end, offsets[1])
    if end != data_len:
        raise VerifyError(f"{name}: tensors cover {end} bytes but the file holds {data_len} (truncated or padded)")


def free_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def preflight(path: str, needed: int, reserve: int) -> None:
    have = free_bytes(path)
    if needed + reserve > have:
        raise WeightsError(
            f"needs {(needed + reserve) / GIB:.2f} GiB at {path}, has {have / GIB:.2f} GiB free "
            f"({needed / GIB:.2f} GiB of weights + {reserve / GIB:.2f} GiB reserve); nothing was downloaded"
        )


def walk_files(root: str) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if rel == MANIFEST:
                continue
            yield rel


def read_manifest(model_dir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(model_dir, MANIFEST), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), list) else None


def check_published(model_dir: str, deep: bool = False) -> str | None:
    """None when model_dir holds every file its manifest lists with the recorded sizes (and hashes if deep)."""
    manifest = read_manifest(model_dir)
    if manifest is None:
        return "has no readable manifest"
    for entry in manifest["files"]:
        full = os.path.join(model_dir, entry["path"])
        try:
            size = os.path.getsize(full)
        except OSError:
            return f"misses {entry['path']}"
        if size != entry["size"]:
            return f"has {entry['path']} at {size} bytes, the manifest says {entry['size']}"
        if deep and sha256_file(full).hexdigest() != entry["sha256"]:
            return f"has {entry['path']} with a sha256 that differs from the manifest"
    return None


def verify_tree(tree: str, listing: Listing | None, expected_sha: dict[str, str], require_config: bool,
                known_digests: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Check a complete download; return the manifest's file entries. Raises WeightsError."""
    known_digests = known_digests or {}
    names = list(walk_files(tree))
    if not names:
        raise VerifyError("the download holds no files")
    if listing is not None and not listing.archive:
        for remote in listing.files:
            full = os.path.join(tree, remote.path)
            if not os.path.isfile(full):
                raise VerifyError(f"{remote.path} is missing after the download")
            if remote.size is not None and os.path.getsize(full) != remote.size:
                raise VerifyError(f"{remote.path} is {os.path.getsize(full)} bytes, the origin lists {remote.size}")
            if remote.git_sha1 and not remote.sha256 and git_blob_sha1(full) != remote.git_sha1:
                raise VerifyError(f"{remote.path} does not match the origin's git blob id {remote.git_sha1}")
            if remote.sha256 and not expected_sha.get(remote.path):
                expected_sha[remote.path] = remote.sha256
    if require_config and "config.json" not in names:
        raise VerifyError("has no config.json at the top of the model directory; vLLM needs one "
                           "(point the URI at the model's directory, or set model_weights_require_config: false)")
    entries = []
    for rel in names:
        full = os.path.join(tree, rel)
        digest = known_digests.get(rel) or sha256_file(full).hexdigest()
        want = expected_sha.get(rel)
        if want and want.lower() != digest:
            raise VerifyError(f"{rel} has sha256 {digest}, expected {want.lower()} (corrupted at the origin "
                               "or in transit)")
        if rel.endswith(".safetensors"):
            check_safetensors(full)
        entries.append({"path": rel, "size": os.path.getsize(full), "sha256": digest})
    missing = sorted(set(expected_sha) - set(names))
    if missing:
        raise WeightsError(f"the spec gives sha256 for {', '.join(missing)}, which the download does not contain")
    return entries


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(tree: str, data: dict[str, Any]) -> None:
    tmp = os.path.join(tree, MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, os.path.join(tree, MANIFEST))


def _safe_members(archive: tarfile.TarFile, dest: str) -> Iterable[tarfile.TarInfo]:
    root = os.path.realpath(dest)
    for member in archive.getmembers():
        target = os.path.realpath(os.path.join(dest, member.name))
        if not (target == root or target.startswith(root + os.sep)) or member.issym() or member.islnk() \
                or member.isdev():
            raise WeightsError(f"the archive member {member.name!r} points outside the model directory")
        yield member


def unpack(archive_path: str, dest: str) -> None:
    """Unpack a .tar[.gz]/.tgz/.zip the way KServe's storage initializer does (no paths outside dest)."""
    name = archive_path.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive_path) as zf:
                zf.extractall(dest)  # noqa: S202 - zipfile strips absolute and parent paths
        else:
            with tarfile.open(archive_path, "r:*") as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(dest, filter="data")
                else:  # pragma: no cover - Pythons without PEP 706
                    tf.extractall(dest, members=_safe_members(tf, dest))  # noqa: S202
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise VerifyError(f"cannot unpack {os.path.basename(archive_path)}: {exc}") from None
    # One top-level directory is how most model tarballs are made; its content is the model.
    entries = [e for e in os.listdir(dest) if e != MANIFEST]
    if len(entries) == 1 and os.path.isdir(os.path.join(dest, entries[0])) \
            and not os.path.exists(os.path.join(dest, "config.json")):
        inner = os.path.join(dest, entries[0])
        for child in os.listdir(inner):
            os.rename(os.path.join(inner, child), os.path.join(dest, child))
        os.rmdir(inner)


@contextlib.contextmanager
def locked(service_dir: str) -> Iterator[None]:
    fd = os.open(os.path.join(service_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise WeightsError(f"another fetch holds {service_dir}/{LOCK_NAME}; wait for it to finish") from None
        yield
    finally:
        os.close(fd)


def tls_verification_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error behind a library's exception (requests, botocore and httpx wrap it)."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return cur
        todo.extend([cur.__cause__, cur.__context__, *[a for a in getattr(cur, "args", ()) if
                                                        isinstance(a, BaseException)]])
        reason = getattr(cur, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return ssl.SSLCertVerificationError(text)
    return None


def retrying(what: str, retries: int, retry_on: tuple[type[BaseException], ...],
             action: Callable[[], Any], sleep: Callable[[float], None] = time.sleep) -> Any:
    """Run action, retrying transient errors up to `retries` times with capped exponential backoff.

    A failed certificate verification is not transient: it is reported at once, with the way to trust the origin.
    """
    attempt = 0
    while True:
        try:
            return action()
        except Exception as exc:
            failure = tls_verification_failure(exc)
            if failure is not None:
                detail = getattr(failure, "verify_message", None) or "certificate verify failed"
                raise WeightsError(f"{what}: the origin's TLS certificate did not verify ({detail}); if the origin "
                                   "uses a private CA, give its PEM file on the hosts as model_weights_ca_bundle "
                                   "(or add it to the hosts' trust store)") from None
            if not isinstance(exc, retry_on):
                raise
            attempt += 1
            if attempt > retries:
                raise WeightsError(f"{what} failed after {attempt} attempts: {type(exc).__name__}: {exc}") from None
            sleep(min(30.0, 0.5 * (2 ** (attempt - 1))))


class Publisher:
    """Owns <models_root>/<service>/: its staging directories, completed revisions and lock."""

    def __init__(self, models_root: str, service: str, display_uri: str, dir_mode: int = 0o755):
        self.models_root = models_root
        self.service = service
        self.display_uri = display_uri
        self.service_dir = os.path.join(models_root, service)
        self.dir_mode = dir_mode

    def final_dir(self, revision: str) -> str:
        return os.path.join(self.service_dir, safe_revision(revision))

    def staging_dir(self, revision: str) -> str:
        return os.path.join(self.service_dir, STAGING_PREFIX + safe_revision(revision))

    def ensure_dirs(self) -> None:
        os.makedirs(self.service_dir, mode=self.dir_mode, exist_ok=True)

    def existing(self, revision: str, deep: bool = False) -> str | None:
        """The completed directory for revision, if it is complete and comes from the same URI."""
        final = self.final_dir(revision)
        if not os.path.isdir(final):
            return None
        problem = check_published(final, deep=deep)
        if problem is not None:
            raise WeightsError(
                f"{final} exists but {problem}; it was not published by this role or was changed by hand. "
                "Move it away and re-run")
        manifest = read_manifest(final) or {}
        if manifest.get("source") != self.display_uri:
            raise WeightsError(
                f"{final} holds revision {revision} of {manifest.get('source')}, not of {self.display_uri}; "
                "use another service name or remove that directory")
        return final

    def publish(self, staging: str, tree: str, revision: str, manifest: dict[str, Any]) -> str:
        final = self.final_dir(revision)
        write_manifest(tree, manifest)
        for dirpath, _dirs, filenames in os.walk(tree):
            os.chmod(dirpath, self.dir_mode)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        _fsync_dir(tree)
        os.rename(tree, final)  # atomic: final either does not exist or is complete
        _fsync_dir(self.service_dir)
        shutil.rmtree(staging, ignore_errors=True)
        return final

    def completed_revisions(self) -> list[tuple[float, str]]:
        found: list[tuple[float, str]] = []
        if not os.path.isdir(self.service_dir):
            return found
        for name in os.listdir(self.service_dir):
            full = os.path.join(self.service_dir, name)
            if name.startswith(".") or not os.path.isdir(full) or read_manifest(full) is None:
                continue
            found.append((os.path.getmtime(os.path.join(full, MANIFEST)), name))
        return sorted(found, reverse=True)


def prune(models_root: str, service: str, keep: int, active: str | None) -> list[str]:
    """Remove completed revisions beyond the `keep` newest (never `active`) and stale staging dirs."""
    pub = Publisher(models_root, service, "")
    removed: list[str] = []
    if not os.path.isdir(pub.service_dir):
        return removed
    active_name = safe_revision(active) if active else None
    kept = 1 if active_name else 0
    with locked(pub.service_dir):
        for _, name in pub.completed_revisions():
            if name == active_name:
                continue
            if kept < keep:
                kept += 1
                continue
            shutil.rmtree(os.path.join(pub.service_dir, name))
            removed.append(name)
        for name in os.listdir(pub.service_dir):
            if name.startswith(STAGING_PREFIX) and name != STAGING_PREFIX + (active_name or ""):
                shutil.rmtree(os.path.join(pub.service_dir, name), ignore_errors=True)
                removed.append(name)
    return sorted(removed)
