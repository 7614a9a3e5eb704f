"""Running models on items under controls: :mod:`.engine` (the loop), :mod:`.store` (run folders:
append, resume, shards, merge) and :mod:`.volume_cache` (each CT read once, the next read ahead)."""
