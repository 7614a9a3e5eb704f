"""Published benchmarks as volprobe items, and imports of other harnesses' results.

- :mod:`.threedrad` — 3D-RAD (all six tasks, paper numbering) → :class:`~volprobe.items.Item`;
- :mod:`.ctspatialvqa` — CT-SpatialVQA (free-text spatial QA) → items with categories;
- :mod:`.external` — predictions (JSON Lines) and judged-correctness CSVs → run records;
- :mod:`.common` — CT-RATE volume names, volume folders, CSV reading, the import result;
- :mod:`.synthetic` — invented 3D-RAD-like folders for tests and benchmarks.

Scoring rules (measurements, spatial terms, aggregates) live in :mod:`volprobe.probes.scoring`.
"""
