"""Controls: deterministic transforms of a volume in patient space applied before a model sees it."""
