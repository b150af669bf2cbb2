"""What the fleet's Prometheus loads and Grafana shows, built from the spec: alert rules and dashboards.

Shared by the targets (the VM fleet's monitoring role writes them as files); imports no target.
"""
