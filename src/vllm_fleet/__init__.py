"""vllm-fleet: model weights to production vLLM endpoints on GPU VMs and KServe clusters."""

__version__ = "0.1.0"
