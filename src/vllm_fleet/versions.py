"""Versions this release of vllm-fleet is built and tested against."""

VLLM_VERSION = "0.32.0"
DEFAULT_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
