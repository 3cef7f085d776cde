"""Keep what lies inside a mask: voxels of an image, or points of every frame.

The answer to "points (frames, points, features) and a boolean mask (frames,
points): keep the selected points of each frame as a 3D array, without a loop
over frames".
"""

from __future__ import annotations

import math
import numbers
from functools import partial

import numpy as np

from . import _device, _dispatch, _gpu, _portable
from . import _validation as check
from ._blocks import boxes, frozen, nd_blocks, view_3d
from ._plan import Plan, resolve_workers, split_range, task_count

__all__ = ["apply_mask", "mask_filter"]


def mask_filter(points, mask, fill_value=np.nan, *, workers=None, device="auto"):
    """Pack the selected points of every frame to the front, keeping a 3D array.

    Parameters
    ----------
    points : array_like, shape (F, P, ...)
        ``F`` frames of ``P`` points, each with any number of trailing feature
        axes (none, or e.g. 128 features).
    mask : array_like of bool, shape (F, P)
        True (or nonzero) for the points to keep.
    fill_value : float, optional
        Value of the slots past each frame's selected points (default NaN).
    workers : int, optional
        Threads to use; default: all cores.
    device : {"auto", "cpu", "gpu"}, optional
        Where to compute: ``"cpu"``; ``"gpu"`` (CuPy and a CUDA device: a NumPy
        input is moved in pieces that fit the device and the result comes back
        as NumPy; a CuPy input gives a CuPy result); ``"auto"`` (default): the
        GPU for CuPy input, the CPU for NumPy input.

    Returns
    -------
    packed : ndarray, shape (F, max(counts), ...)
        Row ``f`` holds the selected points of frame ``f`` in their original
        order, then `fill_value`. The dtype is the points' dtype when
        `fill_value` fits in it exactly, else float (float32 for bool and
        8/16-bit integers, float64 for wider integers).
    counts : ndarray of intp, shape (F,)
        Number of selected points per frame.

    Examples
    --------
    >>> import numpy as np
    >>> points = np.arange(2 * 3 * 2).reshape(2, 3, 2)
    >>> mask = np.array([[True, False, True], [False, True, False]])
    >>> packed, counts = mask_filter(points, mask)
    >>> counts.tolist()
    [2, 1]
    >>> packed[1].tolist()
    [[8.0, 9.0], [nan, nan]]
    """
    if check.is_dask_array(points):  # a lazy Dask result (see _dask.py)
        dask = check.dask_functions()
        return _gpu.on_dask(device, points, lambda data: dask.mask_filter(data, mask, fill_value))
    if _device.resolve(device, points) == "gpu":
        return _gpu.mask_filter_plan(points, mask, fill_value).compute()
    return mask_filter_plan(points, mask, fill_value, workers=workers).compute()


def apply_mask(image, mask, fill_value=0, *, workers=None, device="auto") -> np.ndarray:
    """Keep the voxels inside `mask`; set the others to `fill_value`.

    Parameters
    ----------
    image : array_like
        Real numbers of any shape.
    mask : array_like of bool
        True (or nonzero) inside. Its shape must equal the trailing axes of the
        image, e.g. (z, y, x) for a (t, z, y, x) stack: it then applies to
        every frame.
    fill_value : float, optional
        Value of the voxels outside (default 0; NaN makes integer images float).
    workers : int, optional
        Threads to use; default: all cores.
    device : {"auto", "cpu", "gpu"}, optional
        Where to compute: ``"cpu"``; ``"gpu"`` (CuPy and a CUDA device: a NumPy
        input is moved in pieces that fit the device and the result comes back
        as NumPy; a CuPy input gives a CuPy result); ``"auto"`` (default): the
        GPU for CuPy input, the CPU for NumPy input.

    Returns
    -------
    masked : ndarray, same shape as `image`
        The image's dtype when `fill_value` fits in it exactly, else float
        (float32 for bool and 8/16-bit integers, float64 for wider).

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(6).reshape(2, 3)
    >>> apply_mask(image, np.array([True, False, True]))
    array([[0, 0, 2],
           [3, 0, 5]])
    """
    if check.is_dask_array(image):  # a lazy Dask result (see _dask.py)
        dask = check.dask_functions()
        return _gpu.on_dask(device, image, lambda data: dask.apply_mask(data, mask, fill_value))
    if _device.resolve(device, image) == "gpu":
        return _gpu.apply_mask_plan(image, mask, fill_value).compute()
    return apply_mask_plan(image, mask, fill_value, workers=workers).compute()


def fill_dtype(dtype: np.dtype, fill_value, name: str = "fill_value") -> np.dtype:
    """Dtype that holds both `dtype` values and `fill_value` exactly."""
    if isinstance(fill_value, bool | np.bool_) or not isinstance(fill_value, numbers.Real):
        raise TypeError(f"{name} must be a real number (or NaN), got {fill_value!r}")
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype
    fill = float(fill_value)
    if math.isfinite(fill) and fill == int(fill):
        if dtype.kind == "b" and fill in (0, 1):
            return dtype
        if dtype.kind in "iu" and np.iinfo(dtype).min <= fill <= np.iinfo(dtype).max:
            return dtype
    return np.dtype(np.float32) if dtype.itemsize <= 2 else np.dtype(np.float64)


def mask_filter_plan(points, mask, fill_value=np.nan, *, workers=None) -> Plan:
    """Checked, ready-to-run plan of :func:`mask_filter` (see there)."""
    points = check.as_numeric_array(points, "points", min_ndim=2)
    mask = frozen(check.as_mask(mask, "mask"))
    if mask.shape != points.shape[:2]:
        raise ValueError(
            f"mask must have shape points.shape[:2] = {points.shape[:2]} "
            f"(frames, points), got {mask.shape}"
        )
    dtype = fill_dtype(points.dtype, fill_value)
    workers = resolve_workers(workers)
    counts = np.count_nonzero(mask, axis=1)
    frames, n_points = points.shape[:2]
    packed = np.empty((frames, int(counts.max()), *points.shape[2:]), dtype)
    features = math.prod(points.shape[2:])
    source, target = _raw(points), _raw(packed)
    fill = _raw_fill(fill_value, dtype)
    target3 = target.reshape(frames, packed.shape[1], features)
    source3 = view_3d(source, 1)  # (frames, points, features) without a copy, if possible

    def pack_frames_portable(first: int, last: int):
        selected, _ = _portable.mask_filter(points[first:last], mask[first:last], fill_value)
        target[first:last] = fill  # the fill value in the raw dtype
        packed[first:last, : selected.shape[1]] = selected

    def pack_frames(first: int, last: int):
        from ._kernels.masks import pack_selected

        if source3 is not None:
            pack_selected(source3, mask, first, last, fill, target3)
        else:  # a layout that needs a copy: one block of frames at a time
            block = frozen(
                np.ascontiguousarray(source[first:last]).reshape(-1, n_points, features)
            )
            pack_selected(block, mask[first:last], 0, last - first, fill, target3[first:last])

    parts = task_count(points.nbytes, frames, workers)
    ranges = split_range(frames, parts)
    tasks = _dispatch.tasks(
        [partial(pack_frames, *pair) for pair in ranges] if _dispatch.numba_ready() else None,
        [partial(pack_frames_portable, *pair) for pair in ranges],
    )
    return Plan.from_tasks(tasks, lambda: (packed, counts), workers, "mask filter")


def apply_mask_plan(image, mask, fill_value=0, *, workers=None) -> Plan:
    """Checked, ready-to-run plan of :func:`apply_mask` (see there)."""
    image = check.as_numeric_array(image, "image")
    mask = check.as_mask(mask, "mask")
    if mask.ndim > image.ndim or mask.shape != image.shape[image.ndim - mask.ndim :]:
        raise ValueError(
            f"mask shape {mask.shape} must equal the trailing axes of the image "
            f"shape {image.shape}"
        )
    dtype = fill_dtype(image.dtype, fill_value)
    workers = resolve_workers(workers)
    out = np.empty(image.shape, dtype)
    source, target = _raw(image), _raw(out)
    fill = _raw_fill(fill_value, dtype)
    columns = mask.size
    rows = image.size // columns
    leading = image.ndim - mask.ndim
    inside = frozen(np.ascontiguousarray(mask).reshape(columns))
    target2 = target.reshape(rows, columns)
    parts = task_count(image.nbytes, image.size, workers)

    kernels = _dispatch.numba_ready()
    if source.flags.c_contiguous:  # (rows, columns) views: the kernel reads the image in place
        source2 = frozen(source.reshape(rows, columns))
        image2 = image.reshape(rows, columns)

        def mask_box(r0, r1, c0, c1):
            from ._kernels.masks import masked_copy

            masked_copy(source2, inside, fill, r0, r1, c0, c1, target2)

        def mask_box_portable(r0, r1, c0, c1):
            out2 = out.reshape(rows, columns)
            part = _portable.apply_mask(image2[r0:r1, c0:c1], inside[c0:c1], fill_value)
            out2[r0:r1, c0:c1] = part

        pieces = boxes(rows, columns, parts)
        tasks = _dispatch.tasks(
            [partial(mask_box, *box) for box in pieces] if kernels else None,
            [partial(mask_box_portable, *box) for box in pieces],
        )
    else:  # other layouts: copy one block at a time

        def mask_block(index):
            from ._kernels.masks import masked_copy

            block = frozen(np.ascontiguousarray(source[index]))
            part = frozen(np.ascontiguousarray(mask[index[leading:]]).reshape(-1))
            result = np.empty(block.shape, target.dtype)
            block_rows = block.size // part.size
            masked_copy(
                block.reshape(block_rows, part.size),
                part,
                fill,
                0,
                block_rows,
                0,
                part.size,
                result.reshape(block_rows, part.size),
            )
            target[index] = result

        def mask_block_portable(index):
            out[index] = _portable.apply_mask(image[index], mask[index[leading:]], fill_value)

        pieces = nd_blocks(image.shape, parts)
        tasks = _dispatch.tasks(
            [partial(mask_block, index) for index in pieces] if kernels else None,
            [partial(mask_block_portable, index) for index in pieces],
        )
    return Plan.from_tasks(tasks, lambda: out, workers, "apply mask")


def _raw(array: np.ndarray) -> np.ndarray:
    """The array as the copy kernels move it: float16 as its bits (uint16), others as is."""
    return array.view(np.uint16) if array.dtype == np.float16 else array


def _raw_fill(fill_value, dtype: np.dtype):
    """`fill_value` in `dtype`, as the matching `_raw` scalar."""
    value = np.asarray(fill_value, dtype).reshape(1)
    return _raw(value)[0]
