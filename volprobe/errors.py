"""Exceptions and warnings raised by volprobe.

Every error a user can cause derives from :class:`VolprobeError`, so the CLI can
print its message without a traceback.
"""


class VolprobeError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class VolumeReadError(VolprobeError, ValueError):
    """A file or folder could not be read as a 3D CT volume."""


class MaskError(VolprobeError, ValueError):
    """A segmentation mask is missing, empty, or does not fit its CT."""


class WeightsMissingError(VolprobeError, FileNotFoundError):
    """Model weights (TotalSegmentator, a VLM) are not on disk."""


class InvalidValueError(VolprobeError, ValueError):
    """An argument or option has a value it cannot take (the message names it and what is allowed)."""


class FormatError(VolprobeError, ValueError):
    """A file does not follow the layout volprobe expects (names the file and line)."""


class VolprobeWarning(UserWarning):
    """Something looks wrong but work can go on (e.g. intensities not like CT)."""
