"""Parse nvidia-smi output and PCI sysfs into GPU facts (no Ansible imports: unit-testable as plain Python)."""



import os
import re

NVIDIA_PCI_VENDOR = "0x10de"
# PCI base classes: 0x03 display (GPUs), 0x0680 "other bridge" (NVSwitch).
GPU_CLASS_PREFIX = "0x03"
NVSWITCH_CLASS_PREFIX = "0x0680"

QUERY_FIELDS = (
    "index",
    "uuid",
    "name",
    "memory.total",
    "compute_cap",
    "driver_version",
    "mig.mode.current",
)
QUERY_ARGS = [
    "--query-gpu=" + ",".join(QUERY_FIELDS),
    "--format=csv,noheader,nounits",
]

_UUID = re.compile(r"^(GPU|MIG)-[0-9a-fA-F-]{8,}$")
_COMPUTE_CAP = re.compile(r"^\d+\.\d+$")
_DRIVER_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")
_CUDA_VERSION = re.compile(r"CUDA Version\s*:\s*(\d+\.\d+)")
_NOT_AVAILABLE = ("[N/A]", "N/A", "[Not Supported]", "")


class GpuParseError(ValueError):
    """nvidia-smi printed something that is not the CSV we asked for."""


def _mig_mode(raw):
    if raw in _NOT_AVAILABLE:
        return None
    low = raw.lower()
    if low in ("enabled", "disabled"):
        return low
    raise GpuParseError(f"unexpected MIG mode {raw!r} (expected Enabled, Disabled or [N/A])")


def parse_query_gpu(text):
    """Parse the CSV of QUERY_ARGS into a list of GPU dicts, sorted by index.

    Returns a list of dicts with index, uuid, name, memory_total_mib, compute_capability,
    driver_version and mig_mode. Raises GpuParseError naming the offending line.
    """
    gpus = []
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise GpuParseError("nvidia-smi --query-gpu printed nothing")
    for lineno, line in enumerate(lines, start=1):
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(QUERY_FIELDS):
            raise GpuParseError(
                f"line {lineno} of nvidia-smi --query-gpu output has {len(fields)} fields, expected "
                f"{len(QUERY_FIELDS)} ({','.join(QUERY_FIELDS)}): {line!r}"
            )
        index, uuid, name, memory, compute_cap, driver, mig = fields
        if not index.isdigit():
            raise GpuParseError(f"line {lineno}: GPU index {index!r} is not a number: {line!r}")
        if not _UUID.match(uuid):
            raise GpuParseError(f"line {lineno}: {uuid!r} is not a GPU UUID: {line!r}")
        if not name:
            raise GpuParseError(f"line {lineno}: empty GPU name: {line!r}")
        if not memory.isdigit():
            raise GpuParseError(
                f"line {lineno}: memory.total {memory!r} is not a whole number of MiB (was nvidia-smi run with "
                f"nounits?): {line!r}"
            )
        if not _COMPUTE_CAP.match(compute_cap):
            raise GpuParseError(f"line {lineno}: compute capability {compute_cap!r} is not MAJOR.MINOR: {line!r}")
        if not _DRIVER_VERSION.match(driver):
            raise GpuParseError(f"line {lineno}: driver version {driver!r} is not a version: {line!r}")
        gpus.append(
            {
                "index": int(index),
                "uuid": uuid,
                "name": name,
                "memory_total_mib": int(memory),
                "compute_capability": compute_cap,
                "driver_version": driver,
                "mig_mode": _mig_mode(mig),
            }
        )
    indices = [g["index"] for g in gpus]
    if len(set(indices)) != len(indices):
        raise GpuParseError(f"nvidia-smi reported duplicate GPU indices: {indices}")
    drivers = sorted(set(g["driver_version"] for g in gpus))
    if len(drivers) > 1:
        raise GpuParseError("nvidia-smi reported several driver versions at once: {}".format(", ".join(drivers)))
    return sorted(gpus, key=lambda g: g["index"])


def parse_cuda_version(text):
    """The CUDA version from the nvidia-smi banner (or -q), or None when the driver does not print one."""
    match = _CUDA_VERSION.search(text or "")
    return match.group(1) if match else None


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip().lower()
    except OSError:
        return ""


def scan_pci(devices_path):
    """NVIDIA PCI functions under a sysfs devices directory (normally /sys/bus/pci/devices)."""
    found: list[dict[str, str]] = []
    try:
        entries = sorted(os.listdir(devices_path))
    except OSError:
        return found
    for entry in entries:
        base = os.path.join(devices_path, entry)
        if _read(os.path.join(base, "vendor")) != NVIDIA_PCI_VENDOR:
            continue
        pci_class = _read(os.path.join(base, "class"))
        if pci_class.startswith(GPU_CLASS_PREFIX):
            kind = "gpu"
        elif pci_class.startswith(NVSWITCH_CLASS_PREFIX):
            kind = "nvswitch"
        else:
            kind = "other"
        found.append(
            {"address": entry, "device_id": _read(os.path.join(base, "device")), "pci_class": pci_class, "kind": kind}
        )
    return found


def count_nvswitch_proc(proc_path):
    """NVSwitch devices the loaded nvidia-nvswitch driver lists (0 when the driver is not loaded)."""
    try:
        return len([e for e in os.listdir(proc_path) if not e.startswith(".")])
    except OSError:
        return 0


def build_facts(pci_devices, gpus=None, cuda_version=None, nvswitch_proc_count=0, nvidia_smi_error=None):
    """Combine the pieces into the fact dict the roles and the serving role consume."""
    gpus = gpus or []
    nvswitch_pci = len([d for d in pci_devices if d["kind"] == "nvswitch"])
    nvswitch_count = max(nvswitch_pci, nvswitch_proc_count)
    return {
        "gpus": gpus,
        "gpu_count": len(gpus),
        "driver_version": gpus[0]["driver_version"] if gpus else None,
        "cuda_version": cuda_version if gpus else None,
        "nvswitch_present": nvswitch_count > 0,
        "nvswitch_count": nvswitch_count,
        "nvidia_pci_device_present": bool(pci_devices) or bool(gpus),
        "nvidia_pci_gpu_count": len([d for d in pci_devices if d["kind"] == "gpu"]),
        "nvidia_pci_devices": pci_devices,
        "nvidia_smi_error": nvidia_smi_error,
        "summary": gpu_summary(gpus),
    }


def gpu_summary(gpus):
    """What the serving stage sizes and places with: the count, the smallest memory, the lowest compute capability
    and the ids of GPUs in MIG mode (partitioned, so not whole GPUs)."""
    caps = sorted((tuple(int(p) for p in g["compute_capability"].split(".")), g["compute_capability"]) for g in gpus)
    return {
        "count": len(gpus),
        "memory_mib": min((g["memory_total_mib"] for g in gpus), default=0),
        "compute_capability": caps[0][1] if caps else None,
        "mig_gpus": [g["index"] for g in gpus if g.get("mig_mode") == "enabled"],
    }
