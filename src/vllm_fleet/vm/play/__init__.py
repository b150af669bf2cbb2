"""Play-time helpers, called by the collection's filters and modules while a play runs: container parameters, host
checks against a host's real state, status rows, the benchmark gate. Read the typed plan; import nothing of running/."""
