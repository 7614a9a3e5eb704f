"""Items (spatial question sets, benchmarks), model adapters and the run engine."""
