"""A GnuPG signing key for the test world and the benchmarks: made in a GnuPG home of its own, no passphrase."""

from __future__ import annotations

import subprocess
from pathlib import Path


def signing_key(home: Path, user_id: str = "vllm-fleet sandbox <sandbox@example.invalid>") -> tuple[str, Path]:
    """(the new key's fingerprint, its public key exported as `signer.asc` in `home`). `home` must be short: gpg-agent
    puts its socket there."""
    home.chmod(0o700)
    subprocess.run(["gpg", "--batch", "--homedir", str(home), "--passphrase", "", "--quick-generate-key", user_id,
                    "ed25519", "sign", "never"], check=True, capture_output=True)
    listed = subprocess.run(["gpg", "--homedir", str(home), "--with-colons", "--list-secret-keys"], check=True,
                            capture_output=True, text=True).stdout
    fingerprint = next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr:"))
    public = home / "signer.asc"
    public.write_bytes(subprocess.run(["gpg", "--homedir", str(home), "--armor", "--export", fingerprint],
                                      check=True, capture_output=True).stdout)
    return fingerprint, public


def forget(home: Path) -> None:
    """Stop the home's gpg-agent (the caller removes the directory)."""
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
