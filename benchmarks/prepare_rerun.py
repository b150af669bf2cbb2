"""Benchmark: first converge vs no-op re-run of playbooks/prepare-gpu-hosts.yml on N sandbox container hosts.

The hosts are Debian 12 systemd containers (`vllm-fleet sandbox up`). There is no GPU and NVIDIA's repositories are
out of reach, so the NVIDIA roles install TEST FIXTURE stand-in packages from the local signed apt repository
(tests/fixtures/apt/aptrepo.py) and see a TEST FIXTURE PCI tree (8 GPUs + 4 NVSwitches, recorded H100 output);
Docker is Debian's docker.io (a real engine). Prints the two wall times, the ratio, and the re-run's changed count.
Everything it starts is removed at the end.

    python benchmarks/prepare_rerun.py [--hosts 4]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vllm_fleet.sandbox.hosts import HostSpec, host_down, host_up  # noqa: E402
from vllm_fleet.sandbox.inventory import write_sandbox_inventory  # noqa: E402
from vllm_fleet.vm.running.paths import ensure_collection_link  # noqa: E402

REPO_SERVER = "prepbench-aptrepo"
FAKE_PCI = "/srv/vllm-fleet-test-fixture/pci/devices"
HOST_SETUP = f"""set -e
echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/vllm-fleet-test-unsafe-io
add() {{ d={FAKE_PCI}/$1; mkdir -p $d; echo 0x10de > $d/vendor; echo $2 > $d/class; echo $3 > $d/device; }}
for i in 1 2 3 4 5 6 7 8; do add 0000:1$i:00.0 0x030200 0x2330; done
for i in 1 2 3 4; do add 0000:8$i:00.0 0x068000 0x22a3; done
mkdir -p /etc/vllm-fleet-test-fixture && echo h100-sxm-x8 > /etc/vllm-fleet-test-fixture/gpu-model
"""


def inventory(path: Path, hosts: list[str]) -> Path:
    return write_sandbox_inventory(path, hosts, group_vars={
        "vllm_fleet_nvidia": True,
        "docker_source": "distribution",
        "docker_install_compose": False,
        "nvidia_driver_repo_base_url": f"http://{REPO_SERVER}/cuda",
        "nvidia_driver_pci_devices_path": FAKE_PCI,
        "nvidia_driver_install_kernel_headers": False,
        "nvidia_driver_skip_reboot": True,
        "nvidia_container_toolkit_repo_base_url": f"http://{REPO_SERVER}/libnvidia-container",
        "nvidia_container_toolkit_verify_container": False,
    })


def run_playbook(inv: Path) -> tuple[float, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv), "playbooks/prepare-gpu-hosts.yml"]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"prepare-gpu-hosts.yml failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def changed_total(output: str) -> int:
    return sum(int(n) for n in re.findall(r"changed=(\d+)", output.split("PLAY RECAP")[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=4)
    args = parser.parse_args()
    ensure_collection_link()
    names = [f"prepbench-{i}" for i in range(args.hosts)]
    aptrepo = [sys.executable, str(ROOT / "tests/fixtures/apt/aptrepo.py")]
    try:
        subprocess.run([*aptrepo, "up", REPO_SERVER], check=True, capture_output=True)
        for name in names:
            host_up(HostSpec(name=name))
            subprocess.run(["docker", "exec", name, "bash", "-c", HOST_SETUP], check=True)
        with tempfile.TemporaryDirectory(prefix="prepbench-") as tmp:
            inv = inventory(Path(tmp) / "hosts.yml", names)
            first, _ = run_playbook(inv)
            rerun, out = run_playbook(inv)
        print(f"hosts:                 {args.hosts}")
        print(f"first converge:        {first:7.1f} s")
        print(f"no-op re-run:          {rerun:7.1f} s")
        print(f"re-run / first:        {rerun / first:7.2f}")
        print(f"changed on re-run:     {changed_total(out)}")
    finally:
        for name in names:
            host_down(name)
        subprocess.run([*aptrepo, "down", REPO_SERVER], check=False, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
