

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Gather NVIDIA GPU facts from nvidia-smi and PCI sysfs
description:
  - Runs C(nvidia-smi --query-gpu=index,uuid,name,memory.total,compute_cap,driver_version,mig.mode.current
    --format=csv,noheader,nounits) and the C(nvidia-smi) banner, and reads PCI sysfs.
  - Works before a driver is installed; then only the PCI facts are filled in (NVIDIA vendor C(0x10de),
    GPUs by PCI class C(0x03xxxx), NVSwitches by PCI class C(0x0680xx)).
  - Output of nvidia-smi that cannot be parsed fails the task with the offending line.
  - An nvidia-smi that exits non-zero (for example before the reboot after a driver install) is not a failure;
    its message is returned in C(nvidia_smi_error).
version_added: "0.1.0"
author: vllm-fleet
options:
  nvidia_smi_path:
    description: The nvidia-smi executable, by name (looked up in PATH) or absolute path.
    type: str
    default: nvidia-smi
  pci_devices_path:
    description: The sysfs directory of PCI devices.
    type: path
    default: /sys/bus/pci/devices
  nvswitch_proc_path:
    description: The directory where the nvidia-nvswitch driver lists its devices.
    type: path
    default: /proc/driver/nvidia-nvswitch/devices
notes:
  - Supports check mode; it changes nothing.
"""

EXAMPLES = r"""
- name: Gather GPU facts
  vllmfleet.fleet.gpu_facts:

- name: Size the engine from the first GPU's memory
  ansible.builtin.debug:
    msg: "{{ ansible_facts.gpu_facts.gpus[0].memory_total_mib }} MiB"
  when: ansible_facts.gpu_facts.gpu_count > 0
"""

RETURN = r"""
ansible_facts:
  description: The facts, under C(gpu_facts).
  returned: success
  type: dict
  contains:
    gpu_facts:
      description: GPU facts.
      type: dict
      contains:
        gpus:
          description: >-
            One entry per GPU sorted by index, with C(index) (int), C(uuid), C(name), C(memory_total_mib) (int),
            C(compute_capability) (e.g. C(9.0)), C(driver_version) and C(mig_mode)
            (C(enabled), C(disabled) or null when the GPU has no MIG).
          type: list
          elements: dict
        gpu_count:
          description: Number of GPUs nvidia-smi lists (0 without a working driver).
          type: int
        driver_version:
          description: Driver version, or null without a working driver.
          type: str
        cuda_version:
          description: Highest CUDA version the driver supports, or null.
          type: str
        nvswitch_present:
          description: Whether NVSwitches are present (PCI class or the nvswitch driver).
          type: bool
        nvswitch_count:
          description: Number of NVSwitches seen.
          type: int
        nvidia_pci_device_present:
          description: Whether any NVIDIA PCI device exists, driver or not.
          type: bool
        nvidia_pci_gpu_count:
          description: Number of NVIDIA GPUs on the PCI bus.
          type: int
        nvidia_pci_devices:
          description: NVIDIA PCI functions with C(address), C(device_id), C(pci_class) and C(kind).
          type: list
          elements: dict
        nvidia_smi_error:
          description: What nvidia-smi said when it exited non-zero, else null.
          type: str
        summary:
          description:
            - What the serving stage sizes and places engines with (the prepare stage publishes it as
              C(vllm_fleet_gpus)) - C(count), the smallest C(memory_mib), the lowest C(compute_capability) and
              C(mig_gpus), the indexes of GPUs in MIG mode.
          type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vllmfleet.fleet.plugins.module_utils.gpu_smi import (
    QUERY_ARGS,
    GpuParseError,
    build_facts,
    count_nvswitch_proc,
    parse_cuda_version,
    parse_query_gpu,
    scan_pci,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nvidia_smi_path=dict(type="str", default="nvidia-smi"),
            pci_devices_path=dict(type="path", default="/sys/bus/pci/devices"),
            nvswitch_proc_path=dict(type="path", default="/proc/driver/nvidia-nvswitch/devices"),
        ),
        supports_check_mode=True,
    )
    pci = scan_pci(module.params["pci_devices_path"])
    nvswitch_proc = count_nvswitch_proc(module.params["nvswitch_proc_path"])
    smi = module.get_bin_path(module.params["nvidia_smi_path"], required=False)

    gpus, cuda, error = [], None, None
    if smi:
        rc, out, err = module.run_command([smi, *QUERY_ARGS])
        if rc != 0:
            error = (err or out).strip() or f"nvidia-smi exited with {rc}"
        else:
            try:
                gpus = parse_query_gpu(out)
            except GpuParseError as exc:
                module.fail_json(msg=f"cannot parse the output of {smi}: {exc}", stdout=out, stderr=err)
            rc, banner, err = module.run_command([smi])
            cuda = parse_cuda_version(banner) if rc == 0 else None

    facts = build_facts(pci, gpus, cuda, nvswitch_proc, error)
    module.exit_json(changed=False, ansible_facts={"gpu_facts": facts}, **facts)


if __name__ == "__main__":
    main()
