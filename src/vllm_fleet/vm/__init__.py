"""The VM target: GPU hosts driven by Ansible. Spec rules of its own, the typed per-host plan, checks of a
host's state, container parameters, and the ansible-runner driver."""
