"""Origins of model weights, one class per URI scheme, with KServe's storage-initializer meaning.

Each source lists what a URI names (sizes, origin digests, a stable revision) with metadata requests
only, then either streams single files from an offset (https, s3, gs, a peer) so an interrupted
transfer resumes, or hands a whole snapshot to the hub's own client (hf, ms), which resumes itself.
The network libraries are the ones made for each origin and are imported lazily.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import os
import posixpath
import re
import tempfile
from collections.abc import Iterator
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_fetch import (
    CHUNK,
    Listing,
    RemoteFile,
    WeightsError,
    fingerprint,
    is_archive,
    walk_files,
)

COMMIT = re.compile(r"^[0-9a-f]{40}$")


class TransientError(Exception):
    """An origin answer worth retrying (5xx, 429, a dropped stream)."""


def should_download(relative_path: str, allow: list[str] | None, ignore: list[str] | None) -> bool:
    """KServe's allow/ignore rule (fnmatch on the relative path), as huggingface_hub applies it too."""
    if allow and not any(fnmatch.fnmatch(relative_path, p) for p in allow):
        return False
    return not (ignore and any(fnmatch.fnmatch(relative_path, p) for p in ignore))


def bucket_layout(prefix: str, objects: list[tuple[str, int, Any]], allow: list[str] | None,
                  ignore: list[str] | None) -> list[tuple[str, str, int, Any]]:
    """Map bucket objects under prefix to (relative path, key, size, meta) as KServe's initializer does.

    Keys ending in '/' and empty objects are skipped; a key equal to the prefix is that one file, named
    by its basename; otherwise the path is the key with the prefix removed.
    """
    picked = []
    for key, size, meta in objects:
        if key.endswith("/") or size == 0:
            continue
        if key == prefix:
            return [(key.rsplit("/", 1)[-1], key, size, meta)]
        rel = key[len(prefix):].lstrip("/") if key.startswith(prefix) else key
        if should_download(rel, allow, ignore):
            picked.append((rel, key, size, meta))
    return sorted(picked)


# The host's trust store (Debian/Ubuntu, RHEL family, others): requests and botocore would otherwise use their own
# bundled CA list and ignore a CA the host's administrators added.
SYSTEM_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")


def ca_bundle(explicit: str | None) -> str | None:
    """The PEM bundle TLS origins are verified against: the one given, else the host's trust store, else None."""
    if explicit:
        if not os.path.isfile(explicit):
            raise WeightsError(f"ca_bundle {explicit} is not a file on this host; copy the CA's PEM file there "
                               "first, or leave model_weights_ca_bundle empty to use the host's trust store")
        return explicit
    return next((path for path in SYSTEM_CA_BUNDLES if os.path.isfile(path)), None)


class Source:
    """Base class. `resolve` uses metadata only; `open` streams one file from an offset."""

    per_file = True
    retry_on: tuple[type[BaseException], ...] = (TransientError,)

    def __init__(self, spec: dict[str, Any], creds: dict[str, str | None], display_uri: str):
        self.spec = spec
        self.creds = creds
        self.display_uri = display_uri
        self.timeout = int(spec.get("timeout_seconds") or 600)
        self.connect_timeout = min(30, self.timeout)
        retries = spec.get("retries")
        self.retries = int(retries) if retries is not None else 5
        self.allow = list(spec.get("allow_patterns") or []) or None
        self.ignore = list(spec.get("ignore_patterns") or []) or None
        self.spec_sha = {k: v.lower() for k, v in (spec.get("sha256") or {}).items()}
        self.ca_bundle = ca_bundle(spec.get("ca_bundle"))

    def pinned_revision(self) -> str | None:
        """A revision known without asking the origin (a commit, or a label the spec gives)."""
        return self.spec.get("revision") or None

    def resolve(self) -> Listing:
        raise NotImplementedError

    def open(self, remote: RemoteFile, offset: int) -> tuple[int, Iterator[bytes], Callable[[], None]]:
        """Return (offset the origin honoured, chunks, close)."""
        raise NotImplementedError

    def fetch_snapshot(self, listing: Listing, tree: str) -> None:
        raise NotImplementedError


class HttpSource(Source):
    """https:// (or http://): one file, or a .tar.gz/.tgz/.tar/.zip unpacked, as KServe does."""

    def __init__(self, spec, creds, display_uri, url: str | None = None):
        super().__init__(spec, creds, display_uri)
        import requests

        self.requests = requests
        self.url = url or spec["uri"]
        self.session = requests.Session()
        # Per request: a session-wide setting would lose to REQUESTS_CA_BUNDLE in the environment.
        self.verify: str | bool = self.ca_bundle or True
        self.retry_on = (TransientError, requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                         requests.exceptions.ChunkedEncodingError)

    def _check(self, resp: Any) -> None:
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TransientError(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise WeightsError(f"{self.display_uri} answered HTTP {resp.status_code} ({resp.reason})")

    def resolve(self) -> Listing:
        resp = self.session.head(self.url, allow_redirects=True, timeout=(self.connect_timeout, self.timeout),
                                 verify=self.verify)
        self._check(resp)
        name = posixpath.basename(unquote(urlsplit(self.url).path))
        if not name:
            raise WeightsError(f"{self.display_uri} names no file")
        length = resp.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else None
        etag = resp.headers.get("ETag")
        modified = resp.headers.get("Last-Modified")
        if size is None:
            raise WeightsError(f"{self.display_uri} gives no Content-Length, so disk space cannot be checked")
        origin = {"etag": etag, "last_modified": modified, "size": size}
        revision = self.pinned_revision() or fingerprint(name, etag, modified, size)
        return Listing(revision, [RemoteFile(name, size, self.spec_sha.get(name), self.url)],
                       archive=is_archive(name), origin=origin)

    def open(self, remote, offset):
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.session.get(remote.ref, headers=headers, stream=True,
                                timeout=(self.connect_timeout, self.timeout), verify=self.verify)
        if resp.status_code == 416 and offset and offset == remote.size:
            resp.close()
            return offset, iter(()), resp.close
        self._check(resp)
        start = 0
        if resp.status_code == 206:
            match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            start = int(match.group(1)) if match else 0
            if start != offset:
                resp.close()
                raise TransientError(f"asked for offset {offset}, got {start}")
        return start, resp.iter_content(CHUNK), resp.close


class PeerSource(HttpSource):
    """A completed revision on another host of the fleet, served over the LAN; checked against its manifest."""

    def __init__(self, spec, creds, display_uri, base_url: str, revision: str | None):
        super().__init__(spec, creds, display_uri, url=base_url.rstrip("/") + "/")
        self.expected_revision = revision

    def pinned_revision(self):
        return self.expected_revision

    def resolve(self) -> Listing:
        from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_fetch import MANIFEST

        resp = self.session.get(self.url + MANIFEST, timeout=(self.connect_timeout, self.timeout), verify=self.verify)
        self._check(resp)
        manifest = resp.json()
        if manifest.get("source") != self.display_uri:
            raise WeightsError(f"the peer {self.url} serves {manifest.get('source')}, not {self.display_uri}")
        if self.expected_revision and manifest.get("revision") != self.expected_revision:
            raise WeightsError(f"the peer {self.url} serves revision {manifest.get('revision')}, "
                               f"expected {self.expected_revision}")
        files = [RemoteFile(f["path"], f["size"], f["sha256"], self.url + f["path"]) for f in manifest["files"]]
        origin = dict(manifest.get("origin") or {}, via_peer=self.url)
        return Listing(manifest["revision"], files, origin=origin)


class S3Source(Source):
    """s3://BUCKET/PREFIX with boto3: an endpoint override, credentials, ranged GETs to resume."""

    def __init__(self, spec, creds, display_uri):
        super().__init__(spec, creds, display_uri)
        import boto3
        import botocore.exceptions as bexc
        from botocore.config import Config

        self.bexc = bexc
        s3 = spec.get("s3") or {}
        parts = urlsplit(spec["uri"])
        self.bucket, self.prefix = parts.netloc, parts.path.lstrip("/")
        kwargs: dict[str, Any] = {
            "config": Config(connect_timeout=self.connect_timeout, read_timeout=self.timeout,
                             retries={"max_attempts": self.retries + 1, "mode": "standard"}),
        }
        endpoint = s3.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        if s3.get("region"):
            kwargs["region_name"] = s3["region"]
        if s3.get("verify_ssl") is False:
            kwargs["verify"] = False
        elif self.ca_bundle:
            kwargs["verify"] = self.ca_bundle
        if creds.get("s3_access_key_id"):
            kwargs["aws_access_key_id"] = creds["s3_access_key_id"]
            kwargs["aws_secret_access_key"] = creds.get("s3_secret_access_key")
            if creds.get("s3_session_token"):
                kwargs["aws_session_token"] = creds["s3_session_token"]
        self.client = boto3.client("s3", **kwargs)
        self.retry_on = (TransientError, bexc.ConnectionError, bexc.ReadTimeoutError,
                         bexc.IncompleteReadError, bexc.ResponseStreamingError, bexc.ConnectTimeoutError)

    def _client_error(self, exc: Exception) -> Exception:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500 or code in ("SlowDown", "InternalError", "ServiceUnavailable"):
            return TransientError(f"S3 {code or status}")
        return WeightsError(f"{self.display_uri}: S3 answered {code or status}")

    def resolve(self) -> Listing:
        objects = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    objects.append((obj["Key"], obj["Size"], obj.get("ETag", "").strip('"')))
        except self.bexc.ClientError as exc:
            raise self._client_error(exc) from None
        except self.bexc.NoCredentialsError:
            raise WeightsError(f"{self.display_uri}: no S3 credentials (set storage.credentials.s3)") from None
        layout = bucket_layout(self.prefix, objects, self.allow, self.ignore)
        if not layout:
            raise WeightsError(f"{self.display_uri} lists no objects to download")
        files = [RemoteFile(rel, size, self.spec_sha.get(rel) or self._origin_sha256(key), key)
                 for rel, key, size, _ in layout]
        revision = self.pinned_revision() or fingerprint([(rel, size, etag) for rel, _, size, etag in layout])
        archive = len(files) == 1 and is_archive(files[0].path)
        return Listing(revision, files, archive=archive,
                       origin={"etags": {rel: etag for rel, _, _, etag in layout}})

    def _origin_sha256(self, key: str) -> str | None:
        """The object's full-object SHA-256 checksum, when it was uploaded with one."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except self.bexc.ClientError as exc:
            raise self._client_error(exc) from None
        value = head.get("ChecksumSHA256")
        if not value or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT" or "-" in value:
            return None
        try:
            return base64.b64decode(value).hex()
        except (binascii.Error, ValueError):
            return None

    def open(self, remote, offset):
        kwargs = {"Bucket": self.bucket, "Key": remote.ref}
        if offset:
            if offset == remote.size:
                return offset, iter(()), lambda: None
            kwargs["Range"] = f"bytes={offset}-"
        try:
            resp = self.client.get_object(**kwargs)
        except self.bexc.ClientError as exc:
            raise self._client_error(exc) from None
        start = offset if "ContentRange" in resp else 0
        body = resp["Body"]
        return start, body.iter_chunks(CHUNK), body.close


class GcsSource(Source):
    """gs://BUCKET/PREFIX with google-cloud-storage (service-account JSON or anonymous)."""

    def __init__(self, spec, creds, display_uri):
        super().__init__(spec, creds, display_uri)
        from google.api_core import exceptions as gexc
        from google.cloud import storage

        self.gexc = gexc
        parts = urlsplit(spec["uri"])
        self.bucket_name, self.prefix = parts.netloc, parts.path.lstrip("/")
        if creds.get("gcs_credentials"):
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
                os.chmod(fh.name, 0o600)
                fh.write(creds["gcs_credentials"] or "")
            try:
                self.client = storage.Client.from_service_account_json(fh.name)
            finally:
                os.unlink(fh.name)
        else:
            self.client = storage.Client.create_anonymous_client()
        self.retry_on = (TransientError, gexc.ServerError, gexc.TooManyRequests, ConnectionError)

    def resolve(self):
        try:
            blobs = list(self.client.list_blobs(self.bucket_name, prefix=self.prefix, timeout=self.timeout))
        except self.gexc.ClientError as exc:
            raise WeightsError(f"{self.display_uri}: GCS answered {exc.code}") from None
        layout = bucket_layout(self.prefix, [(b.name, b.size, b) for b in blobs], self.allow, self.ignore)
        if not layout:
            raise WeightsError(f"{self.display_uri} lists no objects to download")
        files = [RemoteFile(rel, size, self.spec_sha.get(rel), blob) for rel, _, size, blob in layout]
        revision = self.pinned_revision() or fingerprint([(rel, size, b.generation) for rel, _, size, b in layout])
        return Listing(revision, files, archive=len(files) == 1 and is_archive(files[0].path),
                       origin={"generations": {rel: b.generation for rel, _, _, b in layout}})

    def open(self, remote, offset):
        reader = remote.ref.open("rb", chunk_size=CHUNK * 8)
        reader.seek(offset)
        return offset, iter(lambda: reader.read(CHUNK), b""), reader.close


class HfSource(Source):
    """hf://ORG/REPO[:REVISION] with huggingface_hub: branch/tag resolved to a commit, HF_ENDPOINT mirrors."""

    per_file = False

    def __init__(self, spec, creds, display_uri):
        super().__init__(spec, creds, display_uri)
        # huggingface_hub reads its timeouts from the environment when it is imported.
        os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(self.timeout))
        os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(self.timeout))
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if self.ca_bundle:  # huggingface_hub's HTTP client reads its CA file from the environment
            os.environ["SSL_CERT_FILE"] = self.ca_bundle
        import huggingface_hub
        from huggingface_hub import errors as hf_errors

        self.hub = huggingface_hub
        self.errors = hf_errors
        self.repo_id, self.revision = hub_repo(spec["uri"], spec.get("revision"))
        self.endpoint = spec.get("endpoint") or None
        self.token = creds.get("hf_token") or None
        self.retry_on = (TransientError, OSError)

    def pinned_revision(self):
        return self.revision if self.revision and COMMIT.match(self.revision) else None

    def resolve(self):
        api = self.hub.HfApi(endpoint=self.endpoint, token=self.token)
        try:
            info = api.model_info(self.repo_id, revision=self.revision, files_metadata=True, timeout=self.timeout)
        except (self.errors.GatedRepoError, self.errors.RepositoryNotFoundError) as exc:
            raise WeightsError(f"{self.display_uri}: the repository is gated, private or missing "
                               f"({type(exc).__name__}); set storage.credentials.hf_token") from None
        except self.errors.RevisionNotFoundError:
            raise WeightsError(f"{self.display_uri}: revision {self.revision or 'of the default branch'!r} does not "
                               "exist") from None
        except self.errors.HfHubHTTPError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", 0) or 0
            if status >= 500 or status == 429:
                raise TransientError(f"HTTP {status}") from None
            raise WeightsError(f"{self.display_uri}: the hub answered HTTP {status}") from None
        siblings = [s for s in info.siblings or [] if should_download(s.rfilename, self.allow, self.ignore)]
        if not siblings:
            raise WeightsError(f"{self.display_uri} has no files matching the allow/ignore patterns")
        files = [RemoteFile(s.rfilename, s.size, self.spec_sha.get(s.rfilename) or (s.lfs.sha256 if s.lfs else None),
                            git_sha1=None if s.lfs else s.blob_id) for s in siblings]
        return Listing(info.sha, files, origin={"requested_revision": self.revision or "main", "commit": info.sha})

    def fetch_snapshot(self, listing, tree):
        try:
            self.hub.snapshot_download(self.repo_id, revision=listing.revision, local_dir=tree, token=self.token,
                                       endpoint=self.endpoint, allow_patterns=self.allow,
                                       ignore_patterns=self.ignore, etag_timeout=self.timeout, max_workers=4)
        except self.errors.HfHubHTTPError as exc:
            raise TransientError(f"HTTP {getattr(getattr(exc, 'response', None), 'status_code', '?')}") from None


class MsSource(Source):
    """ms:// (modelscope://) with modelscope-hub, KServe's ModelScope client."""

    per_file = False

    def __init__(self, spec, creds, display_uri):
        super().__init__(spec, creds, display_uri)
        from modelscope_hub.api import HubApi
        from modelscope_hub.compat import snapshot_download

        self.snapshot_download = snapshot_download
        self.repo_id, self.revision = hub_repo(spec["uri"], spec.get("revision"))
        self.endpoint = spec.get("endpoint") or None
        self.token = creds.get("modelscope_token") or None
        self.api = HubApi(endpoint=self.endpoint, token=self.token)
        self.retry_on = (TransientError, OSError)

    def pinned_revision(self):
        return None

    def resolve(self):
        listed = self.api.list_repo_files(self.repo_id, "model", revision=self.revision)
        files = [RemoteFile(f.path, f.size, self.spec_sha.get(f.path) or getattr(f, "sha256", None))
                 for f in listed if getattr(f, "type", "blob") == "blob"
                 and should_download(f.path, self.allow, self.ignore)]
        if not files:
            raise WeightsError(f"{self.display_uri} has no files matching the allow/ignore patterns")
        rev = self.revision or "master"
        revision = fingerprint(rev, sorted((f.path, f.size, f.sha256) for f in files))
        return Listing(revision, files, origin={"requested_revision": rev})

    def fetch_snapshot(self, listing, tree):
        self.snapshot_download(repo_id=self.repo_id, revision=self.revision, local_dir=tree, token=self.token,
                               endpoint=self.endpoint, allow_patterns=self.allow, ignore_patterns=self.ignore)


def hub_repo(uri: str, revision: str | None) -> tuple[str, str | None]:
    """(ORG/REPO, revision) of hf://ORG/REPO[:REV]; an explicit revision wins over the URI's."""
    rest = uri.split("://", 1)[1]
    org, _, repo_rev = rest.partition("/")
    repo, _, uri_rev = repo_rev.partition(":")
    return f"{org}/{repo}", revision or uri_rev or None


class FileSource(Source):
    """file:// copied into the models root, for what must lie where its container looks (a service's adapters
    directory): the files of a directory on this host, streamed like an origin's, so the copy is verified, atomic
    and resumable. Its revision is derived from the names, sizes and modification times."""

    def __init__(self, spec, creds, display_uri):
        super().__init__(spec, creds, display_uri)
        self.root = spec["uri"][len("file://"):].rstrip("/") or "/"

    def resolve(self) -> Listing:
        if not os.path.isdir(self.root):
            raise WeightsError(f"{self.display_uri}: {self.root} is not a directory on this host")
        files, stamps = [], []
        for rel in walk_files(self.root):
            if not should_download(rel, self.allow, self.ignore):
                continue
            st = os.stat(os.path.join(self.root, rel))
            files.append(RemoteFile(rel, st.st_size, self.spec_sha.get(rel), os.path.join(self.root, rel)))
            stamps.append((rel, st.st_size, st.st_mtime_ns))
        if not files:
            raise WeightsError(f"{self.display_uri}: {self.root} holds no file")
        revision = self.pinned_revision() or fingerprint(self.root, stamps)
        return Listing(revision, files, origin={"path": self.root})

    def open(self, remote, offset):
        fh = open(remote.ref, "rb")  # noqa: SIM115 - the caller closes it through the returned callable
        fh.seek(offset)
        return offset, iter(lambda: fh.read(CHUNK), b""), fh.close


SOURCES: dict[str, type[Source]] = {
    "file": FileSource, "https": HttpSource, "http": HttpSource, "s3": S3Source, "gs": GcsSource, "hf": HfSource,
    "ms": MsSource,
}


def make_source(spec: dict[str, Any], creds: dict[str, str | None], display_uri: str,
                peer_url: str | None = None, peer_revision: str | None = None) -> Source:
    if peer_url:
        return PeerSource(spec, creds, display_uri, peer_url, peer_revision)
    scheme = spec.get("scheme") or spec["uri"].split("://", 1)[0]
    scheme = "ms" if scheme == "modelscope" else scheme
    try:
        cls = SOURCES[scheme]
    except KeyError:
        raise WeightsError(f"{display_uri}: scheme {scheme}:// cannot be fetched to a host") from None
    try:
        return cls(spec, creds, display_uri)
    except ImportError as exc:
        raise WeightsError(f"{display_uri}: the fetch environment lacks {exc.name}; run the role's venv step "
                           "(model_weights_venv) or install it") from None
