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

* Moments (mean, sum, var, std, cv) first merge neighbouring chunks along the
  reduced axis, up to Dask's ``array.chunk-size`` (or the present chunks' size
  if larger). Where a chunk then spans the whole axis, each chunk is reduced by
  the NumPy path. Otherwise each chunk gives float64 count, sum and M2, merged a
  few chunks at a time with the update of Chan, Golub and LeVeque, so no chunk
  ever spans the whole axis. The result differs from the NumPy path only by the
  rounding of another summation order (about 1e-12 relative in float64, 1
  float32 ulp otherwise). min and max reduce each chunk with NumPy and merge the
  extrema exactly; ``median`` rechunks the reduced axis into one chunk (and the
  other axes smaller, to keep chunks near Dask's chunk-size setting) because a
  median cannot be merged.
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
partial results of the chunks not merged yet: 16 to 24 bytes per output voxel
per chunk along the reduced axis. Chunks deep along the reduced axis keep those
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
from functools import partial

import dask.array as da
import numpy as np

from . import _device, _dispatch, _portable
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
    "vesselness",
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
    on_device = _device.is_device_array(stack._meta)  # CuPy chunks: the core on whole lines
    if (
        statistic in ("min", "max") and not on_device
    ):  # NumPy's reductions: in a chunk just read, the fastest
        if statistic == "max":
            ufunc = np.fmax if skipna else np.maximum
        else:
            ufunc = np.fmin if skipna else np.minimum
        reduce = partial(_reduce_with, ufunc=ufunc)
        return da.reduction(
            stack,
            reduce,
            reduce,
            axis=axis,
            split_every=SPLIT_EVERY,
            dtype=stack.dtype,
            meta=np.empty((0,) * (stack.ndim - 1), stack.dtype),
        )
    stack = _deeper_along(stack, axis)
    if statistic in ("median", "min", "max") or stack.numblocks[axis] == 1 or on_device:
        # the whole axis in each chunk: the NumPy path per chunk (a median cannot be
        # merged, so its axis is rechunked whole, the others smaller to keep chunk sizes)
        whole = stack
        if stack.numblocks[axis] > 1:
            others = {a: "auto" for a in range(stack.ndim) if a != axis}
            whole = stack.rechunk({axis: -1, **others})
        return whole.map_blocks(
            _block_statistic,
            statistic=statistic,
            axis=axis,
            ddof=ddof,
            skipna=skipna,
            drop_axis=axis,
            dtype=stack.dtype if statistic in ("min", "max") else float_dtype,
        )
    second = statistic in ("var", "std", "cv")
    return da.reduction(
        stack,
        partial(_block_moments, second=second, skipna=skipna),
        partial(_finish_moments, statistic=statistic, ddof=ddof, result_dtype=float_dtype),
        axis=axis,
        combine=_combine_moments,
        split_every=SPLIT_EVERY,
        concatenate=False,  # the partials are dicts, merged without copying them together
        dtype=float_dtype,
        meta=np.empty((0,) * (stack.ndim - 1), float_dtype),
    )


def _deeper_along(stack: da.Array, axis: int) -> da.Array:
    """`stack` with neighbouring chunks along `axis` merged up to Dask's chunk size.

    Every chunk along the reduced axis adds a partial result as large as the output
    chunk, and merging those cost more than the statistics themselves (a variance of
    2-deep chunks took 6x the time of 8-deep ones). Chunks are merged along `axis`
    only, up to ``array.chunk-size`` (or the largest present chunk, if larger), so
    each task still reads a bounded, neighbouring part of the stack.
    """
    import dask
    from dask.utils import parse_bytes

    slab = stack.dtype.itemsize * math.prod(
        max(chunks) for i, chunks in enumerate(stack.chunks) if i != axis
    )
    largest = slab * max(stack.chunks[axis])
    limit = max(parse_bytes(dask.config.get("array.chunk-size")), largest)
    depth = max(1, limit // max(slab, 1))
    if stack.numblocks[axis] == 1 or depth <= max(stack.chunks[axis]):
        return stack
    return stack.rechunk({axis: min(depth, stack.shape[axis])})


def _here(block) -> str:
    """The device of a chunk: the core computes each chunk where it is."""
    return "gpu" if _device.is_device_array(block) else "cpu"


def _block_statistic(block, statistic, axis, skipna, ddof):
    return _statistics.axis_statistic(
        block, statistic, axis, ddof, skipna, workers=1, device=_here(block)
    )


def _reduce_with(block, axis, keepdims, ufunc, computing_meta=False):
    """``ufunc.reduce`` along `axis` (a chunk's extrema, or a merge of several)."""
    return block if computing_meta else ufunc.reduce(block, axis=axis, keepdims=keepdims)


def _block_moments(block, axis, keepdims, second, skipna, computing_meta=False):
    """float64 count, sum (and M2 if `second`) of a chunk along `axis`, as a dict.

    The count is a number unless NaNs are skipped; the arrays keep `axis` (size 1).
    (Dask calls the functions of a reduction on empty arrays, with `computing_meta`,
    to learn the type of their results: they then return an array.)
    """
    if computing_meta:
        return block
    (axis,) = axis
    if skipna:
        count = np.count_nonzero(~np.isnan(block), axis=axis, keepdims=True).astype(np.float64)
    else:
        count = float(block.shape[axis])
    moments = {
        "count": count,
        "total": np.expand_dims(_float64_statistic(block, "sum", axis, skipna), axis),
    }
    if second:
        variance = _float64_statistic(block, "var", axis, skipna)
        moments["squares"] = np.expand_dims(variance, axis) * count
    return moments


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
    whole = (lines, 0, lines.shape[0], 0, lines.shape[2], result)
    kernel = _dispatch.numba_ready() and _statistics._box_reducer(statistic, 0, skipna)
    (task,) = _dispatch.tasks(
        [partial(kernel, *whole)] if kernel else None,
        [partial(_portable_float64_statistic, statistic, skipna, *whole)],
    )
    task()
    return result.reshape(block.shape[:axis] + block.shape[axis + 1 :])


def _portable_float64_statistic(statistic, skipna, lines, o0, o1, j0, j1, result):
    box = lines[o0:o1, :, j0:j1]
    result[o0:o1, j0:j1] = _portable.axis_statistic(box, statistic, 1, skipna=skipna, dtype=float)


def _combine_moments(parts, axis=None, keepdims=True, computing_meta=False):
    """Merge the moment dicts of several chunks (a nested list) into one (Chan et al.).

    In place in a copy of the first: a few passes over the result, where stacking the
    fields into one array and concatenating the chunks' arrays cost several times the
    chunks' own statistics.
    """
    if computing_meta:
        return parts
    parts = list(_flattened(parts))
    merged = {key: np.array(value, copy=True) for key, value in parts[0].items()}
    for part in parts[1:]:
        _merge_moments(merged, part)
    return merged


def _flattened(nested):
    if isinstance(nested, dict):
        yield nested
    else:
        for item in nested:
            yield from _flattened(item)


def _merge_moments(merged, part):
    """Add the count, sum (and M2) of `part` to those of `merged`, in place."""
    count_a, count_b = merged["count"], part["count"]
    if "squares" in merged:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            delta = part["total"] / count_b
            delta -= merged["total"] / count_a
            delta *= delta
            delta *= count_a * count_b / (count_a + count_b)
            delta += part["squares"]
            delta += merged["squares"]
            if np.ndim(count_a) and ((count_a == 0).any() or (count_b == 0).any()):
                # lines all NaN in one of the parts (skipna)
                delta = np.where(
                    count_a == 0, part["squares"], np.where(count_b == 0, merged["squares"], delta)
                )
        merged["squares"] = delta
    merged["count"] = count_a + count_b
    merged["total"] += part["total"]


def _finish_moments(parts, axis, keepdims, statistic, ddof, result_dtype, computing_meta=False):
    if computing_meta:
        return np.empty((0,) * (parts.ndim - (0 if keepdims else len(axis))), result_dtype)
    moments = _combine_moments(parts)
    count, total = moments["count"], moments["total"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if statistic == "sum":
            result = total
        elif statistic == "mean":
            result = total / count
        else:
            dof = count - ddof
            variance = np.where(dof > 0, moments["squares"] / np.where(dof > 0, dof, 1), np.nan)
            if statistic == "var":
                result = variance
            elif statistic == "std":
                result = np.sqrt(variance)
            else:
                result = np.sqrt(variance) / (total / count)
    if not keepdims:
        result = np.squeeze(result, axis=axis)
    return result.astype(result_dtype, copy=False)


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
    norms = _statistics.frame_norms(block, axis, power, workers=1, device=_here(block))
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
    return _density.density_map(
        block, window, mode, threshold, edge, workers=1, device=_here(block)
    )


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
    packed, _ = _masking.mask_filter(points, mask, fill_value, workers=1, device=_here(points))
    if packed.shape[1] == width:
        return packed
    full = _portable.array_namespace(packed).full(
        (packed.shape[0], width, *packed.shape[2:]), fill_value, packed.dtype
    )
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
    return _masking.apply_mask(image, mask, fill_value, workers=1, device=_here(image))


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


def derivative_halo(shape, sigma, spacing=None, *, truncate=4.0, finite_depth=2):
    """Voxels each chunk of a derivative of a volume of `shape` reads from each neighbour,
    per axis: the kernel radius for Gaussian derivatives (`sigma` > 0), `finite_depth`
    (1 for gradients, 2 for Hessians) for finite differences. Raises the core's ValueError
    for bad scales."""
    stand_in = np.broadcast_to(np.zeros((), np.float32), tuple(shape))
    sigma, spacing, truncate = _differential._check_scales(stand_in, sigma, spacing, truncate)
    return _derivative_depth(stand_in, sigma, spacing, truncate, finite_depth)[0]


def _halo_map(volume: da.Array, depth, minimum, compute, trailing, dtype, *scalars) -> da.Array:
    """``compute(chunk with halo, *scalars)`` trimmed back to the chunk, for every chunk.

    `trailing` is the shape of the axes `compute` adds after the volume's;
    `scalars` are 0-d Dask arrays (lazy reductions) every chunk receives as floats.
    """
    volume = volume.rechunk(
        tuple(_merged_chunks(c, m) for c, m in zip(volume.chunks, minimum, strict=True))
    )
    numblocks = volume.numblocks
    depth = tuple(d if n > 1 else 0 for d, n in zip(depth, numblocks, strict=True))
    extended = da.overlap.overlap(volume, depth=dict(enumerate(depth)), boundary="none")

    def run(block, *values, block_id=None):
        result = compute(block, *(float(value) for value in values))
        index = tuple(
            slice(
                d if block_id[i] > 0 else 0,
                block.shape[i] - (d if block_id[i] < numblocks[i] - 1 else 0),
            )
            for i, d in enumerate(depth)
        )
        trimmed = result[index]
        return _portable.array_namespace(trimmed).ascontiguousarray(trimmed)

    new_axis = list(range(volume.ndim, volume.ndim + len(trailing)))
    return da.map_blocks(
        run,
        extended,
        *scalars,
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
        return function(block, spacing, sigma, truncate=truncate, workers=1, device=_here(block))

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
        return _differential.hessian_matrix(
            block, sigma, spacing, truncate=truncate, workers=1, device=_here(block)
        )

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
            block, sigma, spacing, order, truncate=truncate, workers=1, device=_here(block)
        )

    if frames:
        depth, minimum = (0, *depth), (1, *minimum)

        def compute(block):
            stacked = [compute_volume(frame_block) for frame_block in block]
            return _portable.array_namespace(block).stack(stacked)

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
    """The chunk's largest eigenvalue norm (-inf without one), as a host array."""
    return np.full((1,) * (block.ndim - 1), _portable.eigenvalue_norm_max(block))


def _fmax(values, axis=None, keepdims=False):
    return np.fmax.reduce(values, axis=axis, keepdims=keepdims)


def _block_frangi(block, gamma, alpha, beta, ridges):
    return _differential.frangi_vesselness(
        block, alpha, beta, gamma, ridges, workers=1, device=_here(block)
    )


def _block_frangi_scaled(block, largest, alpha, beta, ridges):
    scale = float(largest) / 2
    if not scale > 0:  # all zero (or all NaN): the scale does not matter (as in the core)
        scale = 1.0
    return _block_frangi(block, scale, alpha, beta, ridges)


def vesselness(
    image,
    sigmas,
    *,
    method="frangi",
    ridges="bright",
    spacing=None,
    alpha=0.5,
    beta=0.5,
    gamma=None,
    return_scale=False,
):
    """Lazy :func:`napari_voxelwise.vesselness` of a 2D, 3D or 4D (frames) Dask array.

    The halo is that of the largest sigma. With ``gamma=None`` the scale (half
    the largest normalised Hessian norm of the whole image) is a lazy reduction
    over every chunk, computed with the result: no seams at chunk borders.
    """
    from . import ridges as _ridges

    image = _checked(image, "image")
    if image.ndim not in (2, 3, 4):
        raise ValueError(
            f"image must be 2D, 3D or 4D (frames along axis 0), got {image.ndim}D "
            f"(shape {image.shape})"
        )
    frames = image.ndim == 4
    # the core checks every argument on a stand-in of one frame that takes no memory
    stand_in = np.broadcast_to(
        np.zeros((), image.dtype), image.shape[1:] if frames else image.shape
    )
    options = dict(method=method, ridges=ridges, alpha=alpha, beta=beta)
    _ridges.vesselness_plan(stand_in, sigmas, spacing=spacing, gamma=gamma, **options)
    sigmas = _ridges.check_sigmas(sigmas)
    _, spacing, _ = _differential._check_scales(stand_in, max(sigmas), spacing, 4.0)
    depth, minimum = _derivative_depth(
        stand_in, (max(sigmas),) * stand_in.ndim, spacing, _ridges.TRUNCATE, 2
    )
    if frames:
        depth, minimum = (0, *depth), (1, *minimum)

    def per_frame(function):
        if not frames:
            return function

        def stacked(block, *values):
            results = [function(frame, *values) for frame in block]
            return _portable.array_namespace(block).stack(results)

        return stacked

    def norms(block):
        return _ridges.normalised_norms(block, sigmas, spacing)

    def respond(block, value):
        response, scale = _ridges.vesselness(
            block,
            sigmas,
            spacing=spacing,
            gamma=value,
            return_scale=True,
            workers=1,
            device=_here(block),
            **options,
        )
        return _portable.array_namespace(response).stack([response, scale], axis=-1)

    dtype = check.result_float_dtype(image.dtype)
    scalars = []
    if method == "frangi" and gamma is None:
        from dask.graph_manipulation import bind

        norm_map = _halo_map(image, depth, minimum, per_frame(norms), (), np.float64)
        largest = da.reduction(norm_map, _fmax, _fmax, axis=None, dtype=np.float64)
        scalars = [largest.map_blocks(_half_or_one, dtype=np.float64)]
        # the second pass reads the input again, once gamma is known: no chunk of it is
        # held in memory from the first pass to the second
        image = bind(image, largest)
    elif gamma is not None:
        scalars = [da.from_array(np.float64(gamma))]
    else:  # Sato: no gamma
        scalars = [da.from_array(np.float64(1.0))]
    both = _halo_map(image, depth, minimum, per_frame(respond), (2,), dtype, *scalars)
    response, scale = both[..., 0], both[..., 1]
    return (response, scale) if return_scale else response


def _half_or_one(largest):
    """Frangi's automatic gamma from the largest norm (1 when that is not positive)."""
    value = float(largest) / 2
    return np.float64(value if value > 0 and math.isfinite(value) else 1.0)
