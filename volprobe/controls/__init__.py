"""Controls: deterministic transforms of a volume in patient space applied before a model sees it.

See :mod:`volprobe.controls.base` for the contract, what a control states about itself and how to add
one, and :mod:`volprobe.controls.builtin` for the built-ins (``probe controls`` lists them).
"""

from volprobe.controls.base import (CONTROLS, Control, ControlContext, ControlError, ControlledInput, ExcludedItem,
                                    get_control, list_controls, reference_control, register_control)
from volprobe.controls.builtin import STANDARD_CONTROLS, expand_control_specs, geometric_controls

__all__ = ["CONTROLS", "Control", "ControlContext", "ControlError", "ControlledInput", "ExcludedItem", "get_control",
           "list_controls", "reference_control", "register_control", "STANDARD_CONTROLS", "geometric_controls",
           "expand_control_specs"]
