"""volprobe: does a 3D medical vision-language model use the CT volume?

Layers (each imports only the layers below it):

- contracts every layer shares: :mod:`volprobe.items` (the item format), :mod:`volprobe.records` (run
  records), :mod:`volprobe.jsonio`, :mod:`volprobe.manifest`, :mod:`volprobe.seeding`,
  :mod:`volprobe.registry` (models, controls and baselines by name, plugins through entry points),
  :mod:`volprobe.errors`;
- ``volprobe.segmentation`` — CT volumes in patient space, masks, anatomy relation graphs, TotalSegmentator,
  phantoms (knows nothing of models);
- ``volprobe.controls`` — transforms of a volume (blank, shuffled, mirrored, ...) applied before a model
  sees it; each states what it does;
- ``volprobe.probes`` — items from anatomy (``questions``) and benchmark files (``datasets``), model
  adapters (``models``), blind ``baselines``, the run engine (``run``) and ``scoring``;
- ``volprobe.stats`` — tests and reports over run records (reads records only; never imports torch);
- :mod:`volprobe.demo` and :mod:`volprobe.cli` (the ``probe`` command) on top.
"""

__version__ = "0.1.0"
