"""A caching proxy for Debian's archive, shared by every sandbox host and Molecule instance on this machine.

The container hosts install packages from Debian's real archive (the prepare stage's Docker, the roles' Molecule
scenarios). Through this cache a package crosses the network once per machine; the cache directory survives
between runs. It is nginx (from Debian) with `proxy_cache`, used by apt as a per-host HTTP proxy for
deb.debian.org only (`Acquire::http::Proxy::deb.debian.org`), so local test repositories are reached directly.
The test world applies that setting to its hosts (`hosts.host_up`); no role knows about it.

apt-cacher-ng, Debian's own apt cache, was tried first: on these machines its resolver answers "503 Host not
found" for deb.debian.org, which the system resolver (and so nginx) resolves.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

PORT = 3142
ARCHIVE_HOST = "deb.debian.org"
CACHE_DIR = Path(os.environ.get("VLLM_FLEET_APT_CACHE", "/var/cache/vllm-fleet/apt"))
STATE_DIR = Path("/var/lib/vllm-fleet/apt-cache")
ACCESS_LOG = Path("/var/log/vllm-fleet/apt-cache.log")
APT_CONF = "/etc/apt/apt.conf.d/01vllm-fleet-sandbox-apt-cache"

# Pool files and by-hash indexes never change under the same name: kept for months. Release, Packages and the
# other index files change with every archive update: kept for minutes and revalidated after that.
CONFIG = """\
worker_processes 2;
pid {state}/nginx.pid;
error_log {state}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    proxy_temp_path {cache}/tmp;
    proxy_cache_path {cache}/data levels=1:2 keys_zone=apt:16m max_size=20g inactive=90d use_temp_path=off;
    log_format apt_cache '$time_iso8601 $upstream_cache_status $status $body_bytes_sent $request_uri';
    server {{
        listen {port};
        access_log {log} apt_cache;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_cache apt;
        proxy_cache_key $uri;
        proxy_cache_lock on;
        proxy_cache_lock_timeout 600s;
        proxy_read_timeout 600s;
        proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
        location = /vllm-fleet-apt-cache {{
            return 204;
        }}
        location ~ (\\.u?deb|/by-hash/.*)$ {{
            proxy_pass http://{archive};
            proxy_cache_valid 200 90d;
        }}
        location / {{
            proxy_pass http://{archive};
            proxy_cache_valid 200 5m;
            proxy_cache_revalidate on;
        }}
    }}
}}
"""


def url() -> str:
    return f"http://127.0.0.1:{PORT}/"


def answers() -> bool:
    try:
        with urllib.request.urlopen(f"{url()}vllm-fleet-apt-cache", timeout=5) as resp:  # noqa: S310 - fixed http URL
            return bool(resp.status == 204)
    except (urllib.error.URLError, OSError):
        return False


def ensure_apt_cache(timeout: float = 30.0) -> str:
    """Start the cache unless it answers; return 'running' or 'started'."""
    if answers():
        return "running"
    for directory in (CACHE_DIR / "tmp", CACHE_DIR / "data", STATE_DIR, ACCESS_LOG.parent):
        directory.mkdir(parents=True, exist_ok=True)
    config = STATE_DIR / "nginx.conf"
    config.write_text(CONFIG.format(state=STATE_DIR, cache=CACHE_DIR, log=ACCESS_LOG, port=PORT,
                                    archive=ARCHIVE_HOST))
    subprocess.run(["nginx", "-t", "-q", "-c", str(config), "-p", str(STATE_DIR)], check=True)
    # check=False: a parallel test worker may have started it a moment ago (the port is then taken); the cache
    # answering is what counts.
    subprocess.run(["nginx", "-c", str(config), "-p", str(STATE_DIR)], check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers():
            return "started"
        time.sleep(0.5)
    raise RuntimeError(f"the apt cache did not answer on port {PORT} within {timeout:.0f}s; see {STATE_DIR}/error.log")


def apt_proxy_setting(gateway: str) -> str:
    """The apt configuration a sandbox host gets: the cache as proxy for Debian's archive only."""
    return f'Acquire::http::Proxy::{ARCHIVE_HOST} "http://{gateway}:{PORT}/";\n'


def hit_counts(since: str = "") -> Counter[str]:
    """Requests by nginx's cache status (HIT, MISS, REVALIDATED, EXPIRED, STALE, ...) from the cache's own log,
    for log lines at or after the ISO time `since`."""
    counts: Counter[str] = Counter()
    if not ACCESS_LOG.exists():
        return counts
    for line in ACCESS_LOG.read_text(errors="replace").splitlines():
        fields = line.split(" ")
        if len(fields) >= 2 and fields[0] >= since:
            counts[fields[1]] += 1
    return counts


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="The sandbox's apt cache: start it, or count its hits.")
    parser.add_argument("--hits-since", default=None, help="print hit counts for log lines from this ISO time on")
    ns = parser.parse_args()
    if ns.hits_since is not None:
        counts = hit_counts(ns.hits_since)
        total = sum(counts.values())
        detail = ", ".join(f"{k} {v}" for k, v in counts.most_common())
        print(f"apt cache: {total} requests since {ns.hits_since or 'the start of its log'}: {detail or 'none'}")
        return
    print(f"apt cache: {ensure_apt_cache()} on port {PORT}, cache in {CACHE_DIR}")


if __name__ == "__main__":
    main()
