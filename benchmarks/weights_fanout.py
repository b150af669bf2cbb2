"""Fan-out benchmark: a ~1 GB synthetic model to 4 and 8 sandbox hosts, direct vs peer, from a rate-limited origin.

The origin is nginx (Debian's) on the sandbox network's gateway, rate-limited per connection with
`limit_rate`; its access log gives the bytes it served. Each configuration runs the model_weights role
on fresh weight directories (the fetch venv is set up once, before timing). Printed figures:
origin bytes as a multiple of the model size, and wall time as a ratio to one host's fetch.

    python benchmarks/weights_fanout.py [--size-mib 1024] [--rate 40m] [--hosts 4 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.weights.origins import make_model, start_nginx  # noqa: E402
from tests.weights.test_role_world import gateway, weights_plan  # noqa: E402
from vllm_fleet.sandbox.inventory import write_sandbox_inventory  # noqa: E402


def run_role(inventory: Path, limit: list[str] | None = None) -> float:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    playbook = str(Path(sys.executable).parent / "ansible-playbook")
    args = [playbook, "-i", str(inventory), str(REPO / "tests/weights/deploy-weights.yml")]
    if limit:
        args += ["--limit", ",".join(limit)]
    start = time.monotonic()
    res = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    took = time.monotonic() - start
    if res.returncode != 0:
        raise SystemExit(f"ansible-playbook failed:\n{res.stdout[-5000:]}\n{res.stderr[-2000:]}")
    return took


def wipe(hosts: list[str]) -> None:
    for host in hosts:
        subprocess.run(["docker", "exec", host, "rm", "-rf", "/var/lib/vllm-fleet/models"], check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rate", default="25m", help="nginx limit_rate per connection (bytes/s, k/m suffix)")
    ap.add_argument("--hosts", type=int, nargs="+", default=[4, 8])
    opts = ap.parse_args()

    from vllm_fleet.sandbox.hosts import HostSpec, host_down, host_up
    from vllm_fleet.vm.running.paths import ensure_collection_link

    ensure_collection_link()
    n_max = max(opts.hosts)
    names = [f"vf-weights-bench-{uuid.uuid4().hex[:4]}-{i}" for i in range(n_max)]
    work = Path(tempfile.mkdtemp(prefix="weights-bench-"))
    origin = None
    try:
        for name in names:
            host_up(HostSpec(name=name))
        www = work / "www"
        model = make_model(www / "bench", weight_bytes=opts.size_mib << 20, seed=-1)
        size = sum(f.stat().st_size for f in model.iterdir())
        origin = start_nginx(work / "nginx", www, host=gateway(), limit_rate=opts.rate)
        spec = {"services": [{"name": "bench", "storage_uri": f"{origin.url}/bench/model.safetensors",
                              "accelerator": "cpu", "gpus": 0, "storage": {"timeout_seconds": 600}}]}
        (www / "warm").mkdir()
        (www / "warm" / "w.bin").write_bytes(b"warm")
        warm_spec = {"services": [{"name": "warm", "storage_uri": f"{origin.url}/warm/w.bin", "accelerator": "cpu",
                                   "gpus": 0}]}

        def inventory(hosts: list[str], fanout: str, the_spec: dict = spec) -> Path:
            return write_sandbox_inventory(work / f"inv-{fanout}-{len(hosts)}.yml", hosts, the_spec,
                                   vllm_fleet_plan=weights_plan(the_spec),
                                   model_weights_fanout=fanout, model_weights_require_config=False,
                                   model_weights_wheelhouse=str(Path.home() / ".cache/vllm-fleet/fetch-wheels-test"))

        # Set up every host's fetch venv once (timed apart), fetching a 4-byte file.
        t0 = time.monotonic()
        run_role(inventory(names, "direct", warm_spec))
        venv_seconds = time.monotonic() - t0
        print(f"fetch venv set up on {len(names)} hosts in {venv_seconds:.1f}s", flush=True)
        wipe(names)

        origin.reset_log()
        single = run_role(inventory(names[:1], "direct"))
        print(f"one host, direct: {single:.1f}s, origin served {origin.body_bytes('GET') / size:.2f}x", flush=True)
        wipe(names)
        results = []
        for n in opts.hosts:
            for fanout in ("direct", "peer"):
                origin.reset_log()
                took = run_role(inventory(names[:n], fanout))
                served = origin.body_bytes("GET")
                results.append({"hosts": n, "fanout": fanout, "seconds": round(took, 1),
                                "origin_bytes_x_model": round(served / size, 2),
                                "wall_time_x_single": round(took / single, 2)})
                print(json.dumps(results[-1]), flush=True)
                wipe(names)
        print(json.dumps({"model_bytes": size, "origin_rate_per_connection": opts.rate,
                          "venv_setup_seconds_all_hosts": round(venv_seconds, 1),
                          "single_host_seconds": round(single, 1), "runs": results}, indent=2))
        print(f"\n{'hosts':>5} {'fanout':>7} {'origin bytes / model':>21} {'wall / single host':>19} {'seconds':>8}")
        for r in results:
            print(f"{r['hosts']:>5} {r['fanout']:>7} {r['origin_bytes_x_model']:>21} "
                  f"{r['wall_time_x_single']:>19} {r['seconds']:>8}")
    finally:
        if origin is not None:
            origin.stop()
        for name in names:
            host_down(name)
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
