"""Real origins for weight-fetch tests: nginx (from Debian) serving files, and moto's S3 server behind nginx.

nginx writes an access log with the body bytes it sent per request, which is how the tests count what
an origin served. Test models are generated here: a config.json and a real safetensors file written
per the format (8-byte little-endian header length, JSON header, raw tensor bytes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def sandbox_gateway() -> str:
    """This machine's address on the sandbox network: origins listen there so sandbox hosts reach them."""
    out = subprocess.run(["docker", "network", "inspect", "vllm-fleet", "-f", "{{(index .IPAM.Config 0).Gateway}}"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def write_safetensors(path: Path, tensors: dict[str, tuple[list[int], bytes]], dtype: str = "F32") -> None:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    blobs = []
    for name, (shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for blob in blobs:
            fh.write(blob)


def make_model(root: Path, weight_bytes: int = 64 * 1024, seed: int = 0) -> Path:
    """A tiny model directory: config.json, tokenizer_config.json and model.safetensors of ~weight_bytes."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                                                  "hidden_size": 128, "num_hidden_layers": 2, "seed": seed}))
    (root / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 256}))
    n = max(4, weight_bytes // 4 // 4 * 4)
    data = os.urandom(n * 4) if seed < 0 else (bytes(range(256)) * (n * 4 // 256 + 1))[: n * 4]
    write_safetensors(root / "model.safetensors", {"embed.weight": ([n // 4, 4], data)})
    return root


def make_adapter(root: Path, *, rank: int = 8, width: int = 128, base: str = "acme/base",
                 peft_type: str = "LORA") -> Path:
    """A PEFT-format LoRA adapter on q_proj: lora_A is [rank, width], lora_B [width, rank]."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type, "r": rank,
                                                          "base_model_name_or_path": base,
                                                          "target_modules": ["q_proj"]}))
    at = "base_model.model.model.layers.0.self_attn.q_proj"
    write_safetensors(root / "adapter_model.safetensors", {
        f"{at}.lora_A.weight": ([rank, width], os.urandom(rank * width * 4)),
        f"{at}.lora_B.weight": ([width, rank], os.urandom(rank * width * 4)),
    })
    return root


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@dataclass
class Nginx:
    prefix: Path
    root: Path
    port: int
    host: str
    proc: subprocess.Popen[bytes]
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.prefix / "access.log"

    def _settled_log(self, quiet_for: float = 0.3, at_most: float = 5.0) -> str:
        """The access log once nginx has written it: a worker logs a request after sending the response, so a
        client that has its answer can read the log a moment too early."""
        deadline = time.monotonic() + at_most
        text = self.log.read_text()
        while time.monotonic() < deadline:
            time.sleep(quiet_for)
            again = self.log.read_text()
            if again == text:
                break
            text = again
        return text

    def requests(self) -> list[dict[str, str]]:
        if not self.log.exists():
            return []
        out = []
        for line in self._settled_log().splitlines():
            method, uri, status, sent, rng = [*line.split("\t"), "", "", "", ""][:5]
            out.append({"method": method, "uri": uri, "status": status, "bytes": sent, "range": rng})
        return out

    def body_bytes(self, method: str = "GET") -> int:
        return sum(int(r["bytes"]) for r in self.requests() if r["method"] == method and r["bytes"].isdigit())

    def reset_log(self) -> None:
        self.log.write_text("")
        os.kill(self.proc.pid, signal.SIGUSR1)  # reopen the log
        time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc)


def wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], what: str, seconds: float = 30) -> None:
    """Wait until `proc` listens on host:port; fail with its stderr if it exits or the deadline passes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"{what} did not start: {err}") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {seconds:.0f} s")


@dataclass
class ServerProcess:
    """A test origin's API server as its own process (a thread would wait forever if its socket failed to bind)."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


def start_server(what: str, argv: Callable[[int], list[str]], attempts: int = 3) -> ServerProcess:
    last: RuntimeError | None = None
    for _ in range(attempts):  # a free port can be taken between choosing it and binding it
        port = free_port()
        proc = subprocess.Popen(argv(port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port("127.0.0.1", port, proc, what, seconds=60)
            return ServerProcess(port, proc)
        except RuntimeError as exc:
            last = exc
    assert last is not None
    raise last


def start_moto() -> ServerProcess:
    """moto's S3 API server (PyPI moto[server])."""
    return start_server("moto server", lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                                     "-p", str(port)])


def start_gcs() -> ServerProcess:
    """The GCS JSON API of gcp-storage-emulator (PyPI), in memory; google-cloud-storage reaches it through
    STORAGE_EMULATOR_HOST."""
    emulator = str(Path(sys.executable).with_name("gcp-storage-emulator"))
    return start_server("gcp-storage-emulator", lambda port: [emulator, "start", "--host", "127.0.0.1",
                                                              "--port", str(port), "--in-memory"])


def start_nginx(prefix: Path, root: Path, *, host: str = "127.0.0.1", limit_rate: str | None = None,
                proxy_to: str | None = None, tls: tuple[Path, Path] | None = None, extra: str = "",
                attempts: int = 3) -> Nginx:
    """nginx serving `root` (or proxying to `proxy_to`) with a body-bytes access log.

    tls: (certificate chain, key) to serve HTTPS instead of HTTP; extra: more server-level directives and
    locations (the hub layout's, for instance). A free port can be taken between choosing and binding it (parallel
    workers start origins side by side): nginx writes its pid file only once it has bound its port, so a start that
    found its port taken is seen as one and tried again on another port."""
    prefix.mkdir(parents=True, exist_ok=True)
    last: RuntimeError | None = None
    for _ in range(attempts):
        port = free_port(host)
        (prefix / "nginx.conf").write_text(_nginx_conf(prefix, root, host, port, limit_rate, proxy_to, tls, extra))
        (prefix / "nginx.pid").unlink(missing_ok=True)
        proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(host, port, proc, "nginx", seconds=10)
            _wait_for_pid_file(prefix / "nginx.pid", proc)
            return Nginx(prefix, root, port, host, proc, "https" if tls else "http")
        except RuntimeError as exc:
            stop_process(proc)
            last = exc
    assert last is not None
    raise last


def _wait_for_pid_file(path: Path, proc: subprocess.Popen[bytes], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip() == str(proc.pid):
            return
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"nginx did not start: {err}")
        time.sleep(0.05)
    raise RuntimeError(f"nginx wrote no pid file within {seconds:.0f} s (its port may be another process's)")


def _nginx_conf(prefix: Path, root: Path, host: str, port: int, limit_rate: str | None, proxy_to: str | None,
                tls: tuple[Path, Path] | None, extra: str) -> str:
    rate = f"limit_rate {limit_rate};" if limit_rate else ""
    # nginx ignores limit_rate on unbuffered proxied responses: a rate-limited relay buffers.
    buffering = "on" if limit_rate else "off"
    location = (f"proxy_pass {proxy_to}; proxy_set_header Host $http_host; proxy_buffering {buffering}; "
                "proxy_request_buffering off; client_max_body_size 0;" if proxy_to else f"root {root};")
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""
daemon off;
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
  types {{ application/octet-stream safetensors bin; application/json json; application/gzip gz;
          application/zip zip; application/x-tar tar; }}
  default_type application/octet-stream;
  log_format bytes "$request_method\\t$uri\\t$status\\t$body_bytes_sent\\t$http_range";
  access_log {prefix}/access.log bytes;
  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy; fastcgi_temp_path {prefix}/fcgi;
  uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  sendfile on;
  server {{
    listen {host}:{port}{" ssl" if tls else ""};
    root {root};
    {f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}; ssl_protocols TLSv1.2 TLSv1.3;" if tls else ""}
    {extra}
    location / {{ {location} {rate} }}
  }}
}}
"""
    return conf
