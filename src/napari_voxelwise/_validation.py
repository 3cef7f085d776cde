"""Argument checks shared by every public function.

Every check raises ``ValueError`` or ``TypeError`` with a message that starts
with the name of the offending parameter, so that the same message can be shown
to a console user and in a napari notification.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    "as_mask",
    "as_numeric_array",
    "check_choice",
    "check_int",
    "check_real",
    "compute_dtype",
    "normalize_axis",
    "normalize_per_axis",
    "result_float_dtype",
]


def as_numeric_array(data, name: str, *, min_ndim: int = 1) -> np.ndarray:
    """Return `data` as a NumPy array of real numbers (bool included), never a copy.

    Raises
    ------
    TypeError
        If the data is not numeric (object, string, complex, datetime ...).
    ValueError
        If the array has fewer than `min_ndim` dimensions or no elements.
    """
    try:
        array = np.asarray(data)
    except Exception as exc:  # e.g. ragged nested lists
        raise TypeError(f"{name} must be an array of numbers ({exc})") from exc
    return check_numeric_shape(array, name, min_ndim=min_ndim)


def check_numeric_shape(array, name: str, *, min_ndim: int = 1):
    """Raise unless `array` (NumPy or Dask) holds real numbers, has `min_ndim` axes, any element.

    Only dtype and shape are read, so a lazy array is not computed.
    """
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold real numbers (bool, integer or float), got dtype {array.dtype}"
        )
    if array.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension(s), got a {array.ndim}-d array"
        )
    if any(math.isnan(n) for n in array.shape):
        raise ValueError(f"{name} has unknown chunk sizes; call compute_chunk_sizes() first")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    return array


def result_float_dtype(dtype: np.dtype) -> np.dtype:
    """Float dtype of a computed result: float64 for float64 input, else float32."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """Working dtype of a kernel that cannot read `dtype` directly (float16, bool)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype == np.float16:
        return np.dtype(np.float32)
    return dtype


def check_int(value, name: str, *, minimum: int | None = None) -> int:
    """Return `value` as a Python int (bools refused), checking a lower bound."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_real(value, name: str, *, allow_inf: bool = False) -> float:
    """Return `value` as a Python float, refusing bools, NaN and (by default) infinities."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    """Return `value` if it is one of `choices`, else raise naming the parameter."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {list(choices)}; got {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def normalize_axis(axis, ndim: int, name: str = "axis") -> int:
    """Return `axis` as a non-negative index into an array of `ndim` dimensions."""
    axis = check_int(axis, name)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array with {ndim} dimension(s)")
    return axis % ndim


def normalize_per_axis(value, name: str, ndim: int, *, allow_zero: bool = False) -> tuple:
    """Return a tuple of `ndim` positive finite floats from a scalar or a sequence.

    Used for ``spacing`` and ``sigma``: a scalar applies to every axis, a sequence
    must have one entry per axis.
    """
    if value is None:
        raise TypeError(f"{name} must be a number or a sequence of numbers, got None")
    if np.ndim(value) == 0:
        values = (value,) * ndim
    else:
        values = tuple(np.asarray(value).tolist())
        if np.ndim(value) != 1 or len(values) != ndim:
            raise ValueError(
                f"{name} must be a number or have one entry per axis ({ndim}), got {value!r}"
            )
    result = []
    for entry in values:
        entry = check_real(entry, name)
        if entry < 0 or (entry == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{name} entries must be {bound}, got {value!r}")
        if entry != 0 and not 1e-12 <= entry <= 1e12:
            raise ValueError(f"{name} entries must lie between 1e-12 and 1e12, got {value!r}")
        result.append(entry)
    return tuple(result)


def as_mask(mask, name: str) -> np.ndarray:
    """Return `mask` as a boolean array: bool as is, numbers as ``mask != 0``.

    NaN in a numeric mask is refused, because it is neither inside nor outside.
    """
    mask = as_numeric_array(mask, name)
    if mask.dtype == np.bool_:
        return mask
    if mask.dtype.kind == "f" and np.isnan(mask).any():
        raise ValueError(f"{name} contains NaN; use a boolean mask or 0/1 values")
    return mask != 0


def is_dask_array(data) -> bool:
    """True for a Dask array, found without importing Dask (whose import is slow)."""
    return type(data).__module__.startswith("dask.") and hasattr(data, "chunks")


def dask_functions():
    """The module of the functions' Dask twins (imports Dask; call only for Dask input)."""
    from . import _dask

    return _dask
