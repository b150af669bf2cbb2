"""Read the spec from stack config, validate it, register one KServe InferenceService per service."""

from vllm_fleet.k8s.program import main

main()
