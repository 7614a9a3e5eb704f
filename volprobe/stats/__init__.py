"""Statistics and reports over run records. Never imports torch."""
