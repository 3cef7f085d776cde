"""Portable, vectorised versions of every computation of the package.

Each function is written once over an array namespace ``xp`` (NumPy here,
CuPy on a GPU) and ``ndi`` (``scipy.ndimage`` or ``cupyx.scipy.ndimage``),
both taken from the input by :func:`namespace`. They are

1. what a call runs while the compiled (Numba) kernels are not ready yet,
2. the reference the compiled kernels are tested against,
3. the GPU path.

So they hold no Python loop over voxels, frames or lines (loops over a few
axes, components or cache-sized blocks of voxels only) and call NumPy only on
Python scalars and dtypes, never on the data. Inputs are the public functions'
checked arguments (real numeric arrays, a normalised axis, one window size,
spacing and sigma per axis, ...): nothing is validated again, and no input is
ever modified.
"""

from __future__ import annotations

import contextlib
import math
import threading
from itertools import combinations_with_replacement

import numpy as np

__all__ = [
    "EIGENVALUE_ORDERS",
    "STATISTICS",
    "apply_mask",
    "array_namespace",
    "axis_statistic",
    "combine_frame_norm_partials",
    "density_map",
    "derivatives",
    "eigenvalue_norm_max",
    "finish_frame_norms",
    "frame_norm_partials",
    "frame_norms",
    "frangi_measure",
    "frangi_vesselness",
    "gradient_magnitude",
    "gradient_vectors",
    "hessian_eigenvalues",
    "hessian_matrix",
    "mask_filter",
    "namespace",
    "squared_norm_max",
    "symmetric_eigenvalues",
    "vesselness_update",
    "voxel_variance",
]

#: Statistics understood by :func:`axis_statistic`.
STATISTICS = ("var", "std", "mean", "min", "max", "sum", "median", "cv")
#: Orders understood by :func:`symmetric_eigenvalues` and :func:`hessian_eigenvalues`.
EIGENVALUE_ORDERS = ("descending", "ascending", "abs")


# --------------------------------------------------------------------------- namespaces


#: Held while SciPy is imported: its array-API layer rewrites ``sys.modules`` while it
#: loads, so two threads importing parts of it at once (a computation and numba's start,
#: which imports ``scipy.linalg``) can break each other's import.
IMPORT_LOCK = threading.Lock()


def array_namespace(array):
    """The array module of `array`: NumPy, or CuPy for a CuPy array (imported only then)."""
    if type(array).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def namespace(array):
    """The array module and ndimage module of `array`: ``(xp, ndi)``.

    NumPy and ``scipy.ndimage`` for NumPy arrays; CuPy and
    ``cupyx.scipy.ndimage`` for an array whose type comes from the ``cupy``
    module (imported only then).
    """
    xp = array_namespace(array)
    with IMPORT_LOCK:
        if xp is np:
            import scipy.ndimage as ndi
        else:
            import cupyx.scipy.ndimage as ndi
    return xp, ndi


def _quiet(xp):
    """A context ignoring floating-point warnings (NumPy's errstate; a null context elsewhere).

    Overflow to inf, 0 / 0 and NaN are part of the results, not accidents.
    """
    return np.errstate(all="ignore") if xp is np else contextlib.nullcontext()


def _float_dtype(xp, dtype):
    """Result dtype of a computation: float64 for float64 input, float32 otherwise."""
    return xp.float64 if dtype == xp.float64 else xp.float32


def _along(axis: int, index) -> tuple:
    """Index tuple applying `index` (a slice or an int) to `axis` only."""
    return (slice(None),) * axis + (index,)


# --------------------------------------------------------------------------- statistics


def axis_statistic(x, statistic: str, axis: int, ddof: int = 0, skipna: bool = False, dtype=None):
    """One statistic of every voxel along `axis`, as ``napari_voxelwise.axis_statistic``.

    Parameters
    ----------
    x : array, shape (..., k, ...)
        Real numbers (bool, integer or float).
    statistic : {"var", "std", "mean", "min", "max", "sum", "median", "cv"}
        ``cv`` is ``std / mean``; ``var``, ``std`` and ``cv`` divide by ``k - ddof``.
    axis : int
        Non-negative axis to reduce.
    ddof : int
        Delta degrees of freedom (var, std, cv).
    skipna : bool
        Leave NaNs out (float input only); a voxel without valid values gives
        NaN (0 for ``sum``). Otherwise NaN propagates.
    dtype : dtype, optional
        Result dtype of the statistics other than ``min`` and ``max``.

    Returns
    -------
    array, shape ``x.shape`` without `axis`
        ``min`` and ``max`` in the input dtype; the others float64 for float64
        input, float32 otherwise (or `dtype`), accumulated in float64.
    """
    xp = array_namespace(x)
    skipna = bool(skipna) and x.dtype.kind == "f"
    if statistic in ("min", "max"):
        return _extremum(xp, x, axis, statistic == "max", skipna)
    with _quiet(xp):
        if statistic == "median":
            result = _median(xp, x, axis, skipna)
        else:
            result = _moment(xp, x, statistic, axis, ddof, skipna)
        return xp.asarray(result).astype(_float_dtype(xp, x.dtype) if dtype is None else dtype)


def voxel_variance(x, axis: int, ddof: int = 0, skipna: bool = False):
    """Variance of every voxel along `axis`: :func:`axis_statistic` ``"var"``."""
    return axis_statistic(x, "var", axis, ddof, skipna)


def _extremum(xp, x, axis, want_max, skipna):
    """Minimum or maximum along `axis` in the input dtype (NaN-skipping with `skipna`)."""
    if not skipna:
        return xp.asarray(x.max(axis=axis) if want_max else x.min(axis=axis))
    missing = xp.isnan(x)
    filler = xp.asarray(-math.inf if want_max else math.inf, dtype=x.dtype)
    values = xp.where(missing, filler, x)
    result = values.max(axis=axis) if want_max else values.min(axis=axis)
    return xp.where(missing.all(axis=axis), xp.asarray(math.nan, dtype=x.dtype), result)


def _moment(xp, x, statistic, axis, ddof, skipna):
    """sum, mean, var, std or cv along `axis` in float64 (two passes for the variance)."""
    if skipna:
        valid = ~xp.isnan(x)
        values = xp.where(valid, x, xp.asarray(0, dtype=x.dtype))
        count = valid.sum(axis=axis, keepdims=True)
    else:
        values, count = x, x.shape[axis]
    total = values.sum(axis=axis, dtype=xp.float64, keepdims=True)
    if statistic == "sum":
        return xp.squeeze(total, axis=axis)
    mean = total / count
    if statistic == "mean":
        return xp.squeeze(mean, axis=axis)
    deviations = values - mean
    if skipna:
        deviations = xp.where(valid, deviations, 0.0)
    squares = (deviations * deviations).sum(axis=axis, keepdims=True)
    unit = 1.0
    if bool(xp.any(xp.isinf(squares) & xp.isfinite(mean))):
        # deviations beyond 1e154 square to inf: in units of each line's largest deviation,
        # the variance may overflow but the std and cv stay finite (as the kernels keep them)
        unit = xp.max(xp.abs(deviations), axis=axis, keepdims=True)
        unit = xp.where(xp.isfinite(unit) & (unit > 0), unit, 1.0)
        scaled = deviations / unit
        squares = (scaled * scaled).sum(axis=axis, keepdims=True)
    variance = squares / (count - ddof)
    if skipna:  # at most `ddof` valid values: NaN, as np.nanvar
        variance = xp.where(count > ddof, variance, math.nan)
    if statistic == "var":
        return xp.squeeze(variance * unit * unit, axis=axis)
    std = xp.squeeze(xp.sqrt(variance) * unit, axis=axis)
    return std if statistic == "std" else std / xp.squeeze(mean, axis=axis)


def _median(xp, x, axis, skipna):
    """Median along `axis` in float64: the mean of the two middle values."""
    length = x.shape[axis]
    if not skipna:
        middle = sorted({(length - 1) // 2, length // 2, length - 1})
        part = xp.partition(x, middle, axis=axis)
        low = xp.take(part, (length - 1) // 2, axis=axis)
        high = xp.take(part, length // 2, axis=axis)
        median = (low.astype(xp.float64) + high) / 2
        if x.dtype.kind == "f":  # NaN sorts last: a NaN in the line is its largest value
            median = xp.where(xp.isnan(xp.take(part, length - 1, axis=axis)), math.nan, median)
        return median
    ordered = xp.sort(x, axis=axis)  # NaNs last
    valid = (~xp.isnan(x)).sum(axis=axis, keepdims=True)
    low = xp.take_along_axis(ordered, xp.maximum(valid - 1, 0) // 2, axis=axis)
    high = xp.take_along_axis(ordered, xp.maximum(valid, 1) // 2, axis=axis)
    median = (low.astype(xp.float64) + high) / 2
    median = xp.where(valid > 0, median, math.nan)
    return xp.squeeze(median, axis=axis)


# --------------------------------------------------------------------------- frame norms


def frame_norm_partials(x, axis: int, ord: float):
    """Per-frame partial sums of a norm, to combine over pieces of a stack.

    Parameters
    ----------
    x : array
        Real numbers; the frames are its sub-arrays along `axis`.
    axis : int
        Non-negative frame axis.
    ord : float
        Positive order or ``math.inf``.

    Returns
    -------
    float64 array, shape (x.shape[axis],)
        Per frame: ``sum(|x| ** ord)`` (the sum of squares for 2), or
        ``max(|x|)`` for inf (NaN wins). Combine pieces with
        :func:`combine_frame_norm_partials`, finish with :func:`finish_frame_norms`.
    """
    xp = array_namespace(x)
    others = tuple(a for a in range(x.ndim) if a != axis)
    with _quiet(xp):
        magnitudes = xp.abs(x.astype(xp.float64))  # a new array: the input stays untouched
        if math.isinf(ord):
            return magnitudes.max(axis=others) if others else magnitudes
        if ord == 2:
            magnitudes *= magnitudes
        elif ord != 1:
            magnitudes **= ord
        return magnitudes.sum(axis=others) if others else magnitudes


def combine_frame_norm_partials(first, second, ord: float):
    """Partials of two pieces of the same frames: added, or their maximum for inf."""
    xp = array_namespace(first)
    return xp.maximum(first, second) if math.isinf(ord) else first + second


def finish_frame_norms(partials, ord: float):
    """The norms from (combined) :func:`frame_norm_partials`: a new float64 array."""
    xp = array_namespace(partials)
    with _quiet(xp):
        if ord == 2:
            return xp.sqrt(partials)
        if ord == 1 or math.isinf(ord):
            return partials.astype(xp.float64)  # a copy
        return partials ** (1.0 / ord)


def frame_norms(x, axis: int, ord: float):
    """One norm per frame along `axis`, as ``napari_voxelwise.frame_norms`` (float64)."""
    return finish_frame_norms(frame_norm_partials(x, axis, ord), ord)


# --------------------------------------------------------------------------- density


def density_map(image, sizes: tuple, mode: str, threshold: float, edge: str = "trim"):
    """Fraction of elements ``> threshold`` in each block or sliding window.

    Parameters
    ----------
    image : array
        Real numbers; NaN never counts.
    sizes : tuple of int
        Window size per axis (leading axes may be 1).
    mode : {"block", "sliding"}
        Non-overlapping blocks, or every "valid" window position (running sums:
        the cost does not grow with the window).
    threshold : float
        An element counts when it is above it (compared exactly, whatever the dtype).
    edge : {"trim", "pad"}
        Block mode: drop partial blocks, or keep them with the fraction taken
        over the elements that exist.

    Returns
    -------
    float32 array
        Shape ``n - w + 1`` (sliding), ``n // w`` (trim) or ``ceil(n / w)`` (pad)
        per axis. Counts are exact integers divided once in float32.
    """
    xp = array_namespace(image)
    on = _above(xp, image, threshold)
    volume = math.prod(sizes)
    if mode == "sliding":
        counts = _window_sums(xp, on, sizes)
        denominator = xp.float32(volume)
    else:
        counts, denominator = _block_sums(xp, on, sizes, edge)
    return counts.astype(xp.float32) / denominator


def _above(xp, image, threshold: float):
    """Boolean ``image > threshold``, compared exactly (as the real numbers compare).

    A float threshold is rounded to the image's dtype first, so the comparison
    runs natively: with ``t`` the nearest value of the dtype, ``v > threshold``
    is ``v >= t`` when ``t`` rounded up and ``v > t`` otherwise. For integers
    it is ``v > floor(threshold)``, all or none outside the dtype's range.
    """
    dtype = image.dtype
    if dtype.kind == "f":
        with _quiet(xp):  # thresholds beyond the dtype's range round to +-inf
            nearest = dtype.type(threshold)
        return image >= nearest if float(nearest) > threshold else image > nearest
    if dtype.kind == "b":
        low, high = 0, 1
    else:
        info = np.iinfo(dtype)  # the dtype's range, not the data
        low, high = int(info.min), int(info.max)
    floor = math.floor(threshold)
    if floor < low:
        return xp.ones(image.shape, dtype=bool)
    if floor >= high:
        return xp.zeros(image.shape, dtype=bool)
    return image > floor


def _count_dtype(xp, largest: int):
    """Integer dtype holding counts up to `largest` exactly."""
    return xp.int32 if largest < 2**31 else xp.int64


def _block_sums(xp, on, sizes, edge):
    """Counts of each block (reshape and sum) and what to divide them by (float32)."""
    shape = on.shape
    if edge == "pad":
        out_shape = tuple(-(-n // w) for n, w in zip(shape, sizes, strict=True))
        widths = [(0, m * w - n) for n, w, m in zip(shape, sizes, out_shape, strict=True)]
        on = xp.pad(on, widths)  # False: the missing elements count as off
    else:
        out_shape = tuple(n // w for n, w in zip(shape, sizes, strict=True))
        on = on[tuple(slice(0, m * w) for w, m in zip(sizes, out_shape, strict=True))]
    grouped = on.reshape([size for pair in zip(out_shape, sizes, strict=True) for size in pair])
    window_axes = tuple(range(1, 2 * len(shape), 2))
    counts = grouped.sum(axis=window_axes, dtype=_count_dtype(xp, math.prod(sizes)))
    if edge != "pad":
        return counts, xp.float32(math.prod(sizes))
    # the elements that exist in each block: a product of per-axis counts, in float32
    denominator = xp.ones((1,) * len(shape), dtype=xp.float32)
    for axis, (n, w, m) in enumerate(zip(shape, sizes, out_shape, strict=True)):
        existing = xp.minimum(w, n - w * xp.arange(m)).astype(xp.float32)
        denominator = denominator * existing.reshape((-1,) + (1,) * (len(shape) - axis - 1))
    return counts, denominator


def _window_sums(xp, on, sizes):
    """Counts of every window ("valid" positions) by running sums, one axis at a time."""
    counts = on
    dtype = _count_dtype(xp, on.size)  # a running sum reaches at most the element count
    for axis, size in enumerate(sizes):
        if size == 1:
            continue
        running = xp.cumsum(counts, axis=axis, dtype=dtype)
        first = running[_along(axis, slice(size - 1, size))]
        later = running[_along(axis, slice(size, None))] - running[_along(axis, slice(0, -size))]
        counts = xp.concatenate([first, later], axis=axis)
    return counts


# --------------------------------------------------------------------------- masking


def _fill_dtype(dtype, fill_value):
    from .masking import fill_dtype  # the one definition of the rule

    return fill_dtype(dtype, fill_value)


def apply_mask(image, mask, fill_value):
    """`image` inside `mask` (shaped like its trailing axes), `fill_value` elsewhere.

    Returns a new array of ``masking.fill_dtype(image.dtype, fill_value)``.
    """
    xp = array_namespace(image)
    dtype = _fill_dtype(image.dtype, fill_value)
    with _quiet(xp):  # a fill value beyond a float dtype's range is +-inf
        fill = xp.asarray(fill_value, dtype=dtype)
    return xp.where(mask, image.astype(dtype, copy=False), fill)


def mask_filter(points, mask, fill_value):
    """Pack the selected points of every frame to the front, as ``napari_voxelwise.mask_filter``.

    Parameters
    ----------
    points : array, shape (F, P, ...)
    mask : bool array, shape (F, P)
    fill_value : float

    Returns
    -------
    packed : array, shape (F, max(counts), ...)
        Frame ``f``'s selected points in their order, then `fill_value`; dtype
        ``masking.fill_dtype(points.dtype, fill_value)``.
    counts : intp array, shape (F,)
        Selected points per frame.
    """
    xp = array_namespace(points)
    dtype = _fill_dtype(points.dtype, fill_value)
    counts = mask.sum(axis=1, dtype=xp.intp)
    slots = int(counts.max())
    with _quiet(xp):  # a fill value beyond a float dtype's range is +-inf
        fill = xp.asarray(fill_value, dtype=dtype)
    packed = xp.full((points.shape[0], slots, *points.shape[2:]), fill, dtype=dtype)
    frames, columns = xp.nonzero(mask)  # row-major: frame by frame, points in order
    rank = xp.cumsum(mask, axis=1, dtype=xp.intp) - 1  # slot of each selected point
    packed[frames, rank[frames, columns]] = points[frames, columns]
    return packed, counts


# --------------------------------------------------------------------------- derivatives


def derivatives(
    volume, orders, sigma, spacing, truncate: float = 4.0, dtype=None, rows=None
) -> dict:
    """Partial derivatives of `volume` with respect to physical coordinates.

    Parameters
    ----------
    volume : array
        Real numbers.
    orders : sequence of tuple of int
        Derivative order per axis of each wanted component, e.g. (1, 0, 0),
        (1, 1, 0) or (2, 0, 0).
    sigma : tuple of float or None
        Gaussian scale per axis in the units of `spacing`; None: finite
        differences (``np.gradient``, applied once per order).
    spacing : tuple of float
        Voxel size per axis.
    truncate : float
        Gaussian kernels stop at ``truncate`` standard deviations (in voxels).
    dtype : dtype, optional
        Result dtype; default float64 for float64 input, float32 otherwise.
    rows : (int, int), optional
        Keep only rows ``start:stop`` along axis 0 (the others are context, as
        a slab's halo is): Gaussian passes along the other axes then run on
        those rows only.

    Returns
    -------
    dict
        ``{orders: array of volume.shape (`rows` only along axis 0) and dtype}``.
        Gaussian components equal ``scipy.ndimage.gaussian_filter(volume,
        sigma / spacing, order=orders, mode="reflect", truncate=truncate) /
        prod(spacing ** orders)``, computed
        by separable passes shared between components, in `dtype`. Finite
        differences are computed in float64 from the volume in `dtype` and
        rounded once (a second derivative differences float64 first ones); a
        derivative next to an inf or NaN sample is NaN. With a Gaussian, a
        volume holding inf or NaN gives NaN where a component is not finite.
    """
    xp = array_namespace(volume)
    dtype = _float_dtype(xp, volume.dtype) if dtype is None else dtype
    orders = list(dict.fromkeys(tuple(int(k) for k in o) for o in orders))
    values = volume.astype(dtype, copy=False)  # as the compiled path reads it
    with _quiet(xp):
        kept = slice(None) if rows is None else slice(*rows)
        if sigma is None:
            results = _difference_derivatives(xp, values, orders, spacing, dtype)
            return {o: component[kept] for o, component in results.items()}
        _, ndi = namespace(volume)  # SciPy only for Gaussians: its import takes ~0.25 s
        results = {}
        weights = _gaussian_weights(xp, ndi, orders, sigma, spacing, truncate)
        _gaussian_passes(ndi, values, 0, orders, weights, dtype, results, kept)
        if values.dtype.kind == "f" and not bool(xp.isfinite(values).all()):
            for component in results.values():
                component[~xp.isfinite(component)] = math.nan
        return results


def _difference(xp, values, axis: int, spacing: float):
    """``np.gradient`` of `values` along `axis` in float64; NaN next to inf or NaN.

    ``(0.5 * up - 0.5 * down) / spacing`` (central, the one-sided edges twice
    that): halving first keeps differences near the largest float finite.
    """
    half = values.astype(xp.float64)
    half *= 0.5
    difference = xp.empty_like(half)
    difference[_along(axis, slice(1, -1))] = (
        half[_along(axis, slice(2, None))] - half[_along(axis, slice(0, -2))]
    )
    difference[_along(axis, slice(0, 1))] = (
        half[_along(axis, slice(1, 2))] - half[_along(axis, slice(0, 1))]
    )
    difference[_along(axis, slice(-1, None))] = (
        half[_along(axis, slice(-1, None))] - half[_along(axis, slice(-2, -1))]
    )
    difference += difference - difference  # inf (an inf sample) becomes NaN
    difference *= 1.0 / spacing
    difference[_along(axis, slice(0, 1))] *= 2.0
    difference[_along(axis, slice(-1, None))] *= 2.0
    return difference


def _difference_derivatives(xp, values, orders, spacing, dtype):
    """Finite-difference components; first differences are shared and stay float64."""
    first = {}
    results = {}
    for orders_ in orders:
        steps = [axis for axis, count in enumerate(orders_) for _ in range(count)]
        if steps[0] not in first:
            first[steps[0]] = _difference(xp, values, steps[0], spacing[steps[0]])
        result = first[steps[0]]
        for axis in steps[1:]:
            result = _difference(xp, result, axis, spacing[axis])
        results[orders_] = result.astype(dtype)
    return results


def _gaussian_weights(xp, ndi, orders, sigma, spacing, truncate):
    """scipy's own correlation weights ``{(axis, order): float64 array}``, over ``spacing**order``.

    Read from ``gaussian_filter1d``'s response to an impulse (which is its
    weights reversed).
    """
    weights = {}
    for orders_ in orders:
        for axis, order in enumerate(orders_):
            if (axis, order) in weights:
                continue
            sigma_voxels = sigma[axis] / spacing[axis]
            radius = int(truncate * sigma_voxels + 0.5)
            impulse = xp.zeros(2 * radius + 1)
            impulse[radius] = 1.0
            response = ndi.gaussian_filter1d(
                impulse, sigma_voxels, order=order, mode="constant", truncate=truncate
            )
            weights[axis, order] = response[::-1] / spacing[axis] ** order
    return weights


def _gaussian_passes(ndi, array, axis, group, weights, dtype, results, kept=slice(None)):
    """The 1D passes along `axis` that the components `group` need, then deeper.

    Components sharing their orders along the first axes share those passes
    (15 passes instead of 18 for a 3D Hessian); after the pass along axis 0
    only the rows `kept` go on. A module-level function, not a recursive
    closure, so intermediate arrays are freed as soon as done.
    """
    by_order: dict[int, list] = {}
    for orders_ in group:
        by_order.setdefault(orders_[axis], []).append(orders_)
    for order, subgroup in by_order.items():
        filtered = ndi.correlate1d(
            array, weights[axis, order], axis=axis, output=dtype, mode="reflect"
        )
        if axis == 0:
            filtered = filtered[kept]
        if axis == array.ndim - 1:
            results[subgroup[0]] = filtered
        else:
            _gaussian_passes(ndi, filtered, axis + 1, subgroup, weights, dtype, results)
        del filtered


def _first_orders(ndim: int) -> list[tuple[int, ...]]:
    return [tuple(int(a == b) for b in range(ndim)) for a in range(ndim)]


def _hessian_orders(ndim: int) -> list[tuple[tuple[int, int], tuple[int, ...]]]:
    """((i, j), orders) of the unique Hessian entries, i <= j in row-major order."""
    pairs = []
    for i, j in combinations_with_replacement(range(ndim), 2):
        orders = [0] * ndim
        orders[i] += 1
        orders[j] += 1
        pairs.append(((i, j), tuple(orders)))
    return pairs


def gradient_vectors(volume, sigma, spacing, truncate: float = 4.0):
    """Gradient of every voxel, shape ``volume.shape + (ndim,)`` (see :func:`derivatives`)."""
    xp = array_namespace(volume)
    orders = _first_orders(volume.ndim)
    components = derivatives(volume, orders, sigma, spacing, truncate)
    return xp.stack([components[o] for o in orders], axis=-1)


def gradient_magnitude(volume, sigma, spacing, truncate: float = 4.0):
    """Length of every voxel's gradient (summed in float64), shape ``volume.shape``."""
    xp = array_namespace(volume)
    orders = _first_orders(volume.ndim)
    dtype = _float_dtype(xp, volume.dtype)
    components = derivatives(volume, orders, sigma, spacing, truncate, dtype)
    squares = xp.zeros(volume.shape, dtype=xp.float64)
    with _quiet(xp):
        for component in components.values():
            squares += xp.square(component.astype(xp.float64))
        return xp.sqrt(squares).astype(dtype)


def hessian_matrix(volume, sigma, spacing, truncate: float = 4.0):
    """Symmetric Hessian of every voxel, shape ``volume.shape + (ndim, ndim)``."""
    xp = array_namespace(volume)
    ndim = volume.ndim
    pairs = _hessian_orders(ndim)
    dtype = _float_dtype(xp, volume.dtype)
    components = derivatives(volume, [o for _, o in pairs], sigma, spacing, truncate, dtype)
    out = xp.empty((*volume.shape, ndim, ndim), dtype=dtype)
    for (i, j), orders in pairs:
        out[..., i, j] = components[orders]
        out[..., j, i] = components[orders]
    return out


def hessian_eigenvalues(volume, sigma, spacing, order: str = "descending", truncate: float = 4.0):
    """Eigenvalues of every voxel's Hessian (2D or 3D volume), shape ``volume.shape + (ndim,)``.

    `order` as in :func:`symmetric_eigenvalues`; float64 for float64 input,
    float32 otherwise.
    """
    xp = array_namespace(volume)
    pairs = _hessian_orders(volume.ndim)
    dtype = _float_dtype(xp, volume.dtype)
    components = derivatives(volume, [o for _, o in pairs], sigma, spacing, truncate, dtype)
    parts = [components.pop(o) for _, o in pairs]
    return symmetric_eigenvalues(parts, order, dtype)


# --------------------------------------------------------------------------- eigenvalues

#: Voxels per block of the NumPy eigenvalue solver: its float64 temporaries stay in cache
#: (2x faster than whole-volume temporaries). Other namespaces take all voxels at once.
_EIGEN_BLOCK = 2**14


def symmetric_eigenvalues(components, order: str = "descending", dtype=None):
    """Closed-form eigenvalues of symmetric 2x2 or 3x3 matrices, voxel by voxel.

    Parameters
    ----------
    components : sequence of arrays, all of one shape (...)
        The upper triangle in row-major order: ``(h00, h01, h11)`` or
        ``(h00, h01, h02, h11, h12, h22)``.
    order : {"descending", "ascending", "abs"}
        ``l1 >= l2 >= l3``, the reverse, or ascending absolute value
        (Frangi's ``|l1| <= |l2| <= |l3|``; equal magnitudes: positive first).
    dtype : dtype, optional
        Result dtype; default float64 for float64 components, float32 otherwise.

    Returns
    -------
    array, shape (..., 2) or (..., 3)
        Computed in float64 (no (..., 3, 3) matrix is built); NaN for a matrix
        holding NaN or inf, +-inf only for eigenvalues beyond `dtype`'s range.
    """
    xp = array_namespace(components[0])
    dtype = _float_dtype(xp, components[0].dtype) if dtype is None else dtype
    size = len(components)
    n = 2 if size == 3 else 3
    shape = components[0].shape
    total = math.prod(shape)
    flat = [xp.reshape(c, (total,)) for c in components]
    out = xp.empty((total, n), dtype=dtype)
    solve = _eigenvalues2 if n == 2 else _eigenvalues3
    if xp is not np and _fused(xp):  # one fused device kernel, same method (_kernels_cupy)
        from . import _kernels_cupy

        solve = _kernels_cupy.eigenvalues2 if n == 2 else _kernels_cupy.eigenvalues3
    block = _EIGEN_BLOCK if xp is np else max(total, 1)
    with _quiet(xp):
        for start in range(0, total, block):
            part = [c[start : start + block] for c in flat]
            values = _ordered(xp, solve(xp, *part), order)
            for k, value in enumerate(values):
                out[start : start + block, k] = value
    return xp.reshape(out, (*shape, n))


def _eigenvalues2(xp, a, b, c):
    """Descending eigenvalues ``mean +- hypot((a - c) / 2, b)`` of [[a, b], [b, c]]."""
    a = a.astype(xp.float64)
    b = b.astype(xp.float64)
    c = c.astype(xp.float64)
    a *= 0.5  # halves: neither the mean nor the half difference can overflow
    c *= 0.5
    mean = a + c
    radius = xp.hypot(a - c, b)
    poison = mean * 0.0 + b * 0.0  # NaN where an entry is inf or NaN, else 0
    mean += poison
    return mean + radius, mean - radius


def _eigenvalues3(xp, a, d, e, b, f, c):
    """Descending eigenvalues of [[a, d, e], [d, b, f], [e, f, c]] (trigonometric method).

    Each matrix is divided by its largest entry (nothing overflows, nothing
    tiny underflows; scales below 1e-300 count as 1e-300, so ``1 / scale`` is
    finite), shifted by the mean ``q`` of its diagonal, and the deviatoric part
    ``B`` (norm ``p``) gives ``r = det(B) / (2 p**3)``, clipped to [-1, 1]; the
    eigenvalues are ``q + 2 p cos(acos(r) / 3 + 2 pi k / 3)``. A vanishing
    deviatoric part (isotropic or zero matrices) gives ``r = 0`` and three
    equal eigenvalues ``q``.
    """
    scale = xp.abs(a)
    for entry in (d, e, b, f, c):
        scale = xp.maximum(scale, xp.abs(entry))  # NaN wins
    scale = xp.maximum(scale.astype(xp.float64), 1e-300)
    poison = scale - scale  # NaN where an entry is inf or NaN, else 0
    inverse = 1.0 / scale
    entries = []
    for entry in (a, d, e, b, f, c):
        entry = entry.astype(xp.float64)
        entry *= inverse
        entries.append(entry)
    a, d, e, b, f, c = entries
    q = (a + b + c) * (1.0 / 3.0)
    a -= q
    b -= q
    c -= q
    p2 = (a * a + b * b + c * c + 2.0 * (d * d + e * e + f * f)) * (1.0 / 6.0)
    p = xp.sqrt(p2)
    det = a * (b * c - f * f) - d * (d * c - f * e) + e * (d * f - b * e)
    cube = 2.0 * p2 * p
    cube += cube == 0  # a vanishing deviatoric part: r = det = 0
    r = xp.clip(det / cube, -1.0, 1.0)
    cosine = _cos_third(xp, xp.arccos(r) * (1.0 / 3.0))  # the angle is in [0, pi/3]
    sine = xp.sqrt(1.0 - cosine * cosine)
    cosine *= p
    sine *= p
    sine *= math.sqrt(3.0)
    q += poison
    middle = q - cosine
    largest = (q + 2.0 * cosine) * scale
    second = (middle + sine) * scale
    smallest = (middle - sine) * scale
    # largest >= second mathematically; enforce it against rounding
    return xp.maximum(largest, second), xp.minimum(largest, second), smallest


#: Taylor coefficients of cos(x) in x**2, highest first: on [0, pi/3] the first omitted
#: term is below 1e-18, and the polynomial is 3x faster than NumPy's float64 ``cos``.
_COS_TAYLOR = tuple((-1) ** k / math.factorial(2 * k) for k in range(9, -1, -1))


def _cos_third(xp, angle):
    """``cos(angle)`` for angles in [0, pi/3] (a third of an arccos), in float64."""
    square = angle * angle
    result = xp.full_like(square, _COS_TAYLOR[0])
    for coefficient in _COS_TAYLOR[1:]:
        result *= square
        result += coefficient
    return result


def _ordered(xp, descending, order):
    """Eigenvalues given in descending order, put in the requested order."""
    if order == "descending":
        return descending
    if order == "ascending":
        return descending[::-1]
    return _by_magnitude(xp, descending)  # "abs": equal magnitudes keep positive first


def _by_magnitude(xp, values):
    """2 or 3 arrays sorted by ascending magnitude, voxel by voxel; ties keep their order.

    Compare-swaps of neighbours (a stable sorting network), as selects.
    """
    values = list(values)
    pairs = [(0, 1), (1, 2), (0, 1)] if len(values) == 3 else [(0, 1)]
    for i, j in pairs:
        swap = xp.abs(values[i]) > xp.abs(values[j])
        values[i], values[j] = (
            xp.where(swap, values[j], values[i]),
            xp.where(swap, values[i], values[j]),
        )
    return values


# --------------------------------------------------------------------------- vesselness


def frangi_vesselness(
    eigenvalues, alpha: float = 0.5, beta: float = 0.5, gamma=None, ridges: str = "bright"
):
    """Frangi's vesselness from per-voxel eigenvalues, as ``napari_voxelwise.frangi_vesselness``.

    Parameters
    ----------
    eigenvalues : array, shape (..., 2) or (..., 3)
        Eigenvalues in any order.
    alpha, beta : float
        Plate and blob sensitivities.
    gamma : float or None
        Structure sensitivity; None: half of the largest Hessian norm (NaN
        voxels skipped; 1 if that is not positive).
    ridges : {"bright", "dark"}

    Returns
    -------
    array, shape ``eigenvalues.shape[:-1]``
        Values in [0, 1] (NaN for NaN voxels); float64 for float64 input, float32 otherwise.
    """
    xp = array_namespace(eigenvalues)
    dtype = _float_dtype(xp, eigenvalues.dtype)
    with _quiet(xp):
        if gamma is None:
            largest = eigenvalue_norm_max(eigenvalues)
            gamma = largest / 2 if largest / 2 > 0 else 1.0
        sign = -1.0 if ridges == "bright" else 1.0  # bright tubes: negative eigenvalues
        values = sign * eigenvalues.astype(dtype)
        ranked = _by_magnitude(xp, [values[..., k] for k in range(values.shape[-1])])
        lambda1 = ranked[0]
        lambda2 = xp.maximum(ranked[1], 1e-10)
        if len(ranked) == 2:
            plate = 1.0
            blob_ratio = xp.abs(lambda1) / lambda2
        else:
            lambda3 = xp.maximum(ranked[2], 1e-10)
            plate = 1.0 - xp.exp(-((lambda2 / lambda3) ** 2) / (2 * alpha**2))
            blob_ratio = xp.abs(lambda1) / xp.sqrt(lambda2 * lambda3)
        structure = sum(xp.square(v) for v in ranked)
        result = plate * xp.exp(-(blob_ratio**2) / (2 * beta**2))
        result *= 1.0 - xp.exp(-structure / (2 * gamma * gamma))
        return xp.asarray(result, dtype=dtype)


def eigenvalue_norm_max(eigenvalues) -> float:
    """Largest Euclidean norm of the per-voxel eigenvalues (the Hessian's Frobenius norm);
    NaN voxels skipped, ``-inf`` if there is none. Frangi's automatic gamma is half of it."""
    xp = array_namespace(eigenvalues)
    with _quiet(xp):
        as_float64 = eigenvalues.astype(xp.float64)
        norms = xp.sqrt((as_float64 * as_float64).sum(axis=-1))
        norms = xp.where(xp.isnan(norms), -math.inf, norms)  # skip NaN voxels
        return float(norms.max()) if norms.size else -math.inf


def squared_norm_max(components) -> float:
    """Largest squared Frobenius norm of symmetric matrices given by their upper triangle
    (as :func:`symmetric_eigenvalues` takes them); NaN skipped, 0 if there is none."""
    xp = array_namespace(components[0])
    n = 2 if len(components) == 3 else 3
    diagonal = {0, n, 2 * n - 1} if n == 3 else {0, 2}  # row-major upper-triangle indices
    total = None
    with _quiet(xp):
        for index, component in enumerate(components):
            square = xp.square(component.astype(xp.float64))
            square *= 1.0 if index in diagonal else 2.0
            total = square if total is None else total + square
        total = xp.where(xp.isnan(total), 0.0, total)
        return float(total.max()) if total.size else 0.0


def frangi_measure(xp, *arguments):
    """Frangi's measure of scaled eigenvalues ``l1, l2[, l3]`` (ascending magnitude), then
    ``alpha, beta, gamma``: element-wise operations only, so that CuPy can fuse it."""
    *ranked, alpha, beta, gamma = arguments
    lambda1 = ranked[0]
    lambda2 = xp.maximum(ranked[1], 1e-10)
    if len(ranked) == 2:
        value = xp.exp(-(lambda1 * lambda1) / (lambda2 * lambda2) / (2 * beta * beta))
        structure = lambda1 * lambda1 + ranked[1] * ranked[1]
    else:
        lambda3 = xp.maximum(ranked[2], 1e-10)
        ratio = lambda2 / lambda3
        plate = 1.0 - xp.exp(-(ratio * ratio) / (2 * alpha * alpha))
        blob = lambda1 * lambda1 / (lambda2 * lambda3)
        value = plate * xp.exp(-blob / (2 * beta * beta))
        structure = lambda1 * lambda1 + ranked[1] * ranked[1] + ranked[2] * ranked[2]
    return value * (1.0 - xp.exp(-structure / (2 * gamma * gamma)))


#: Whether the fused CuPy kernels of `_kernels_cupy` are used on CuPy arrays (tests of the
#: unfused portable path on a device turn it off).
FUSED = True


def _fused(xp) -> bool:
    return FUSED and getattr(xp, "__name__", "") == "cupy"


def vesselness_update(
    components, factor, method, alpha, beta, gamma, sigma, response, best=None
) -> None:
    """Fold one scale's vesselness into `response` (and `best`), as the compiled kernel.

    Parameters
    ----------
    components : sequence of arrays, all of `response`'s shape
        The scale's Hessian, upper triangle in row-major order.
    factor : float
        Multiplies the eigenvalues: ``sigma**2``, negative for bright ridges.
    method : {"frangi", "sato"}
    alpha, beta, gamma : float
        Frangi's sensitivities (unused by Sato).
    sigma : float
        The scale, stored in `best` where this scale's response is the larger.
    response, best : arrays
        The running maximum and the scale it came from (NaN where the response
        is NaN), updated in place.
    """
    xp = array_namespace(response)
    with _quiet(xp):
        if method == "frangi":
            values = symmetric_eigenvalues(components, "abs", xp.float64)
        else:  # descending after the sign: the largest ones first
            values = symmetric_eigenvalues(
                components, "descending" if factor > 0 else "ascending", xp.float64
            )
        ranked = [values[..., k] * factor for k in range(values.shape[-1])]
        if method == "frangi":
            measure = frangi_measure
            if xp is not np and _fused(xp):  # the same function, fused into one kernel
                from . import _kernels_cupy

                measure = _kernels_cupy.frangi_measure(len(ranked))
            value = measure(xp, *ranked, alpha, beta, gamma)
        else:
            kept = [xp.maximum(v, 0.0) for v in ranked[: len(ranked) - 1]]
            value = kept[0] if len(kept) == 1 else xp.sqrt(kept[0] * kept[1])
            value = xp.where(xp.isnan(ranked[0]), xp.nan, value)
        value = value.astype(response.dtype)  # compared as stored
        update = (value > response) | xp.isnan(value)
        response[update] = value[update]
        if best is not None:
            best[update] = xp.where(xp.isnan(value[update]), xp.nan, sigma)
