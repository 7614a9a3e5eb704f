"""Published benchmarks as volprobe items, and imports of other harnesses' results.

Modules (import them directly; this package imports nothing so that ``volprobe.probes.scoring.answers``
can use the helpers below without cycles):

- :mod:`.threedrad` — 3D-RAD (all six tasks, paper numbering) → :class:`~volprobe.items.Item`.
- :mod:`.ctspatialvqa` — CT-SpatialVQA (free-text spatial QA) → items with categories.
- :mod:`.external` — predictions (JSON Lines) and judged-correctness CSVs → run records.
- :mod:`.measurements` — Task 3 measurements (``30x13 mm``, ``1.2 cm``) in millimetres.
- :mod:`.spatial_terms` — side / level / direction terms of a free-text answer.
- :mod:`.aggregate` — benchmark aggregates: pooled, per-subtask mean (paper), class-balanced accuracy.
- :mod:`.common` — CT-RATE volume names, volume folders, the import result.
"""
