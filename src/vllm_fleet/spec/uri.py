"""Storage URIs with the meaning KServe's storage initializer gives them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from vllm_fleet.spec.errors import url_has_credentials


class Target(StrEnum):
    VM = "vm"
    K8S = "k8s"


SCHEMES_BY_TARGET: dict[Target, tuple[str, ...]] = {
    Target.VM: ("hf", "ms", "s3", "gs", "https", "http", "file"),
    Target.K8S: ("hf", "ms", "s3", "gs", "https", "http", "pvc"),
}
ALL_SCHEMES = ("hf", "ms", "modelscope", "s3", "gs", "https", "http", "file", "pvc")

_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,62}$")


class UriError(ValueError):
    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class StorageUri:
    """A parsed storage URI. `scheme` is normalised (modelscope:// is ms://)."""

    raw: str
    scheme: str
    authority: str  # hub org, bucket, host or PVC name; empty for file://
    path: str  # repo name, key prefix, URL path or local path
    revision: str | None = None

    @property
    def repo_id(self) -> str:
        return f"{self.authority}/{self.path}"

    @property
    def is_hub(self) -> bool:
        return self.scheme in ("hf", "ms")

    def kserve_uri(self, revision: str | None = None) -> str:
        """The URI as KServe's storage initializer spells it."""
        rev = revision or self.revision
        if self.scheme == "hf":
            return f"hf://{self.repo_id}" + (f":{rev}" if rev else "")
        if self.scheme == "ms":
            return f"modelscope://{self.repo_id}" + (f":{rev}" if rev else "")
        return self.raw

    def display(self) -> str:
        """The URI without any userinfo, safe for logs."""
        parts = urlsplit(self.raw)
        if parts.username or parts.password:
            host = parts.hostname or ""
            if parts.port:
                host += f":{parts.port}"
            return parts._replace(netloc=host).geturl()
        return self.raw


def parse_storage_uri(raw: str) -> StorageUri:
    if "://" not in raw:
        raise UriError(
            "is not a storage URI",
            "write it as SCHEME://..., e.g. hf://Qwen/Qwen2.5-7B-Instruct, s3://bucket/prefix or file:///data/models/x",
        )
    scheme = raw.split("://", 1)[0].lower()
    if url_has_credentials(raw):
        raise UriError("carries credentials in the URL (user:password@); they would reach logs and manifests",
                       "remove them from the URL and give them by reference in storage.credentials")
    if scheme not in ALL_SCHEMES:
        raise UriError(
            f"has the unknown scheme '{scheme}://'",
            "use one of hf://, ms://, s3://, gs://, https://, http://, file:// (VMs) or pvc:// (clusters)",
        )
    rest = raw.split("://", 1)[1]
    if scheme in ("hf", "ms", "modelscope"):
        return _parse_hub("ms" if scheme == "modelscope" else scheme, raw, rest)
    if scheme in ("s3", "gs"):
        bucket, _, key = rest.partition("/")
        if not _BUCKET.match(bucket):
            raise UriError(f"has no valid bucket name ('{bucket}')", f"write it as {scheme}://BUCKET/PREFIX")
        return StorageUri(raw, scheme, bucket, key.strip("/"))
    if scheme in ("http", "https"):
        parts = urlsplit(raw)
        if not parts.hostname:
            raise UriError("has no host", f"write it as {scheme}://HOST/PATH/model.tar.gz")
        if not parts.path or parts.path == "/":
            raise UriError("names no file", "point it at a file: a single weights file, a .tar.gz or a .zip")
        return StorageUri(raw, scheme, parts.netloc, parts.path)
    if scheme == "file":
        if not rest.startswith("/") or rest == "/":
            raise UriError("is not an absolute path", "write it as file:///ABSOLUTE/PATH (three slashes)")
        return StorageUri(raw, scheme, "", rest.rstrip("/"))
    # pvc://CLAIM/optional/sub/path
    claim, _, sub = rest.partition("/")
    if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", claim):
        raise UriError(f"has an invalid claim name ('{claim}')", "write it as pvc://CLAIM-NAME/SUB/PATH")
    return StorageUri(raw, scheme, claim, sub.strip("/"))


def _parse_hub(scheme: str, raw: str, rest: str) -> StorageUri:
    parts = rest.split("/")
    if len(parts) != 2 or not all(parts):
        raise UriError(
            "is not ORG/REPO",
            f"write it as {scheme}://ORG/REPO, with an optional :REVISION, e.g. {scheme}://Qwen/Qwen2.5-7B-Instruct",
        )
    org, repo_rev = parts
    repo, colon, revision = repo_rev.partition(":")
    if colon and not revision.strip():
        raise UriError("has an empty revision after ':'; it would deploy the unpinned default branch",
                       f"pin one, e.g. {scheme}://{org}/{repo}:main or a commit hash, or drop the ':'")
    for piece in (org, repo):
        if not _REPO_PART.match(piece):
            raise UriError(f"has an invalid repository part '{piece}'", "use letters, digits, '.', '_' and '-'")
    return StorageUri(raw, scheme, org, repo, revision or None)


def check_scheme_for_target(uri: StorageUri, target: Target) -> None:
    allowed = SCHEMES_BY_TARGET[target]
    if uri.scheme in allowed:
        return
    if uri.scheme == "pvc":
        raise UriError(
            "uses pvc://, which exists only on Kubernetes clusters",
            "on a VM use file:///PATH for weights already on the host, or a remote URI (hf://, s3://, https://)",
        )
    if uri.scheme == "file":
        raise UriError(
            "uses file://, a path on one machine, which a cluster pod cannot see",
            "on a cluster use pvc://CLAIM/PATH, or a remote URI (hf://, s3://, gs://, https://)",
        )
    raise UriError(f"uses {uri.scheme}://, not allowed for target {target.value}",
                   f"use one of {', '.join(s + '://' for s in allowed)}")
