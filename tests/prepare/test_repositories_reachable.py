"""vllmfleet.fleet.repositories_reachable, run by Ansible against real HTTP servers on loopback: what answers passes,
every repository that does not is named at once with its fix, and a mirror's password is not in its message or
result. (At -vvv Ansible echoes every module's arguments, this one's as get_url's: a password belongs in no URL
variable.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class _Key(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/gpg" else 404)
        self.end_headers()
        self.wfile.write(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n")

    def log_message(self, *args: object) -> None:
        pass


def reach(repositories: list[dict[str, str]]) -> tuple[int, str]:
    """The module on localhost through ansible, as a deploy runs it."""
    args = json.dumps({"repositories": repositories, "timeout": 5})
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-m",
                           "vllmfleet.fleet.repositories_reachable", "-a", args],
                          capture_output=True, text=True, check=False, cwd=REPO,
                          env=os.environ | {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def test_every_unreachable_repository_is_named_with_its_fix_and_no_password_is_in_the_message() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Key)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    closed = ThreadingHTTPServer(("127.0.0.1", 0), _Key)
    refused = closed.server_address[1]
    closed.server_close()
    try:
        ok, out = reach([{"url": f"http://127.0.0.1:{port}/gpg", "what": "the mirror", "fix": "none needed"}])
        assert ok == 0, out
        failed, out = reach([
            {"url": f"http://127.0.0.1:{port}/gpg", "what": "the mirror", "fix": "none needed"},
            {"url": f"http://127.0.0.1:{port}/missing", "what": "a moved key", "fix": "set key_url"},
            {"url": f"http://bob:s3cr3t-pw@127.0.0.1:{refused}/gpg", "what": "a private mirror",
             "fix": "set base_url"},
        ])
    finally:
        server.shutdown()
    assert failed != 0
    assert ("2 repository(ies) this run installs from cannot be reached from this host; nothing was changed on any "
            "host") in out
    assert f"a moved key (http://127.0.0.1:{port}/missing): HTTP 404. Fix: set key_url" in out
    assert f"a private mirror (http://***@127.0.0.1:{refused}/gpg):" in out and "Fix: set base_url" in out
    assert "the mirror (" not in out.split("cannot be reached")[1]  # the one that answered is not listed
    assert "s3cr3t-pw" not in out
