"""gpu_facts parsing, on recorded nvidia-smi output of real GPU models and on malformed output."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"

SMI = FIXTURES / "nvidia_smi"

# model directory -> (count, name, MiB, compute capability, driver, CUDA, MIG modes seen)
RECORDED = {
    "a100-sxm4-80gb-x8": (8, "NVIDIA A100-SXM4-80GB", 81920, "8.0", "570.172.08", "12.8", {"disabled", "enabled"}),
    "h100-sxm-x8": (8, "NVIDIA H100 80GB HBM3", 81559, "9.0", "570.172.08", "12.8", {"disabled"}),
    "l4-x1": (1, "NVIDIA L4", 23034, "8.9", "550.127.05", "12.4", {None}),
    "rtx4090-x2": (2, "NVIDIA GeForce RTX 4090", 24564, "8.9", "560.35.03", "12.6", {None}),
    "t4-x1": (1, "Tesla T4", 15360, "7.5", "535.230.02", "12.2", {None}),
}


@pytest.mark.parametrize("model", sorted(RECORDED))
def test_recorded_query_gpu(gpu_smi, model):
    count, name, mib, cap, driver, cuda, migs = RECORDED[model]
    gpus = gpu_smi.parse_query_gpu((SMI / model / "query-gpu.csv").read_text())
    assert [g["index"] for g in gpus] == list(range(count))
    assert {g["name"] for g in gpus} == {name}
    assert {g["memory_total_mib"] for g in gpus} == {mib}
    assert all(isinstance(g["memory_total_mib"], int) for g in gpus)
    assert {g["compute_capability"] for g in gpus} == {cap}
    assert {g["driver_version"] for g in gpus} == {driver}
    assert {g["mig_mode"] for g in gpus} == migs
    assert len({g["uuid"] for g in gpus}) == count
    assert all(g["uuid"].startswith("GPU-") for g in gpus)
    assert gpu_smi.parse_cuda_version((SMI / model / "banner.txt").read_text()) == cuda


def test_gpus_sorted_by_index_whatever_the_line_order(gpu_smi):
    lines = (SMI / "rtx4090-x2" / "query-gpu.csv").read_text().splitlines()
    gpus = gpu_smi.parse_query_gpu("\n".join(reversed(lines)))
    assert [g["index"] for g in gpus] == [0, 1]


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("units-left-on.csv", "not a whole number of MiB"),
        ("missing-field.csv", "has 6 fields, expected 7"),
        ("no-driver.txt", "expected 7"),
        ("gpu-fallen-off-bus.csv", "line 2: memory.total '[Unknown Error]'"),
        ("header-left-on.csv", "GPU index 'index' is not a number"),
        ("empty.csv", "printed nothing"),
    ],
)
def test_malformed_output_fails_clearly(gpu_smi, fixture, message):
    with pytest.raises(gpu_smi.GpuParseError) as err:
        gpu_smi.parse_query_gpu((SMI / "malformed" / fixture).read_text())
    assert message in str(err.value)


def test_duplicate_indices_and_mixed_drivers_rejected(gpu_smi):
    line = (SMI / "t4-x1" / "query-gpu.csv").read_text().strip()
    with pytest.raises(gpu_smi.GpuParseError, match="duplicate GPU indices"):
        gpu_smi.parse_query_gpu(line + "\n" + line.replace("GPU-ec", "GPU-fc"))
    other = line.replace("0, GPU-ec", "1, GPU-fc").replace("535.230.02", "535.247.01")
    with pytest.raises(gpu_smi.GpuParseError, match="several driver versions"):
        gpu_smi.parse_query_gpu(line + "\n" + other)


def test_unknown_mig_mode_rejected(gpu_smi):
    line = (SMI / "t4-x1" / "query-gpu.csv").read_text().strip().replace("[N/A]", "Pending")
    with pytest.raises(gpu_smi.GpuParseError, match="MIG mode"):
        gpu_smi.parse_query_gpu(line)


def test_cuda_version_absent(gpu_smi):
    assert gpu_smi.parse_cuda_version("no banner here") is None
    assert gpu_smi.parse_cuda_version("    CUDA Version                          : 12.8\n") == "12.8"


def _pci(root: Path, address: str, vendor: str, pci_class: str, device: str = "0x2330") -> None:
    d = root / address
    d.mkdir(parents=True)
    (d / "vendor").write_text(vendor + "\n")
    (d / "class").write_text(pci_class + "\n")
    (d / "device").write_text(device + "\n")


def test_pci_scan_finds_gpus_and_nvswitches(gpu_smi, tmp_path):
    _pci(tmp_path, "0000:18:00.0", "0x10de", "0x030200")
    _pci(tmp_path, "0000:05:00.0", "0x10de", "0x068000", "0x22a3")
    _pci(tmp_path, "0000:00:1f.0", "0x8086", "0x060100")
    _pci(tmp_path, "0000:18:00.1", "0x10de", "0x040300")
    devices = gpu_smi.scan_pci(str(tmp_path))
    assert [(d["address"], d["kind"]) for d in devices] == [
        ("0000:05:00.0", "nvswitch"),
        ("0000:18:00.0", "gpu"),
        ("0000:18:00.1", "other"),
    ]
    facts = gpu_smi.build_facts(devices)
    assert facts["nvidia_pci_device_present"] is True
    assert facts["nvswitch_present"] is True
    assert facts["nvidia_pci_gpu_count"] == 1
    assert facts["gpu_count"] == 0
    assert facts["driver_version"] is None


def test_no_nvidia_device(gpu_smi, tmp_path):
    _pci(tmp_path, "0000:00:02.0", "0x1af4", "0x030000")
    facts = gpu_smi.build_facts(gpu_smi.scan_pci(str(tmp_path)))
    assert facts["nvidia_pci_device_present"] is False
    assert facts["nvswitch_present"] is False
    assert gpu_smi.scan_pci(str(tmp_path / "missing")) == []


def test_facts_from_nvidia_smi_and_proc_nvswitch(gpu_smi, tmp_path):
    gpus = gpu_smi.parse_query_gpu((SMI / "h100-sxm-x8" / "query-gpu.csv").read_text())
    proc = tmp_path / "nvswitch"
    proc.mkdir()
    for n in range(4):
        (proc / f"0000:0{n + 5}:00.0").mkdir()
    facts = gpu_smi.build_facts([], gpus, "12.8", gpu_smi.count_nvswitch_proc(str(proc)))
    assert facts["gpu_count"] == 8
    assert facts["driver_version"] == "570.172.08"
    assert facts["cuda_version"] == "12.8"
    assert facts["nvswitch_count"] == 4
    assert facts["nvswitch_present"] is True
    assert facts["nvidia_pci_device_present"] is True


@pytest.mark.parametrize("model", sorted(RECORDED))
def test_summary_is_what_the_serving_stage_sizes_with(gpu_smi, model):
    count, _, mib, cap, _, _, _ = RECORDED[model]
    gpus = gpu_smi.parse_query_gpu((SMI / model / "query-gpu.csv").read_text())
    assert gpu_smi.gpu_summary(gpus) == {"count": count, "memory_mib": mib, "compute_capability": cap,
                                         "mig_gpus": [g["index"] for g in gpus if g["mig_mode"] == "enabled"]}


def test_summary_takes_the_weakest_gpu_and_lists_mig_ones(gpu_smi):
    gpus = [{"index": 0, "memory_total_mib": 81920, "compute_capability": "9.0", "mig_mode": "disabled"},
            {"index": 1, "memory_total_mib": 40960, "compute_capability": "8.0", "mig_mode": "enabled"},
            {"index": 2, "memory_total_mib": 81920, "compute_capability": "10.0", "mig_mode": None}]
    assert gpu_smi.gpu_summary(gpus) == {"count": 3, "memory_mib": 40960, "compute_capability": "8.0",
                                         "mig_gpus": [1]}
