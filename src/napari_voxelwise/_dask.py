"""Dask in, Dask out: every public function on arrays bigger than memory.

Each public function of the package hands a Dask array to its twin here, which
checks the arguments at once (same messages as the NumPy path) and returns a
lazy Dask array: nothing is read or computed before ``.compute()`` (or
``da.store``, ``da.to_zarr`` ...). The single exception is :func:`mask_filter`,
whose output width is the largest per-frame count: it computes the *mask*
(never the points) to count first, then packs the points block of frames by
block of frames.

Inside every Dask task the NumPy core runs with ``workers=1``: Dask's own
threads (or a distributed cluster's workers) already use the cores.

How each family is split, and what it equals:

* Moments (mean, sum, var, std, cv) are reduced chunk by chunk along the
  reduced axis: each chunk gives float64 (count, sum, M2), merged pairwise with
  the update of Chan, Golub and LeVeque, so no chunk ever spans the whole axis.
  The result differs from the NumPy path only by the rounding of another
  summation order (about 1e-12 relative in float64, 1 float32 ulp otherwise).
  min and max merge chunk extrema exactly; ``median`` rechunks the reduced axis
  into one chunk (and the other axes smaller, to keep chunks near Dask's
  chunk-size setting) because a median cannot be merged.
* :func:`frame_norms` sums per-chunk terms of each frame, then takes the root.
* :func:`density_map` in block mode rechunks so that chunk edges fall on block
  edges; sliding mode and all derivatives read each chunk with a halo from its
  neighbours (``dask.array.overlap`` with ``boundary="none"``), run the core on
  the chunk plus halo (where the array ends there is no halo, so the core's own
  edge rule, scipy's "reflect" or np.gradient's one-sided differences, applies
  exactly as on the whole array) and trim the halo. The halo is the kernel
  radius ``int(truncate * sigma / spacing + 0.5)`` voxels per axis for
  Gaussian derivatives, 1 (gradient) or 2 (Hessian) for finite differences, and
  ``window - 1`` after each chunk for sliding densities. Chunks smaller than
  the halo are merged with a neighbour first. Results equal the NumPy path's.

Memory: about (threads x chunk size) plus, for the reductions, the float64
partial results of the chunks not merged yet: 24 bytes per output voxel per
chunk along the reduced axis. Chunks deep along the reduced axis keep those
small (the batch command reads 32-deep chunks; measured with
``tests/benchmarks/bench_bigdata.py`` on 2 cores: 0.86 GB peak for the
variance of a 2 GB stack, 1.0 GB for 4 GB; with Dask's default 2-frame chunks
of 128 MiB, 6 GB).

The panels compute lazy results chunk by chunk with
:func:`napari_voxelwise._lazy.dask_result_plan` (progress, cancel, zarr stores).
"""

from __future__ import annotations

import itertools
import math

import dask.array as da
import numpy as np

from . import _validation as check
from . import density as _density
from . import differential as _differential
from . import masking as _masking
from . import statistics as _statistics
from ._blocks import view_3d

__all__ = [
    "apply_mask",
    "axis_statistic",
    "density_map",
    "frame_norms",
    "frangi_vesselness",
    "gradient_magnitude",
    "gradient_vectors",
    "hessian_eigenvalues",
    "hessian_eigenvalues_frames",
    "hessian_matrix",
    "mask_filter",
    "voxel_variance",
]

#: Partial results merged per task in the tree reductions of the statistics.
SPLIT_EVERY = 4


# --------------------------------------------------------------------------- checks and chunks


def _checked(array, name: str, *, min_ndim: int = 1) -> da.Array:
    """The same checks as ``as_numeric_array``, on a Dask array's dtype and shape only."""
    return check.check_numeric_shape(array, name, min_ndim=min_ndim)


def _merged_chunks(chunks: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """`chunks` with neighbours merged until every chunk has at least `minimum` elements.

    A short remainder at the end joins the chunk before it; an axis shorter
    than `minimum` becomes one chunk.
    """
    merged: list[int] = []
    current = 0
    for size in chunks:
        current += size
        if current >= minimum:
            merged.append(current)
            current = 0
    if current:
        if merged:
            merged[-1] += current
        else:
            merged.append(current)
    return tuple(merged)


def _aligned_chunks(chunks: tuple[int, ...], step: int) -> tuple[int, ...]:
    """Chunk sizes near `chunks` whose boundaries are multiples of `step`.

    Only the last chunk may be shorter than a multiple (the array's own end).
    """
    length = sum(chunks)
    bounds = {round(edge / step) * step for edge in itertools.accumulate(chunks[:-1])}
    edges = [0, *sorted(b for b in bounds if 0 < b < length), length]
    return tuple(b - a for a, b in itertools.pairwise(edges))


# --------------------------------------------------------------------------- statistics


def voxel_variance(stack, axis=-1, ddof=0, skipna=False) -> da.Array:
    """Lazy :func:`napari_voxelwise.voxel_variance` of a Dask array."""
    return axis_statistic(stack, "var", axis, ddof, skipna)


def axis_statistic(stack, statistic, axis=-1, ddof=0, skipna=False) -> da.Array:
    """Lazy :func:`napari_voxelwise.axis_statistic` of a Dask array (see the module notes)."""
    statistic = check.check_choice(statistic, "statistic", _statistics.STATISTICS)
    stack = _checked(stack, "stack")
    axis = check.normalize_axis(axis, stack.ndim)
    length = stack.shape[axis]
    ddof = check.check_int(ddof, "ddof", minimum=0)
    if statistic in ("var", "std", "cv") and ddof >= length:
        raise ValueError(f"ddof={ddof} must be smaller than the length of axis {axis} ({length})")
    skipna = _statistics._check_bool(skipna, "skipna") and stack.dtype.kind == "f"
    float_dtype = check.result_float_dtype(stack.dtype)

    if statistic == "median":
        others = {a: "auto" for a in range(stack.ndim) if a != axis}
        whole = stack.rechunk({axis: -1, **others})
        return whole.map_blocks(
            _block_statistic,
            statistic="median",
            axis=axis,
            skipna=skipna,
            drop_axis=axis,
            dtype=float_dtype,
        )
    if statistic in ("min", "max"):
        partials = _partials(
            stack, axis, _block_statistic, 1, stack.dtype, statistic=statistic, skipna=skipna
        )
        combine = _combine_extrema(statistic, skipna)
        return _tree_reduce(partials, axis, combine).map_blocks(
            np.squeeze, axis=(0, axis + 1), drop_axis=(0, axis + 1), dtype=stack.dtype
        )
    partials = _partials(
        stack,
        axis,
        _block_moments,
        3,
        np.float64,
        second=statistic in ("var", "std", "cv"),
        skipna=skipna,
    )
    merged = _tree_reduce(partials, axis, _combine_moments)
    return merged.map_blocks(
        _finish_moments,
        axis=axis,
        statistic=statistic,
        ddof=ddof,
        result_dtype=float_dtype,
        dtype=float_dtype,
        drop_axis=(0, axis + 1),
    )


def _block_statistic(block, statistic, axis, skipna, keepdims=False):
    result = _statistics.axis_statistic(block, statistic, axis, skipna=skipna, workers=1)
    return np.expand_dims(result, (0, axis + 1)) if keepdims else result


def _partials(stack, axis, function, fields, dtype, **kwargs) -> da.Array:
    """Per-chunk partial results, shape ``(fields, *stack.shape)`` with 1 per chunk on `axis`."""
    if function is _block_statistic:
        kwargs["keepdims"] = True
    chunks = ((fields,), *((1,) * len(c) if i == axis else c for i, c in enumerate(stack.chunks)))
    return stack.map_blocks(function, axis=axis, new_axis=0, chunks=chunks, dtype=dtype, **kwargs)


def _tree_reduce(partials: da.Array, axis: int, combine) -> da.Array:
    """Merge the partials along ``axis + 1`` a few at a time until one chunk remains."""
    axis += 1
    while partials.numblocks[axis] > 1:
        partials = partials.rechunk({axis: SPLIT_EVERY})
        chunks = list(partials.chunks)
        chunks[axis] = (1,) * partials.numblocks[axis]
        partials = partials.map_blocks(
            combine, axis=axis, chunks=tuple(chunks), dtype=partials.dtype
        )
    return partials


def _block_moments(block, axis, second, skipna):
    """float64 (count, sum, M2) of a chunk along `axis`, stacked on a new axis 0."""
    if skipna:
        count = np.count_nonzero(~np.isnan(block), axis=axis).astype(np.float64)
    else:
        count = np.full(block.shape[:axis] + block.shape[axis + 1 :], float(block.shape[axis]))
    total = _float64_statistic(block, "sum", axis, skipna)
    if second:
        squares = _float64_statistic(block, "var", axis, skipna) * count
    else:
        squares = np.zeros_like(total)
    return np.expand_dims(np.stack([count, total, squares]), axis + 1)


def _float64_statistic(block, statistic, axis, skipna):
    """The core's sum or variance (ddof 0) of a chunk, kept in float64 for every input dtype.

    Runs the core's kernel on the chunk in place (no float64 copy of it) where
    the chunk can be viewed as (outer, n, inner); else converts it first.
    """
    data = _statistics._kernel_view(block)
    lines = view_3d(data, axis) if data.dtype != np.float16 else None
    if lines is None:
        block64 = block.astype(np.float64)
        return _statistics.axis_statistic(block64, statistic, axis, skipna=skipna, workers=1)
    result = np.empty((lines.shape[0], lines.shape[2]))
    reduce = _statistics._box_reducer(statistic, 0, skipna)
    reduce(lines, 0, lines.shape[0], 0, lines.shape[2], result)
    return result.reshape(block.shape[:axis] + block.shape[axis + 1 :])


def _combine_moments(partials, axis):
    """Merge (count, sum, M2) partials along `axis` pairwise (Chan et al.)."""
    parts = [np.take(partials, [i], axis=axis) for i in range(partials.shape[axis])]
    while len(parts) > 1:
        pairs = itertools.zip_longest(parts[::2], parts[1::2])
        parts = [a if b is None else _merge_moments(a, b) for a, b in pairs]
    return parts[0]


def _merge_moments(first, second):
    count_a, total_a, squares_a = first
    count_b, total_b, squares_b = second
    count = count_a + count_b
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        delta = total_b / count_b - total_a / count_a
        squares = squares_a + squares_b + delta * delta * (count_a * count_b / count)
    squares = np.where(count_a == 0, squares_b, np.where(count_b == 0, squares_a, squares))
    return np.stack([count, total_a + total_b, squares])


def _finish_moments(partials, axis, statistic, ddof, result_dtype):
    count, total, squares = (np.squeeze(field, axis=axis) for field in partials)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if statistic == "sum":
            result = total
        elif statistic == "mean":
            result = total / count
        else:
            dof = count - ddof
            variance = np.where(dof > 0, squares / np.where(dof > 0, dof, 1), np.nan)
            if statistic == "var":
                result = variance
            elif statistic == "std":
                result = np.sqrt(variance)
            else:
                result = np.sqrt(variance) / (total / count)
    return result.astype(result_dtype, copy=False)


def _combine_extrema(statistic: str, skipna: bool):
    if statistic == "max":
        ufunc = np.fmax if skipna else np.maximum
    else:
        ufunc = np.fmin if skipna else np.minimum

    def combine(partials, axis):
        return ufunc.reduce(partials, axis=axis, keepdims=True)

    return combine


def frame_norms(stack, axis=-1, ord=2) -> da.Array:
    """Lazy :func:`napari_voxelwise.frame_norms` of a Dask array (one chunk per frame chunk)."""
    stack = _checked(stack, "stack")
    axis = check.normalize_axis(axis, stack.ndim)
    power = _statistics._check_ord(ord)
    chunks = tuple(c if i == axis else (1,) * len(c) for i, c in enumerate(stack.chunks))
    terms = stack.map_blocks(
        _block_norm_terms, axis=axis, power=power, chunks=chunks, dtype=np.float64
    )
    others = tuple(i for i in range(stack.ndim) if i != axis)
    if math.isinf(power):
        return terms.max(axis=others)
    totals = terms.sum(axis=others)
    if power == 1:
        return totals
    if power == 2:
        return da.sqrt(totals)
    return totals.map_blocks(np.power, 1.0 / power, dtype=np.float64)


def _block_norm_terms(block, axis, power):
    """Per-frame ``sum(|x|**power)`` (or max ``|x|``) of a chunk, keeping its dimensions."""
    norms = _statistics.frame_norms(block, axis, power, workers=1)
    if not (math.isinf(power) or power == 1):
        norms = norms**power
    shape = [1] * block.ndim
    shape[axis] = -1
    return norms.reshape(shape)


# --------------------------------------------------------------------------- density


def density_map(image, window=3, mode="block", threshold=0, edge="trim") -> da.Array:
    """Lazy :func:`napari_voxelwise.density_map` of a Dask array (see the module notes)."""
    image = _checked(image, "image")
    mode = check.check_choice(mode, "mode", _density.DENSITY_MODES)
    edge = check.check_choice(edge, "edge", _density.DENSITY_EDGES)
    threshold = check.check_real(threshold, "threshold")
    sizes = _density.normalize_window(window, image.shape, mode, edge)
    options = {"window": sizes, "mode": mode, "threshold": threshold, "edge": edge}
    if mode == "block":
        if edge == "trim":
            image = image[
                tuple(slice(0, n - n % w) for n, w in zip(image.shape, sizes, strict=True))
            ]
        image = image.rechunk(
            tuple(_aligned_chunks(c, w) for c, w in zip(image.chunks, sizes, strict=True))
        )
        out_chunks = tuple(
            tuple(-(-c // w) for c in chunks)
            for chunks, w in zip(image.chunks, sizes, strict=True)
        )
        return image.map_blocks(_block_density, **options, chunks=out_chunks, dtype=np.float32)
    # sliding: every chunk reads window - 1 elements of the next one
    image = image.rechunk(
        tuple(_merged_chunks(c, w) for c, w in zip(image.chunks, sizes, strict=True))
    )
    extended = da.overlap.overlap(
        image, depth={a: (0, w - 1) for a, w in enumerate(sizes)}, boundary="none"
    )
    out_chunks = tuple((*c[:-1], c[-1] - w + 1) for c, w in zip(image.chunks, sizes, strict=True))
    return extended.map_blocks(_block_density, **options, chunks=out_chunks, dtype=np.float32)


def _block_density(block, window, mode, threshold, edge):
    return _density.density_map(block, window, mode, threshold, edge, workers=1)


# --------------------------------------------------------------------------- masks


def mask_filter(points, mask, fill_value=np.nan):
    """:func:`napari_voxelwise.mask_filter` of Dask points: (lazy packed, NumPy counts).

    The mask (small next to the points) is computed at once to count the
    selected points of every frame, which fixes the output's width; the points
    are packed lazily, one block of frames per task.
    """
    points = _checked(points, "points", min_ndim=2)
    if check.is_dask_array(mask):
        mask = _checked(mask, "mask").compute()
    mask = check.as_mask(mask, "mask")
    if mask.shape != points.shape[:2]:
        raise ValueError(
            f"mask must have shape points.shape[:2] = {points.shape[:2]} "
            f"(frames, points), got {mask.shape}"
        )
    dtype = _masking.fill_dtype(points.dtype, fill_value)
    counts = np.count_nonzero(mask, axis=1)
    width = int(counts.max())
    points = points.rechunk({0: "auto", **{a: -1 for a in range(1, points.ndim)}})
    mask_chunks = da.from_array(mask, chunks=(points.chunks[0], -1))
    out_chunks = (points.chunks[0], (width,), *((n,) for n in points.shape[2:]))
    packed = da.map_blocks(
        _block_pack,
        points,
        mask_chunks,
        fill_value=fill_value,
        width=width,
        dtype=dtype,
        chunks=out_chunks,
    )
    return packed, counts


def _block_pack(points, mask, fill_value, width):
    packed, _ = _masking.mask_filter(points, mask, fill_value, workers=1)
    if packed.shape[1] == width:
        return packed
    full = np.full((packed.shape[0], width, *packed.shape[2:]), fill_value, packed.dtype)
    full[:, : packed.shape[1]] = packed
    return full


def apply_mask(image, mask, fill_value=0) -> da.Array:
    """Lazy :func:`napari_voxelwise.apply_mask` of a Dask image (NumPy or Dask mask).

    A Dask mask holding NaN raises its ValueError at compute time.
    """
    image = _checked(image, "image")
    if check.is_dask_array(mask):
        mask = _checked(mask, "mask")
    else:
        mask = check.as_mask(mask, "mask")
    if mask.ndim > image.ndim or mask.shape != image.shape[image.ndim - mask.ndim :]:
        raise ValueError(
            f"mask shape {mask.shape} must equal the trailing axes of the image "
            f"shape {image.shape}"
        )
    dtype = _masking.fill_dtype(image.dtype, fill_value)
    mask_chunks = image.chunks[image.ndim - mask.ndim :]
    if check.is_dask_array(mask):
        mask = mask.rechunk(mask_chunks)
    else:
        mask = da.from_array(mask, chunks=mask_chunks)
    return da.map_blocks(_block_apply_mask, image, mask, fill_value=fill_value, dtype=dtype)


def _block_apply_mask(image, mask, fill_value):
    return _masking.apply_mask(image, mask, fill_value, workers=1)


# --------------------------------------------------------------------------- derivatives


def _derivative_depth(volume, sigma, spacing, truncate, finite_depth: int):
    """(halo per axis, smallest chunk per axis) of a derivative of `volume`."""
    if sigma is None:
        return (finite_depth,) * volume.ndim, (max(finite_depth, 1),) * volume.ndim
    depth, minimum = [], []
    for s, d in zip(sigma, spacing, strict=True):
        voxels = s / d
        radius = int(truncate * voxels + 0.5)
        depth.append(radius)
        # the core also refuses a sigma above 4 x the (chunk) length + 64 voxels
        minimum.append(max(radius, math.ceil((voxels - 64) / 4), 1))
    return tuple(depth), tuple(minimum)


def _halo_map(volume: da.Array, depth, minimum, compute, trailing, dtype) -> da.Array:
    """``compute(chunk with halo)`` trimmed back to the chunk, for every chunk.

    `trailing` is the shape of the axes `compute` adds after the volume's.
    """
    volume = volume.rechunk(
        tuple(_merged_chunks(c, m) for c, m in zip(volume.chunks, minimum, strict=True))
    )
    numblocks = volume.numblocks
    depth = tuple(d if n > 1 else 0 for d, n in zip(depth, numblocks, strict=True))
    extended = da.overlap.overlap(volume, depth=dict(enumerate(depth)), boundary="none")

    def run(block, block_id=None):
        result = compute(block)
        index = tuple(
            slice(
                d if block_id[i] > 0 else 0,
                block.shape[i] - (d if block_id[i] < numblocks[i] - 1 else 0),
            )
            for i, d in enumerate(depth)
        )
        return np.ascontiguousarray(result[index])

    new_axis = list(range(volume.ndim, volume.ndim + len(trailing)))
    return extended.map_blocks(
        run,
        chunks=volume.chunks + tuple((n,) for n in trailing),
        new_axis=new_axis or None,
        dtype=dtype,
    )


def _gradient(volume, spacing, sigma, truncate, magnitude: bool) -> da.Array:
    volume = _checked(volume, "volume")
    sigma, spacing, truncate = _differential._check_scales(volume, sigma, spacing, truncate)
    function = _differential.gradient_magnitude if magnitude else _differential.gradient_vectors
    depth, minimum = _derivative_depth(volume, sigma, spacing, truncate, 1)

    def compute(block):
        return function(block, spacing, sigma, truncate=truncate, workers=1)

    trailing = () if magnitude else (volume.ndim,)
    dtype = check.result_float_dtype(volume.dtype)
    return _halo_map(volume, depth, minimum, compute, trailing, dtype)


def gradient_vectors(volume, spacing=None, sigma=None, *, truncate=4.0) -> da.Array:
    """Lazy :func:`napari_voxelwise.gradient_vectors` of a Dask array."""
    return _gradient(volume, spacing, sigma, truncate, magnitude=False)


def gradient_magnitude(volume, spacing=None, sigma=None, *, truncate=4.0) -> da.Array:
    """Lazy :func:`napari_voxelwise.gradient_magnitude` of a Dask array."""
    return _gradient(volume, spacing, sigma, truncate, magnitude=True)


def hessian_matrix(volume, sigma=1.0, spacing=None, *, truncate=4.0) -> da.Array:
    """Lazy :func:`napari_voxelwise.hessian_matrix` of a Dask array."""
    volume = _checked(volume, "volume")
    sigma, spacing, truncate = _differential._check_scales(volume, sigma, spacing, truncate)
    depth, minimum = _derivative_depth(volume, sigma, spacing, truncate, 2)

    def compute(block):
        return _differential.hessian_matrix(block, sigma, spacing, truncate=truncate, workers=1)

    ndim = volume.ndim
    dtype = check.result_float_dtype(volume.dtype)
    return _halo_map(volume, depth, minimum, compute, (ndim, ndim), dtype)


def hessian_eigenvalues(
    volume, sigma=1.0, spacing=None, order="descending", *, truncate=4.0
) -> da.Array:
    """Lazy :func:`napari_voxelwise.hessian_eigenvalues` of a 2D or 3D Dask array."""
    volume = _checked(volume, "volume")
    if volume.ndim not in (2, 3):
        raise ValueError(
            f"volume must be 2D or 3D for Hessian eigenvalues, got {volume.ndim}D "
            f"(shape {volume.shape}); process a 4D stack frame by frame"
        )
    return _eigenvalues(volume, sigma, spacing, order, truncate, frames=False)


def hessian_eigenvalues_frames(
    stack, sigma=1.0, spacing=None, order="descending", *, truncate=4.0
) -> da.Array:
    """Hessian eigenvalues of every frame (axis 0) of a 3D or 4D Dask stack, lazily.

    `sigma` and `spacing` are per spatial axis (or scalars); the result has
    shape ``stack.shape + (stack.ndim - 1,)``.
    """
    stack = _checked(stack, "stack")
    if stack.ndim not in (3, 4):
        raise ValueError(
            f"stack must be 3D or 4D (frames of 2D or 3D volumes), got {stack.ndim}D "
            f"(shape {stack.shape})"
        )
    return _eigenvalues(stack, sigma, spacing, order, truncate, frames=True)


def _eigenvalues(volume, sigma, spacing, order, truncate, frames: bool) -> da.Array:
    order = check.check_choice(order, "order", _differential.EIGENVALUE_ORDERS)
    frame = volume[0] if frames else volume
    sigma, spacing, truncate = _differential._check_scales(frame, sigma, spacing, truncate)
    depth, minimum = _derivative_depth(frame, sigma, spacing, truncate, 2)

    def compute_volume(block):
        return _differential.hessian_eigenvalues(
            block, sigma, spacing, order, truncate=truncate, workers=1
        )

    if frames:
        depth, minimum = (0, *depth), (1, *minimum)

        def compute(block):
            return np.stack([compute_volume(frame_block) for frame_block in block])

    else:
        compute = compute_volume
    dtype = check.result_float_dtype(volume.dtype)
    return _halo_map(volume, depth, minimum, compute, (frame.ndim,), dtype)


def frangi_vesselness(eigenvalues, alpha=0.5, beta=0.5, gamma=None, ridges="bright") -> da.Array:
    """Lazy :func:`napari_voxelwise.frangi_vesselness` of Dask eigenvalues.

    With ``gamma=None`` the scale (half the largest Hessian norm) is itself a
    lazy reduction, computed with the result.
    """
    eigenvalues = _checked(eigenvalues, "eigenvalues")
    if eigenvalues.shape[-1] not in (2, 3):
        raise ValueError(
            "eigenvalues must have 2 or 3 entries on the last axis (2D or 3D Hessians), "
            f"got shape {eigenvalues.shape}"
        )
    # the core checks the remaining arguments on a tiny array, before anything is built
    _differential.frangi_plan(np.zeros((1, eigenvalues.shape[-1])), alpha, beta, gamma, ridges)
    eigenvalues = eigenvalues.rechunk({eigenvalues.ndim - 1: -1})
    last = eigenvalues.ndim - 1
    dtype = check.result_float_dtype(eigenvalues.dtype)
    options = {"alpha": alpha, "beta": beta, "ridges": ridges}
    if gamma is not None:
        return eigenvalues.map_blocks(
            _block_frangi, gamma=gamma, **options, drop_axis=last, dtype=dtype
        )
    chunks = tuple((1,) * len(c) for c in eigenvalues.chunks[:-1])
    block_maxima = eigenvalues.map_blocks(
        _block_norm_max, drop_axis=last, chunks=chunks, dtype=np.float64
    )
    largest = da.reduction(block_maxima, _fmax, _fmax, axis=None, dtype=np.float64, keepdims=False)
    return da.map_blocks(
        _block_frangi_scaled, eigenvalues, largest, **options, drop_axis=last, dtype=dtype
    )


def _block_norm_max(block):
    values = np.asarray(block, dtype=np.float64)
    with np.errstate(over="ignore"):
        norms = np.sqrt(np.square(values).sum(axis=-1))
    return np.fmax.reduce(norms, axis=None, keepdims=True).reshape((1,) * norms.ndim)


def _fmax(values, axis=None, keepdims=False):
    return np.fmax.reduce(values, axis=axis, keepdims=keepdims)


def _block_frangi(block, gamma, alpha, beta, ridges):
    return _differential.frangi_vesselness(block, alpha, beta, gamma, ridges, workers=1)


def _block_frangi_scaled(block, largest, alpha, beta, ridges):
    scale = float(largest) / 2
    if not scale > 0:  # all zero (or all NaN): the scale does not matter (as in the core)
        scale = 1.0
    return _block_frangi(block, scale, alpha, beta, ridges)
