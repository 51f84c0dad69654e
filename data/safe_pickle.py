"""Unpickling ACT-detector's ground-truth files (`JHMDB-GT.pkl`, `UCF101v2-GT.pkl`) without running
anything a crafted file names.

A pickle may call any importable function while it loads (`__reduce__`), so a plain `pickle.load`
of a file downloaded from anywhere can run code. `load` reads with an unpickler whose `find_class`
admits only what those files hold: dicts, lists, tuples, strings, numbers, None and booleans
(pickle's own opcodes, no class needed), numpy arrays, dtypes and scalars (numpy's reconstruct
functions under `numpy.core.multiarray`, as NumPy 1 and Python 2 wrote them, and
`numpy._core.multiarray`, as NumPy 2 writes them; `numpy.ndarray`, `numpy.dtype`) and
`_codecs.encode` (how protocol-2 pickles written by Python 3 store bytes). Any other name raises
`RefusedGlobal` before it is imported or called. Python 2 strings are read with encoding latin1
(the array buffers of ACT's Python 2 pickles are latin1-decoded byte strings, which NumPy takes).
"""

import importlib
import pickle

_MULTIARRAY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
ALLOWED_GLOBALS = frozenset({("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")} | {
    (module, name) for module in _MULTIARRAY_MODULES for name in ("_reconstruct", "scalar")})


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names `module.name`, which is not one of `ALLOWED_GLOBALS`."""

    def __init__(self, module, name):
        super().__init__(f"refuses to unpickle {module}.{name}")
        self.name = f"{module}.{name}"


def _multiarray():
    """NumPy's multiarray module (`numpy._core` in NumPy 2; `numpy.core` before)."""
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:
        return importlib.import_module("numpy.core.multiarray")


class GroundTruthUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` that resolves only `ALLOWED_GLOBALS` (see the module docstring)."""

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise RefusedGlobal(module, name)
        if module in _MULTIARRAY_MODULES:  # either spelling: the one this NumPy has, without its deprecation shim
            return getattr(_multiarray(), name)
        return super().find_class(module, name)


def load(handle):
    """The object pickled in the binary file `handle`; RefusedGlobal for a pickle that names any
    other callable (nothing is run), pickle.UnpicklingError and friends for a broken one."""
    return GroundTruthUnpickler(handle, encoding="latin1").load()
