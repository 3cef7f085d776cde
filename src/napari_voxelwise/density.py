"""Density heatmaps: the fraction of "on" elements in each block or window.

The answer to "a 12x12 binary image, and a 4x4 map of the fraction of nonzero
pixels in each 3x3 block". Counts are exact integers, so the fractions are
exact up to the float32 rounding of the result.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from . import _validation as check
from ._plan import Plan, resolve_workers, split_range, task_count

__all__ = ["DENSITY_EDGES", "DENSITY_MODES", "density_map", "density_shape"]

DENSITY_MODES = ("block", "sliding")
DENSITY_EDGES = ("trim", "pad")


def density_map(
    image, window=3, mode="block", threshold=0, edge="trim", *, workers=None
) -> np.ndarray:
    """Fraction of elements above `threshold` in each block or sliding window.

    Parameters
    ----------
    image : array_like
        Real numbers (a binary image, labels, or intensities with `threshold`).
    window : int or sequence of int, optional
        Window size. An int applies to every axis. A sequence with one entry
        per axis, or fewer: then it applies to the last axes and the leading
        axes are kept (window 1), so a (t, y, x) stack with ``window=(3, 3)``
        gives one 2D map per frame.
    mode : {"block", "sliding"}, optional
        ``"block"``: non-overlapping blocks (a coarser map). ``"sliding"``:
        every window position ("valid" positions only), equal to
        ``scipy.signal.convolve2d(image > threshold, np.ones(window), "valid") /
        prod(window)`` in 2D, at a cost that does not grow with the window.
    threshold : float, optional
        An element counts as "on" when it is ``> threshold`` (NaN never counts).
    edge : {"trim", "pad"}, optional
        Block mode only: ``"trim"`` drops partial blocks at the far edges
        (shape ``n // w``), ``"pad"`` keeps them (shape ``ceil(n / w)``) with the
        fraction taken over the elements that exist.
    workers : int, optional
        Threads to use; default: all cores.

    Returns
    -------
    density : ndarray of float32
        Values in [0, 1]; shape from :func:`density_shape`.

    Examples
    --------
    >>> import numpy as np
    >>> binary = np.zeros((12, 12), dtype=bool)
    >>> binary[:3, :3] = True  # one full block
    >>> binary[3, 3] = True  # one pixel in the next diagonal block
    >>> density_map(binary, window=3)[:2, :2]
    array([[1.        , 0.        ],
           [0.        , 0.11111111]], dtype=float32)
    """
    return density_plan(image, window, mode, threshold, edge, workers=workers).compute()


def normalize_window(window, shape: tuple[int, ...], mode: str, edge: str) -> tuple[int, ...]:
    """Window as one positive int per axis of `shape` (leading axes get 1)."""
    ndim = len(shape)
    if np.ndim(window) == 0:
        entries = (window,) * ndim
    else:
        entries = tuple(np.asarray(window, dtype=object).tolist())
        if np.ndim(window) != 1 or not entries:
            raise ValueError(f"window must be an int or a flat sequence of ints, got {window!r}")
        if len(entries) > ndim:
            raise ValueError(
                f"window has {len(entries)} entries but the image has only {ndim} axes"
            )
    sizes = tuple(check.check_int(entry, "window", minimum=1) for entry in entries)
    sizes = (1,) * (ndim - len(sizes)) + sizes
    if mode == "sliding" or edge == "trim":
        for axis, (size, length) in enumerate(zip(sizes, shape, strict=True)):
            if size > length:
                raise ValueError(
                    f"window {sizes} is larger than the image along axis {axis} "
                    f"({size} > {length}); use a smaller window"
                    + (' or edge="pad"' if mode == "block" else "")
                )
    return sizes


def density_shape(shape, window, mode: str = "block", edge: str = "trim") -> tuple[int, ...]:
    """Shape of :func:`density_map`'s result for an image of `shape`."""
    mode = check.check_choice(mode, "mode", DENSITY_MODES)
    edge = check.check_choice(edge, "edge", DENSITY_EDGES)
    shape = tuple(int(n) for n in shape)
    sizes = normalize_window(window, shape, mode, edge)
    return _output_shape(shape, sizes, mode, edge)


def _output_shape(shape, sizes, mode, edge) -> tuple[int, ...]:
    if mode == "sliding":
        return tuple(n - w + 1 for n, w in zip(shape, sizes, strict=True))
    if edge == "pad":
        return tuple(-(-n // w) for n, w in zip(shape, sizes, strict=True))
    return tuple(n // w for n, w in zip(shape, sizes, strict=True))


def _block_sums(counts: np.ndarray, axis: int, size: int, out_length: int) -> np.ndarray:
    """Sum `counts` over consecutive groups of `size` along `axis` (last group may be short).

    Adds `size` strided views instead of reducing a reshaped array, so the cost
    is one pass whatever the size.
    """
    if size == 1:
        return counts
    head = (slice(None),) * axis
    shape = list(counts.shape)
    shape[axis] = out_length
    result = np.zeros(shape, counts.dtype)
    for offset in range(size):
        part = counts[(*head, slice(offset, offset + out_length * size, size))]
        result[(*head, slice(0, part.shape[axis]))] += part
    return result


def _window_sums(counts: np.ndarray, axis: int, size: int, dtype) -> np.ndarray:
    """Sum of every run of `size` consecutive entries along `axis` (running sums)."""
    if size == 1:
        return counts
    cumulative = np.cumsum(counts, axis=axis, dtype=dtype)
    length = counts.shape[axis]
    head = (slice(None),) * axis
    sums = cumulative[(*head, slice(size - 1, length))].copy()
    sums[(*head, slice(1, None))] -= cumulative[(*head, slice(0, length - size))]
    return sums


def _pad_denominator(shape, sizes, out_shape) -> np.ndarray:
    """Number of existing elements of every (possibly partial) block, as float32."""
    denominator = np.ones((1,) * len(shape), np.float32)
    for axis, (n, w, m) in enumerate(zip(shape, sizes, out_shape, strict=True)):
        existing = np.minimum(w, n - w * np.arange(m)).astype(np.float32)
        denominator = denominator * existing.reshape((-1,) + (1,) * (len(shape) - axis - 1))
    return denominator


def density_plan(image, window=3, mode="block", threshold=0, edge="trim", *, workers=None) -> Plan:
    """Checked, ready-to-run plan of :func:`density_map` (see there)."""
    image = check.as_numeric_array(image, "image")
    mode = check.check_choice(mode, "mode", DENSITY_MODES)
    edge = check.check_choice(edge, "edge", DENSITY_EDGES)
    threshold = check.check_real(threshold, "threshold")
    sizes = normalize_window(window, image.shape, mode, edge)
    workers = resolve_workers(workers)
    out_shape = _output_shape(image.shape, sizes, mode, edge)
    out = np.empty(out_shape, np.float32)
    window_volume = math.prod(sizes)
    if mode == "block":
        count_dtype = np.int32 if window_volume < 2**31 else np.int64
    else:
        largest = window_volume * max(image.shape)
        count_dtype = np.int32 if largest < 2**31 else np.int64
    if mode == "block" and edge == "pad":
        denominator = _pad_denominator(image.shape, sizes, out_shape)
    else:
        denominator = np.float32(window_volume)

    # Split along the outermost axis with enough output rows for every worker.
    split_axis = next(
        (axis for axis, m in enumerate(out_shape) if m >= 2 * workers),
        int(np.argmax(out_shape)),
    )
    head = (slice(None),) * split_axis
    parts = task_count(image.nbytes, out_shape[split_axis], workers)

    def compute_rows(start: int, stop: int):
        size = sizes[split_axis]
        if mode == "block":
            rows = slice(start * size, min(stop * size, image.shape[split_axis]))
        else:
            rows = slice(start, stop + size - 1)
        counts = np.greater(image[(*head, rows)], threshold)
        for axis, size in enumerate(sizes):
            length = counts.shape[axis]
            if mode == "sliding":
                counts = _window_sums(counts, axis, size, count_dtype)
            else:
                if counts.dtype == np.bool_:
                    counts = counts.astype(count_dtype)
                out_length = -(-length // size) if edge == "pad" else length // size
                counts = _block_sums(counts, axis, size, out_length)
        region = (*head, slice(start, stop))
        part_denominator = denominator[region] if np.ndim(denominator) else denominator
        np.divide(counts, part_denominator, out=out[region], dtype=np.float32)

    tasks = [
        partial(compute_rows, start, stop)
        for start, stop in split_range(out_shape[split_axis], parts)
    ]
    return Plan.from_tasks(tasks, lambda: out, workers, f"{mode} density")
