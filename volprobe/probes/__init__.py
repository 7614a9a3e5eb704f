"""Turning anatomy and benchmark files into items and running models on them.

Rooms: ``questions`` (spatial question sets from relation graphs), ``datasets`` (3D-RAD, CT-SpatialVQA,
other harnesses' predictions), ``models`` (adapters and reference models), ``baselines`` (blind
baselines fitted on training items), ``run`` (the engine, run folders, the volume cache) and
``scoring`` (parsing and scoring answers, benchmark aggregates).
"""
