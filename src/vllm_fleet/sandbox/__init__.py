"""A local sandbox of container "GPU VMs": a Docker engine, systemd host images and hosts."""
