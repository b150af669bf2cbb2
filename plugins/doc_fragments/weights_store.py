"""Options shared by the modules that manage a service's weights directory."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  service:
    description: Service name; the weights live under O(models_root)/O(service)/.
    type: str
    required: true
  models_root:
    description: Directory that holds every service's weights.
    type: path
    default: /var/lib/vllm-fleet/models
"""
