"""Fixtures for weight-fetch tests: real origins on loopback (nginx, moto's S3 server behind nginx)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.weights.origins import Nginx, start_moto, start_nginx

REPO = Path(__file__).resolve().parents[2]


S3_KEYS = {"s3_access_key_id": "AKIAWEIGHTSTESTKEY01", "s3_secret_access_key": "weights-test-secret-9f8e7d6c5b4a"}


@pytest.fixture
def https_origin(tmp_path: Path) -> Iterator[Nginx]:
    root = tmp_path / "www"
    root.mkdir()
    origin = start_nginx(tmp_path / "nginx", root)
    yield origin
    origin.stop()


@pytest.fixture
def slow_https_origin(tmp_path: Path) -> Iterator[Nginx]:
    root = tmp_path / "www"
    root.mkdir()
    # Slow enough that a 1 MiB write lands about once a second, so every kill point is reachable.
    origin = start_nginx(tmp_path / "nginx", root, limit_rate="1m")
    yield origin
    origin.stop()


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = start_moto()
    yield server.url
    server.stop()


@pytest.fixture
def s3_origin(tmp_path: Path, moto_server: str) -> Iterator[tuple[Nginx, Any]]:
    """moto's S3 API behind nginx (which counts the bytes it relays); yields (nginx, boto3 client)."""
    import boto3

    origin = start_nginx(tmp_path / "nginx-s3", tmp_path, proxy_to=moto_server)
    client = boto3.client("s3", endpoint_url=origin.url, region_name="us-east-1",
                          aws_access_key_id=S3_KEYS["s3_access_key_id"],
                          aws_secret_access_key=S3_KEYS["s3_secret_access_key"])
    yield origin, client
    origin.stop()


def spec_for(uri: str, **extra: Any) -> dict[str, Any]:
    from vllm_fleet.spec.uri import parse_storage_uri

    parsed = parse_storage_uri(uri)
    spec = {"uri": uri, "display_uri": parsed.display(), "scheme": parsed.scheme, "revision": None,
            "endpoint": None, "allow_patterns": [], "ignore_patterns": [], "sha256": {},
            "timeout_seconds": 20, "retries": 2, "s3": None}
    spec.update(extra)
    return spec
