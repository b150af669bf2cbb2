"""One fetch: resolve, preflight, download into staging (resuming), verify, write the manifest, publish."""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
from typing import Any, Callable

from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_fetch import (
    ARCHIVE_EXPANSION,
    PART_SUFFIX,
    Listing,
    Outcome,
    Publisher,
    RemoteFile,
    VerifyError,
    WeightsError,
    check_safetensors,
    locked,
    preflight,
    retrying,
    sha256_file,
    unpack,
    verify_tree,
    walk_files,
)
from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_sources import Source, make_source

MANIFEST_SCHEMA = 1


def download_file(source: Source, remote: RemoteFile, dest: str) -> tuple[str, int]:
    """Stream one file into dest, resuming dest.part; return (sha256, bytes read from the origin)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.isfile(dest) and (remote.size is None or os.path.getsize(dest) == remote.size):
        return sha256_file(dest).hexdigest(), 0
    part = dest + PART_SUFFIX
    read = [0]

    def attempt() -> str:
        offset = os.path.getsize(part) if os.path.exists(part) else 0
        if remote.size is not None and offset > remote.size:
            offset = 0
        digest = sha256_file(part, limit=offset) if offset else hashlib.sha256()
        start, chunks, close = source.open(remote, offset)
        try:
            with open(part, "r+b" if os.path.exists(part) else "wb") as out:
                out.seek(start)
                out.truncate()
                if start != offset:
                    digest = hashlib.sha256()
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                    read[0] += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        finally:
            close()
        got = os.path.getsize(part)
        if remote.size is not None and got != remote.size:
            from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_sources import TransientError

            raise TransientError(f"{remote.path}: stream ended at {got} of {remote.size} bytes")
        return digest.hexdigest()

    digest = retrying(f"fetching {remote.path} from {source.display_uri}", source.retries, source.retry_on, attempt)
    if remote.sha256 and digest != remote.sha256.lower():
        os.unlink(part)
        raise VerifyError(f"{remote.path} has sha256 {digest}, expected {remote.sha256.lower()} "
                           "(corrupted at the origin or in transit); nothing was published")
    os.replace(part, dest)
    return digest, read[0]


def _bytes_present(path: str) -> int:
    for candidate in (path, path + PART_SUFFIX):
        if os.path.isfile(candidate):
            return os.path.getsize(candidate)
    return 0


def needed_bytes(listing: Listing, tree: str, download_dir: str) -> int:
    if listing.archive:
        size = listing.files[0].size or 0
        return size * (1 + ARCHIVE_EXPANSION) - _bytes_present(os.path.join(download_dir, listing.files[0].path))
    return sum(max(0, (f.size or 0) - _bytes_present(os.path.join(tree, f.path))) for f in listing.files)


def verify_local(path: str, require_config: bool, display_uri: str) -> dict[str, Any]:
    """file://: check the directory in place (sizes, config.json, safetensors headers); copy nothing."""
    if not os.path.isdir(path):
        raise WeightsError(f"{display_uri}: {path} is not a directory on this host")
    names = list(walk_files(path))
    if require_config and "config.json" not in names:
        raise WeightsError(f"{display_uri}: {path} has no config.json")
    total = 0
    for rel in names:
        full = os.path.join(path, rel)
        total += os.path.getsize(full)
        if rel.endswith(".safetensors"):
            check_safetensors(full)
    return {"changed": False, "path": path, "revision": "local", "manifest": None, "files": len(names),
            "total_bytes": total, "bytes_downloaded": 0}


def ensure(models_root: str, service: str, spec: dict[str, Any], creds: dict[str, str | None], *,
           require_config: bool = True, deep_verify: bool = False, reserve_bytes: int = 512 << 20,
           peer_url: str | None = None, peer_revision: str | None = None, check_only: bool = False,
           log: Callable[[str], None] = lambda _msg: None, source: Source | None = None,
           copy_local: bool = False, fit: dict[str, Any] | None = None) -> dict[str, Any]:
    """Make one completed revision of spec's files present under models_root/service (or check a file:// model in
    place); with `fit` (an adapter's AdapterFit), refuse files that do not fit their service before publishing
    them, and a published revision that no longer fits."""
    display_uri = spec.get("display_uri") or spec["uri"]
    if spec.get("scheme") == "file" and not peer_url and not copy_local:
        return verify_local(spec["uri"][len("file://"):].rstrip("/") or "/", require_config, display_uri)

    pub = Publisher(models_root, service, display_uri)
    os.makedirs(models_root, mode=0o755, exist_ok=True)
    pub.ensure_dirs()
    if check_only and peer_revision:
        final = pub.existing(peer_revision, deep=deep_verify)
        if final:
            return _unchanged(_fitting(final, fit, WeightsError), peer_revision, present=True)
        return {"changed": False, "present": False, "path": None, "revision": peer_revision}

    src = source or make_source(spec, creds, display_uri, peer_url, peer_revision)
    pinned = src.pinned_revision()
    if pinned:
        final = pub.existing(pinned, deep=deep_verify)
        if final:
            return _unchanged(_fitting(final, fit, WeightsError), pinned, present=True)

    listing: Listing = retrying(f"listing {display_uri}", src.retries, src.retry_on, src.resolve)
    final = pub.existing(listing.revision, deep=deep_verify)
    if final:
        return _unchanged(_fitting(final, fit, WeightsError), listing.revision, present=True)
    if check_only:
        return {"changed": False, "present": False, "path": None, "revision": listing.revision}

    with locked(pub.service_dir):
        staging = pub.staging_dir(listing.revision)
        tree = os.path.join(staging, "tree")
        download_dir = os.path.join(staging, "download")
        os.makedirs(tree, exist_ok=True)
        preflight(pub.service_dir, needed_bytes(listing, tree, download_dir), reserve_bytes)
        log(f"fetching {len(listing.files)} file(s), {listing.total_size} bytes, revision {listing.revision}")
        expected = dict(src.spec_sha)
        downloaded = 0
        digests: dict[str, str] = {}
        try:
            if not src.per_file:
                before = sum(os.path.getsize(os.path.join(tree, p)) for p in walk_files(tree) if "/.cache/" not in
                             "/" + p)
                retrying(f"downloading {display_uri}", src.retries, src.retry_on,
                         lambda: src.fetch_snapshot(listing, tree))
                shutil.rmtree(os.path.join(tree, ".cache"), ignore_errors=True)
                downloaded = max(0, listing.total_size - before)
            elif listing.archive:
                remote = listing.files[0]
                archive = os.path.join(download_dir, remote.path)
                digest, downloaded = download_file(src, remote, archive)
                expected.pop(remote.path, None)
                shutil.rmtree(tree)
                os.makedirs(tree)
                unpack(archive, tree)
            else:
                for remote in listing.files:
                    digest, read = download_file(src, remote, os.path.join(tree, remote.path))
                    digests[remote.path] = digest
                    downloaded += read
            entries = verify_tree(tree, listing, expected, require_config, known_digests=digests)
            _fitting(tree, fit, VerifyError)
        except VerifyError:
            shutil.rmtree(staging, ignore_errors=True)  # bytes proven wrong must not be resumed
            raise
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "service": service,
            "source": display_uri,
            "scheme": spec.get("scheme"),
            "revision": listing.revision,
            "origin": listing.origin,
            "allow_patterns": list(spec.get("allow_patterns") or []),
            "ignore_patterns": list(spec.get("ignore_patterns") or []),
            "files": entries,
            "total_bytes": sum(e["size"] for e in entries),
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        final = pub.publish(staging, tree, listing.revision, manifest)
    out = Outcome(True, final, listing.revision, os.path.join(final, ".vllm-fleet-manifest.json"),
                  bytes_downloaded=downloaded, files=len(entries), total_bytes=manifest["total_bytes"])
    return dict(out.__dict__, present=True)


def _fitting(path: str, fit: dict[str, Any] | None, error: type[Exception]) -> str:
    """path, unless it holds an adapter that does not fit its service (error names why)."""
    if fit:
        from ansible_collections.vllmfleet.fleet.plugins.module_utils.adapter_check import adapter_problems

        problems = adapter_problems(path, int(fit["max_rank"]), fit.get("base_repo"), fit.get("base_dir"))
        if problems:
            raise error("the adapter " + "; it ".join(problems) + " (nothing of it was published)"
                        if error is VerifyError else "the adapter " + "; it ".join(problems))
    return path


def _unchanged(final: str, revision: str, present: bool) -> dict[str, Any]:
    from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_fetch import MANIFEST, read_manifest

    manifest = read_manifest(final) or {}
    return {"changed": False, "present": present, "path": final, "revision": revision,
            "manifest": os.path.join(final, MANIFEST), "bytes_downloaded": 0,
            "files": len(manifest.get("files", [])), "total_bytes": manifest.get("total_bytes", 0)}
