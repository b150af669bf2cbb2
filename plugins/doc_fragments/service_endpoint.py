"""Options shared by the modules that talk to a running vLLM service on its host."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  port:
    description: Host port the service's container publishes.
    type: int
    required: true
  host:
    description: Address to reach the port at.
    type: str
    default: 127.0.0.1
  api_key:
    description: The server's API key, if it has one.
    type: str
notes:
  - Supports check mode; it then only reports and sends no request.
"""
