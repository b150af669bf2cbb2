"""Container "GPU VMs": systemd as PID 1, their own Docker engine and an SSH server, reached as a rented VM is: over
SSH with a key (`ssh_vars`), the sandbox's own key pair, authorised on every host at its start.

The flags are the ones measured to boot systemd and run Docker-in-Docker on
machines where `--privileged` is refused (see tests/README.md).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from vllm_fleet.sandbox import aptcache, ledger
from vllm_fleet.sandbox.hostimage import REPOSITORY

LABEL = "io.vllm-fleet.sandbox"
NETWORK = "vllm-fleet"
# A second, internal network (no route out) standing in for a fleet's private network: backends listen there, the
# gateway reaches them there, and a host only on NETWORK cannot.
INTERNAL_NETWORK = "vllm-fleet-internal"

BOOT_FLAGS = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
    "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns", "host",
    "--device-cgroup-rule", "a *:* rwm",
    # What systemd's sysctl defaults set on a VM, which systemd-sysctl cannot set inside a container: a unix datagram
    # socket (/dev/log, which HAProxy logs to) queues 512 messages, not the namespace's 10, past which they are lost.
    "--sysctl", "net.unix.max_dgram_qlen=512",
)


@dataclass(frozen=True)
class HostSpec:
    name: str
    image: str = f"{REPOSITORY}:latest"
    publish: tuple[str, ...] = ()
    shm_size: str = "2g"
    network: str = NETWORK
    labels: dict[str, str] = field(default_factory=dict)
    mounts: tuple[str, ...] = ()
    # More networks to join besides `network` (INTERNAL_NETWORK for a private backend network).
    networks: tuple[str, ...] = ()


# The sandbox's SSH key pair, made once per machine (`ssh-keygen`); its public half is root's only authorised key on
# every sandbox host.
SSH_KEY = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vllm-fleet" / "sandbox-ssh" / "id_ed25519"
# How the controller's ssh treats a sandbox host: containers of one image share its host keys and a removed host's
# address is handed to the next one, so no known_hosts entry is kept or checked for them.
SSH_OPTIONS = "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o IdentitiesOnly=yes -o LogLevel=ERROR"


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def ensure_network(name: str = NETWORK) -> None:
    """Create the network once. Hosts start side by side (the tests' parallel workers, the serving world's second
    host in a thread), and Docker lets two `network create` of one name both succeed: the name is then ambiguous
    and every `network connect` to it fails. So the check and the create hold a lock file, across processes and
    threads (each caller opens the file itself, so flock excludes threads too)."""
    lock = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vllm-fleet" / "networks.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        found = _docker("network", "ls", "--quiet", "--no-trunc", "--filter", f"name=^{name}$", check=False)
        ids = found.stdout.split()
        for extra in ids[1:]:  # a twin left by a run before this lock (removal fails if hosts joined it)
            _docker("network", "rm", extra, check=False)
        if not ids:
            internal = ["--internal"] if name == INTERNAL_NETWORK else []
            _docker("network", "create", "--label", f"{LABEL}=1", *internal, name)


def inspect(name: str) -> dict | None:
    res = _docker("container", "inspect", name, check=False)
    return json.loads(res.stdout)[0] if res.returncode == 0 else None


def gateway(network: str = NETWORK) -> str:
    """This machine's address on the sandbox network, where the hosts reach its services."""
    return _docker("network", "inspect", network, "--format", "{{(index .IPAM.Config 0).Gateway}}").stdout.strip()


def spare_address(network: str = NETWORK) -> str:
    """An address of the sandbox network's subnet that Docker gives no container (it hands addresses out from the
    bottom): the subnet's last host address, with its prefix length, e.g. 172.18.255.254/16. A gateway's virtual
    address in the serving world."""
    subnet = _docker("network", "inspect", network, "--format", "{{(index .IPAM.Config 0).Subnet}}").stdout.strip()
    net = ipaddress.ip_network(subnet)
    return f"{net[-2]}/{net.prefixlen}"


def use_apt_cache(name: str, network: str = NETWORK) -> None:
    """Point the host's apt at this machine's cache of Debian's archive (a test-world setting, not a role's)."""
    aptcache.ensure_apt_cache()
    setting = aptcache.apt_proxy_setting(gateway(network))
    subprocess.run(["docker", "exec", "-i", name, "sh", "-c", f"cat > {aptcache.APT_CONF}"], input=setting,
                   text=True, check=True, capture_output=True)


def host_up(spec: HostSpec, boot_timeout: float = 90.0) -> tuple[str, bool]:
    """Start the host if needed and wait for systemd; return (address, created). Its apt uses the apt cache."""
    ensure_network(spec.network)
    info = inspect(spec.name)
    created = False
    if info is None:
        args = ["run", "-d", "--name", spec.name, "--hostname", spec.name, "--network", spec.network,
                "--label", f"{LABEL}=1", "--shm-size", spec.shm_size,
                "--volume", f"{spec.name}-docker:/var/lib/docker", *BOOT_FLAGS]
        for pub in spec.publish:
            args += ["--publish", pub]
        for key, value in spec.labels.items():
            args += ["--label", f"{key}={value}"]
        for mount in spec.mounts:
            args += ["--volume", mount]
        _docker(*args, spec.image, "/lib/systemd/systemd")
        for extra in spec.networks:
            ensure_network(extra)
            _docker("network", "connect", extra, spec.name)
        created = True
    elif not info["State"]["Running"]:
        _docker("start", spec.name)
    wait_for_systemd(spec.name, boot_timeout)
    use_apt_cache(spec.name, spec.network)
    authorize_ssh_key(spec.name)
    return address(spec.name, spec.network), created


def ensure_ssh_key() -> Path:
    """The sandbox's private key, made on first use (lock-guarded: hosts start side by side)."""
    SSH_KEY.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (SSH_KEY.parent / "keygen.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not SSH_KEY.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vllm-fleet-sandbox", "-f",
                            str(SSH_KEY)], check=True, capture_output=True)
    return SSH_KEY


def authorize_ssh_key(name: str) -> None:
    """Make the sandbox's public key root's authorised key on the host (as a cloud VM gets its key at first boot)."""
    public = ensure_ssh_key().with_suffix(".pub").read_text()
    subprocess.run(["docker", "exec", "-i", name, "sh", "-c",
                    "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys"],
                   input=public, text=True, check=True, capture_output=True)


def ssh_vars(name: str, network: str = NETWORK, *, missing_ok: bool = False) -> dict[str, str]:
    """How Ansible reaches the running host `name` over SSH: its address on `network`, the sandbox's key, and a
    ControlMaster socket directory of this container's own (a later host given the same address never finds an
    earlier host's master connection). No host of that name: {} with `missing_ok`, else RuntimeError."""
    info = inspect(name)
    if info is None:
        if missing_ok:
            return {}
        raise RuntimeError(f"no sandbox host named {name}")
    return {
        "ansible_connection": "ssh",
        "ansible_host": str(info["NetworkSettings"]["Networks"][network]["IPAddress"]),
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(ensure_ssh_key()),
        "ansible_ssh_common_args": SSH_OPTIONS,
        "ansible_control_path_dir": f"~/.ansible/cp/{info['Id'][:12]}",
    }


def wait_for_systemd(name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        res = _docker("exec", name, "systemctl", "is-system-running", check=False)
        state = res.stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"systemd in {name} did not finish booting within {timeout:.0f}s (state: {state or 'unknown'})")


def address(name: str, network: str = NETWORK) -> str:
    info = inspect(name)
    if info is None:
        raise RuntimeError(f"no sandbox host named {name}")
    return str(info["NetworkSettings"]["Networks"][network]["IPAddress"])


# The label every vLLM container the vllm_server role runs carries (its canaries included).
ENGINE_LABEL = "io.vllm-fleet.service"


def engine_starts(name: str, since: float = 0.0) -> tuple[int, float]:
    """(vLLM engines started inside the host since `since`, the time counted up to) from the host's own Docker
    events; 0 for a host with no Docker engine running."""
    until = time.time()
    res = _docker("exec", name, "docker", "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
                  "--filter", "type=container", "--filter", "event=start", "--filter", f"label={ENGINE_LABEL}",
                  "--format", "{{.Actor.Attributes.name}}", check=False)
    return (len(res.stdout.split()) if res.returncode == 0 else 0), until


def host_down(name: str, keep_volume: bool = False, count_engines: bool = True) -> bool:
    """Remove the host (and its Docker volume); first record in the cost ledger the vLLM engines it started, unless
    its owner counts them itself (`count_engines=False`)."""
    if inspect(name) is None:
        return False
    if count_engines and os.environ.get(ledger.LEDGER_ENV):
        ledger.record("engine_starts", engine_starts(name)[0], host=name)
    _docker("rm", "-f", "-v", name)
    if not keep_volume:
        _docker("volume", "rm", "-f", f"{name}-docker", check=False)
    return True
