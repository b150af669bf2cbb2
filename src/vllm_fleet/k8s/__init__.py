"""KServe InferenceServices from the shared spec."""
