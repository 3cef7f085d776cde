"""Density heatmaps: the fraction of "on" elements in each block or window.

The answer to "a 12x12 binary image, and a 4x4 map of the fraction of nonzero
pixels in each 3x3 block". Counts are exact integers, so the fractions are
exact up to the float32 rounding of the result.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from . import _device, _dispatch, _gpu, _portable
from . import _validation as check
from ._blocks import view_3d, view_4d
from ._plan import Plan, resolve_workers, split_range, task_count

__all__ = ["DENSITY_EDGES", "DENSITY_MODES", "density_map", "density_shape"]

DENSITY_MODES = ("block", "sliding")
DENSITY_EDGES = ("trim", "pad")


def density_map(
    image, window=3, mode="block", threshold=0, edge="trim", *, workers=None, device="auto"
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
    device : {"auto", "cpu", "gpu"}, optional
        Where to compute: ``"cpu"``; ``"gpu"`` (CuPy and a CUDA device: a NumPy
        input is moved in pieces that fit the device and the result comes back
        as NumPy; a CuPy input gives a CuPy result); ``"auto"`` (default): the
        GPU for CuPy input, the CPU for NumPy input.

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
    if check.is_dask_array(image):  # a lazy Dask result (see _dask.py)
        dask = check.dask_functions()
        return _gpu.on_dask(
            device, image, lambda data: dask.density_map(data, window, mode, threshold, edge)
        )
    if _device.resolve(device, image) == "gpu":
        return _gpu.density_plan(image, window, mode, threshold, edge).compute()
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


def _count_dtype(largest: int) -> np.dtype:
    """Smallest unsigned dtype holding counts up to `largest` (fast, small temporaries)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if largest <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def _prepared_threshold(dtype: np.dtype, threshold: float):
    """(threshold in `dtype`, counting mode) so that ``v > t`` is compared natively.

    For integers ``v > t`` is ``v > floor(t)``; for floats the threshold is the
    largest value of the dtype not above `t`, which selects exactly the same
    elements. Thresholds outside an integer dtype's range count all or none.
    """
    from ._kernels import COUNT_ABOVE, COUNT_ALL, COUNT_NONE

    if dtype.kind == "f":
        value = dtype.type(threshold)
        if value > threshold:
            value = np.nextafter(value, dtype.type(-np.inf))
        return value, COUNT_ABOVE
    info = np.iinfo(dtype)
    floor = math.floor(threshold)
    if floor < info.min:
        return dtype.type(info.min), COUNT_ALL
    if floor >= info.max:
        return dtype.type(info.max), COUNT_NONE
    return dtype.type(floor), COUNT_ABOVE


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
    count_dtype = _count_dtype(window_volume)
    if mode == "block" and edge == "pad":
        denominator = _pad_denominator(image.shape, sizes, out_shape)
    else:
        denominator = np.float32(window_volume)
    from . import _kernels

    # bool is read as uint8 and float16 as float32 by the kernels
    data = image.view(np.uint8) if image.dtype == np.bool_ else image
    work_dtype = check.compute_dtype(data.dtype)
    first_threshold, first_mode = _prepared_threshold(work_dtype, threshold)
    no_threshold = np.uint8(0)  # unused by the passes that add counts (its type is fixed)
    kernels = _dispatch.numba_ready()

    fused = None  # the one-pass kernel; without kernels the general plan is the faster one
    one_pass = mode == "block" and work_dtype == data.dtype and all(w == 1 for w in sizes[:-3])
    if kernels and one_pass:
        fused = view_4d(data)
    if fused is not None:
        return _fused_block_plan(
            fused,
            sizes,
            out,
            (threshold, first_threshold, first_mode),
            edge,
            count_dtype,
            workers,
            kernels,
        )

    last_pass = max(axis for axis, size in enumerate(sizes) if size > 1 or axis == 0)
    # Split along the outermost axis with enough output rows for every worker.
    split_axis = next(
        (axis for axis, m in enumerate(out_shape) if m >= 2 * workers),
        int(np.argmax(out_shape)),
    )
    head = (slice(None),) * split_axis
    parts = task_count(image.nbytes, out_shape[split_axis], workers)

    def input_rows(start: int, stop: int) -> slice:
        size = sizes[split_axis]
        if mode == "block":
            return slice(start * size, min(stop * size, image.shape[split_axis]))
        return slice(start, stop + size - 1)

    def compute_rows(start: int, stop: int):
        from ._kernels.density import group_sums, window_sums

        kernel = window_sums if mode == "sliding" else group_sums
        counts = data[(*head, input_rows(start, stop))]
        if counts.dtype != work_dtype:
            counts = counts.astype(work_dtype)
        threshold_, mode_ = first_threshold, first_mode
        region = (*head, slice(start, stop))
        # Axis 0 first: that pass reads the input once, thresholding on the fly,
        # and every later pass works on an array `window` times smaller.
        for axis, size in enumerate(sizes):
            if size == 1 and axis > 0:
                continue
            length = counts.shape[axis]
            if mode == "sliding":
                out_length = length - size + 1
            else:
                out_length = -(-length // size) if edge == "pad" else length // size
            source = view_3d(counts, axis)
            if source is None:
                source = view_3d(np.ascontiguousarray(counts), axis)
            if axis == last_pass and mode == "sliding" and source.shape[2] == 1:
                target = _view_as(out[region], (source.shape[0], out_length, 1))
                if target is not None:  # the last pass writes the fractions themselves
                    kernel(source, size, threshold_, mode_, target, np.float32(denominator))
                    return
            # counts so far fit the window's size along the axes done: a 32x32 window's
            # first pass writes uint8, as a 3x3 window's (uint16 only after the second)
            result = np.empty(
                (*counts.shape[:axis], out_length, *counts.shape[axis + 1 :]),
                _count_dtype(math.prod(sizes[: axis + 1])),
            )
            kernel(
                source,
                size,
                threshold_,
                mode_,
                result.reshape(source.shape[0], out_length, source.shape[2]),
            )
            counts, threshold_, mode_ = result, no_threshold, _kernels.COUNT_VALUE
        part_denominator = denominator[region] if np.ndim(denominator) else denominator
        np.divide(counts, part_denominator, out=out[region], dtype=np.float32)

    def compute_rows_portable(start: int, stop: int):
        piece = image[(*head, input_rows(start, stop))]
        out[(*head, slice(start, stop))] = _portable.density_map(
            piece, sizes, mode, threshold, edge
        )

    ranges = split_range(out_shape[split_axis], parts)
    tasks = _dispatch.tasks(
        [partial(compute_rows, *rows) for rows in ranges] if kernels else None,
        [partial(compute_rows_portable, *rows) for rows in ranges],
    )
    return Plan.from_tasks(tasks, lambda: out, workers, f"{mode} density")


def _view_as(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """`array` reshaped to `shape` without a copy, or None if that needs one."""
    view = array.reshape(shape)
    return view if np.may_share_memory(view, array) else None


def _fused_block_plan(source, sizes, out, thresholds, edge, count_dtype, workers, kernels) -> Plan:
    """Block mode in one pass: the rows of each block row are counted in cache, then divided.

    `source` is the image as (T, Z, Y, X) (leading axes with window 1 merged
    into T); each task handles a range of output rows (T, Zo, Yo merged).
    `thresholds` is (the threshold, and as `_prepared_threshold` gives it).
    """
    from ._kernels import COUNT_ABOVE, COUNT_ALL

    original, threshold, mode = thresholds
    if mode != COUNT_ABOVE:  # a threshold outside an integer dtype's range counts all or none
        value = 1.0 if mode == COUNT_ALL else 0.0
        return Plan.from_tasks([partial(out.fill, value)], lambda: out, 1, "block density")
    wz, wy, wx = (1, 1, 1, *sizes)[-3:]
    out4 = out.reshape(source.shape[0], *(1, 1, 1, *out.shape)[-3:])  # a view: out is new
    rows = math.prod(out4.shape[:3])
    volume = np.float32(math.prod(sizes))
    if source.dtype.kind == "u" and threshold == 0:
        threshold = None  # the kernel's fast "nonzero" count (a compile-time branch)
    work = source.nbytes
    parts = task_count(work, rows, workers)

    def compute_rows(start: int, stop: int):
        from ._kernels.density import block_density

        acc = np.zeros(-(-source.shape[3] // 8) * 8, count_dtype)  # whole 8-byte words
        pad = edge == "pad"
        block_density(source, wz, wy, wx, threshold, pad, volume, acc, out4, start, stop)

    def compute_rows_portable(start: int, stop: int):
        heights = out4.shape[2]
        for plane in range(start // heights, (stop - 1) // heights + 1):  # (t, zo) planes
            t, zo = divmod(plane, out4.shape[1])
            y0 = max(start - plane * heights, 0)
            y1 = min(stop - plane * heights, heights)
            piece = source[t, zo * wz : (zo + 1) * wz, y0 * wy : y1 * wy]
            density = _portable.density_map(piece, (wz, wy, wx), "block", original, edge)
            out4[t, zo, y0:y1] = density[0]

    ranges = split_range(rows, parts)
    tasks = _dispatch.tasks(
        [partial(compute_rows, *pair) for pair in ranges] if kernels else None,
        [partial(compute_rows_portable, *pair) for pair in ranges],
    )
    return Plan.from_tasks(tasks, lambda: out, workers, "block density")
