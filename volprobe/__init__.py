"""volprobe: does a 3D medical vision-language model use the CT volume?

Sub-packages (dependencies point one way):

- ``volprobe.segmentation`` — CT volumes in patient space, masks, anatomy relation graphs, phantoms.
- ``volprobe.controls`` — transforms of a volume (blank, shuffled, mirrored, ...) applied before a model sees it.
- ``volprobe.probes`` — items (questions, benchmarks), model adapters and the run engine.
- ``volprobe.stats`` — tests and reports over run records (never imports torch).
"""

__version__ = "0.1.0"
