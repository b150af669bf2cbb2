"""Running the collection's playbooks from Python (ansible-runner) and finding them; the CLI's side of a run."""
