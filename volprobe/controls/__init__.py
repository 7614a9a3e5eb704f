"""Controls: deterministic transforms of a volume in patient space applied before a model sees it.

See :mod:`volprobe.controls.base` for the contract and how to add a control, and
:mod:`volprobe.controls.builtin` for the built-ins (``probe controls`` lists them).
"""

from volprobe.controls.base import (CONTROL_REGISTRY, Control, ControlContext, ControlError, ControlledInput,
                                    ExcludedItem, case_key, derive_seed, get_control, list_controls, patient_of,
                                    register_control)

__all__ = ["CONTROL_REGISTRY", "Control", "ControlContext", "ControlError", "ControlledInput", "ExcludedItem",
           "case_key", "derive_seed", "get_control", "list_controls", "patient_of", "register_control"]
