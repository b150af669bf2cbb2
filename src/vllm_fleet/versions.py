"""Versions this release of vllm-fleet is built and tested against."""

VLLM_VERSION = "0.32.0"
DEFAULT_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
# PEFT, and the Accelerate it imports, as the tiny-model generator's container imports them to make the test world's
# LoRA adapter (pure-Python wheels, unpacked beside the vLLM image's own torch and transformers).
PEFT_WHEELS = ("peft==0.21.2", "accelerate==1.16.0")
