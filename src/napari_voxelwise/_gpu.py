"""The public functions on a GPU: the portable path on CuPy, whole or in pieces.

Each ``*_plan`` here is the ``device="gpu"`` twin of the public function's plan.
Arguments are checked by the CPU plan itself, built on a stand-in of the input
that takes no memory (the same messages, nothing computed). Then:

* a CuPy input is computed where it is, in one piece, and gives CuPy results;
* a NumPy input is cut along axis 0 (along axis 1 for a statistic along
  axis 0) into pieces that fit the device's free memory
  (:func:`napari_voxelwise._device.piece_rows`), each read with the halo its
  filter needs (:func:`napari_voxelwise.differential.slab_rows`), moved to the
  device, computed by :mod:`napari_voxelwise._portable`, and copied back into a
  NumPy result.

Where a piece needs a value of the whole input, that value comes first, in its
own pass over the pieces: Frangi's automatic gamma (largest Hessian norm), and
the width of :func:`mask_filter`'s result (the counts, from the mask alone).
No maths lives here: only splitting, moving and copying back.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from . import _dispatch, _portable
from . import _validation as check
from ._device import device_module, free_bytes, is_device_array, piece_rows, to_device, to_host
from ._plan import Plan

#: Device bytes per input element a piece needs, beyond the input, by family (estimates
#: from the portable path's temporaries: float64 accumulators, derivative components,
#: the eigenvalue solver's float64 intermediates).
WORK_BYTES = {
    "statistic": 32,
    "norms": 16,
    "density": 24,
    "mask": 8,
    "gradient": 32,
    "hessian": 96,
    "eigenvalues": 160,
    "frangi": 96,
    "vesselness": 224,
}


def _stand_in(array) -> np.ndarray:
    """A read-only array of `array`'s shape and dtype that takes no memory (checks only)."""
    return np.broadcast_to(np.zeros((), array.dtype), array.shape)


def _checked_by(make_plan, *arguments, **options) -> None:
    """Build the CPU plan on stand-ins: its checks run, nothing is computed or compiled."""
    with _dispatch.portable_path():
        make_plan(*arguments, **options)


def _rows(shape, itemsize: int, family: str, halo: int = 0) -> int:
    """Rows along axis 0 of `shape` per piece on the device."""
    work = itemsize + WORK_BYTES[family]
    return piece_rows(shape, 1, work, free_bytes(), halo)


def _rows_plan(length: int, rows: int, piece, description: str, on_device: bool) -> Plan:
    """Output rows ``a:b`` of axis 0 from ``piece(a, b)`` (an array or a tuple of arrays),
    piece by piece, into NumPy results (one piece: the device result itself if
    `on_device`)."""
    ranges = [(a, min(a + rows, length)) for a in range(0, length, rows)]

    def run():
        if len(ranges) == 1:
            result = piece(0, length)
            yield
            if on_device:
                return result
            return tuple(map(to_host, result)) if isinstance(result, tuple) else to_host(result)
        outs = None
        for a, b in ranges:
            result = piece(a, b)
            parts = result if isinstance(result, tuple) else (result,)
            parts = [to_host(part) for part in parts]
            if outs is None:
                outs = [np.empty((length, *p.shape[1:]), p.dtype) for p in parts]
            for out, part in zip(outs, parts, strict=True):
                out[a:b] = part
            yield
        return tuple(outs) if isinstance(result, tuple) else outs[0]

    return Plan(len(ranges), run, description)


def _length_and_rows(array, family: str, halo: int = 0, work_itemsize: int | None = None):
    """(rows along axis 0, rows per piece): all of them for a device array."""
    length = array.shape[0]
    if is_device_array(array):
        return length, length
    itemsize = array.dtype.itemsize if work_itemsize is None else work_itemsize
    return length, _rows(array.shape, itemsize, family, halo)


# --------------------------------------------------------------------------- statistics


def statistic_plan(stack, statistic, axis=-1, ddof=0, skipna=False) -> Plan:
    """``device="gpu"`` plan of :func:`napari_voxelwise.axis_statistic`."""
    from .statistics import statistic_plan as cpu_plan

    _checked_by(cpu_plan, _stand_in(stack), statistic, axis, ddof, skipna, workers=1)
    axis = axis % stack.ndim
    skipna = bool(skipna) and stack.dtype.kind == "f"
    if stack.ndim == 1:  # one line: the whole of it
        return _rows_plan(
            1,
            1,
            lambda a, b: _portable.axis_statistic(to_device(stack), statistic, 0, ddof, skipna),
            statistic,
            is_device_array(stack),
        )
    split = 1 if axis == 0 else 0  # the result's axis 0
    moved = (stack.shape[split], *(n for i, n in enumerate(stack.shape) if i != split))
    length = stack.shape[split]
    rows = length if is_device_array(stack) else _rows(moved, stack.dtype.itemsize, "statistic")

    def piece(a, b):
        part = stack[(slice(None),) * split + (slice(a, b),)]
        return _portable.axis_statistic(to_device(part), statistic, axis, ddof, skipna)

    return _rows_plan(length, rows, piece, statistic, is_device_array(stack))


def frame_norms_plan(stack, axis=-1, ord=2) -> Plan:
    """``device="gpu"`` plan of :func:`napari_voxelwise.frame_norms` (float64 norms)."""
    from .statistics import _check_ord
    from .statistics import frame_norms_plan as cpu_plan

    _checked_by(cpu_plan, _stand_in(stack), axis, ord, workers=1)
    axis, power = axis % stack.ndim, _check_ord(ord)
    length, rows = _length_and_rows(stack, "norms")
    ranges = [(a, min(a + rows, length)) for a in range(0, length, rows)]

    def run():
        parts = []
        for a, b in ranges:
            partials = _portable.frame_norm_partials(to_device(stack[a:b]), axis, power)
            if axis == 0:  # these frames' own partials
                parts.append(partials)
            else:  # every frame's partials over these rows
                parts = [
                    partials
                    if not parts
                    else _portable.combine_frame_norm_partials(parts[0], partials, power)
                ]
            yield
        partials = parts[0] if len(parts) == 1 else device_module().concatenate(parts)
        norms = _portable.finish_frame_norms(partials, power)
        return norms if is_device_array(stack) else to_host(norms)

    return Plan(len(ranges), run, "frame norms")


# --------------------------------------------------------------------------- density


def density_plan(image, window=3, mode="block", threshold=0, edge="trim") -> Plan:
    """``device="gpu"`` plan of :func:`napari_voxelwise.density_map`."""
    from .density import _output_shape, normalize_window
    from .density import density_plan as cpu_plan

    _checked_by(cpu_plan, _stand_in(image), window, mode, threshold, edge, workers=1)
    sizes = normalize_window(window, image.shape, mode, edge)
    threshold = float(threshold)
    length = _output_shape(image.shape, sizes, mode, edge)[0]
    size = sizes[0]
    if is_device_array(image):
        rows = length
    elif mode == "block":
        rows = max(1, _rows(image.shape, image.dtype.itemsize, "density") // size)
    else:
        rows = _rows(image.shape, image.dtype.itemsize, "density", size - 1)

    def piece(a, b):
        if mode == "block":
            part = image[a * size : min(b * size, image.shape[0])]
        else:
            part = image[a : b + size - 1]
        return _portable.density_map(to_device(part), sizes, mode, threshold, edge)

    return _rows_plan(length, rows, piece, f"{mode} density", is_device_array(image))


# --------------------------------------------------------------------------- masks


def _device_mask(mask):
    """`mask` as the core takes it (bool, NaN refused), on the side where it is."""
    if not is_device_array(mask):
        return check.as_mask(mask, "mask")
    xp = _portable.array_namespace(mask)
    if mask.dtype == xp.bool_:
        return mask
    if mask.dtype.kind == "f" and bool(xp.isnan(mask).any()):
        raise ValueError("mask contains NaN; use a boolean mask or 0/1 values")
    return mask != 0


def apply_mask_plan(image, mask, fill_value=0) -> Plan:
    """``device="gpu"`` plan of :func:`napari_voxelwise.apply_mask`."""
    from .masking import apply_mask_plan as cpu_plan

    mask = _device_mask(mask)
    _checked_by(cpu_plan, _stand_in(image), _stand_in(mask), fill_value, workers=1)
    length, rows = _length_and_rows(image, "mask")
    whole_mask = mask.ndim < image.ndim
    shared = to_device(mask) if whole_mask else None  # the same mask for every piece

    def piece(a, b):
        part_mask = shared if whole_mask else to_device(mask[a:b])
        return _portable.apply_mask(to_device(image[a:b]), part_mask, fill_value)

    return _rows_plan(length, rows, piece, "apply mask", is_device_array(image))


def mask_filter_plan(points, mask, fill_value=np.nan) -> Plan:
    """``device="gpu"`` plan of :func:`napari_voxelwise.mask_filter`: ``(packed, counts)``.

    The counts (and so the result's width) come from the mask first; the points
    are then packed piece by piece of frames.
    """
    from .masking import fill_dtype
    from .masking import mask_filter_plan as cpu_plan

    mask = _device_mask(mask)
    _checked_by(cpu_plan, _stand_in(points), _stand_in(mask), fill_value, workers=1)
    on_device = is_device_array(points)
    xp = _portable.array_namespace(mask)
    counts = mask.sum(axis=1, dtype=xp.intp)
    width = int(counts.max())
    dtype = fill_dtype(points.dtype, fill_value)
    length, rows = _length_and_rows(points, "mask")

    def piece(a, b):
        packed, _ = _portable.mask_filter(to_device(points[a:b]), to_device(mask[a:b]), fill_value)
        if packed.shape[1] == width:
            return packed
        device = _portable.array_namespace(packed)
        full = device.full((b - a, width, *points.shape[2:]), fill_value, dtype=dtype)
        full[:, : packed.shape[1]] = packed
        return full

    plan = _rows_plan(length, rows, piece, "mask filter", on_device)

    def run():
        packed = yield from plan.steps()
        return packed, counts if on_device else to_host(counts)

    return Plan(plan.total, run, "mask filter")


# --------------------------------------------------------------------------- derivatives


def _derivative_rows_plan(volume, halo, gaussian, compute, family, description) -> Plan:
    """``compute(device rows)`` of every piece of `volume` along axis 0, with its halo."""
    from .differential import slab_rows

    work = check.result_float_dtype(volume.dtype).itemsize
    length, rows = _length_and_rows(volume, family, halo, work)

    def piece(a, b):
        if a == 0 and b == length:  # the whole volume: the filters' own edge rules
            return compute(to_device(volume))
        part, offset = slab_rows(volume, a, b, halo, gaussian)
        result = compute(to_device(part))
        if isinstance(result, tuple):
            return tuple(r[offset : offset + b - a] for r in result)
        return result[offset : offset + b - a]

    return _rows_plan(length, rows, piece, description, is_device_array(volume))


def _halo(sigma, spacing, truncate, finite_rows: int) -> int:
    """Rows of context along axis 0: the Gaussian's radius, or the differences' order."""
    if sigma is None:
        return finite_rows
    return int(truncate * sigma[0] / spacing[0] + 0.5)


def _scales(volume, sigma, spacing, truncate):
    from .differential import _check_scales

    return _check_scales(_stand_in(volume), sigma, spacing, truncate)


def gradient_plan(volume, spacing=None, sigma=None, *, truncate=4.0, magnitude=False) -> Plan:
    """``device="gpu"`` plan of :func:`napari_voxelwise.gradient_vectors` or ``_magnitude``."""
    from .differential import gradient_plan as cpu_plan

    _checked_by(
        cpu_plan, _stand_in(volume), spacing, sigma, truncate=truncate, magnitude=magnitude
    )
    sigma, spacing, truncate = _scales(volume, sigma, spacing, truncate)
    function = _portable.gradient_magnitude if magnitude else _portable.gradient_vectors
    compute = partial(_derivative_call, function, sigma, spacing, truncate)
    halo = _halo(sigma, spacing, truncate, 1)
    name = "gradient magnitude" if magnitude else "gradient"
    return _derivative_rows_plan(volume, halo, sigma is not None, compute, "gradient", name)


def _derivative_call(function, sigma, spacing, truncate, rows, *extra):
    return function(rows, sigma, spacing, *extra, truncate=truncate)


def hessian_plan(volume, sigma=1.0, spacing=None, *, truncate=4.0) -> Plan:
    """``device="gpu"`` plan of :func:`napari_voxelwise.hessian_matrix`."""
    from .differential import hessian_plan as cpu_plan

    _checked_by(cpu_plan, _stand_in(volume), sigma, spacing, truncate=truncate)
    sigma, spacing, truncate = _scales(volume, sigma, spacing, truncate)
    compute = partial(_derivative_call, _portable.hessian_matrix, sigma, spacing, truncate)
    halo = _halo(sigma, spacing, truncate, 2)
    return _derivative_rows_plan(
        volume, halo, sigma is not None, compute, "hessian", "Hessian matrix"
    )


def hessian_eigenvalues_plan(
    volume, sigma=1.0, spacing=None, order="descending", *, truncate=4.0
) -> Plan:
    """``device="gpu"`` plan of :func:`napari_voxelwise.hessian_eigenvalues`."""
    from .differential import hessian_eigenvalues_plan as cpu_plan

    _checked_by(cpu_plan, _stand_in(volume), sigma, spacing, order, truncate=truncate)
    sigma, spacing, truncate = _scales(volume, sigma, spacing, truncate)

    def compute(rows):
        return _portable.hessian_eigenvalues(rows, sigma, spacing, order, truncate)

    halo = _halo(sigma, spacing, truncate, 2)
    return _derivative_rows_plan(
        volume, halo, sigma is not None, compute, "eigenvalues", "Hessian eigenvalues"
    )


def frangi_plan(eigenvalues, alpha=0.5, beta=0.5, gamma=None, ridges="bright") -> Plan:
    """``device="gpu"`` plan of :func:`napari_voxelwise.frangi_vesselness`.

    With ``gamma=None`` a first pass over the pieces finds the largest norm.
    """
    from .differential import frangi_plan as cpu_plan

    check.check_numeric_shape(eigenvalues, "eigenvalues")
    _checked_by(cpu_plan, _stand_in(eigenvalues), alpha, beta, gamma, ridges, workers=1)
    length, rows = _length_and_rows(eigenvalues, "frangi")
    ranges = [(a, min(a + rows, length)) for a in range(0, length, rows)]
    state = {"gamma": gamma}

    def piece(a, b):
        part = to_device(eigenvalues[a:b])
        return _portable.frangi_vesselness(part, alpha, beta, state["gamma"], ridges)

    plan = _rows_plan(length, rows, piece, "Frangi vesselness", is_device_array(eigenvalues))

    def run():
        if gamma is None:
            largest = -math.inf
            for a, b in ranges:
                part = to_device(eigenvalues[a:b])
                largest = max(largest, _portable.eigenvalue_norm_max(part))
                yield
            state["gamma"] = largest / 2 if largest / 2 > 0 else 1.0
        return (yield from plan.steps())

    return Plan(plan.total * (2 if gamma is None else 1), run, "Frangi vesselness")


def vesselness_plan(
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
) -> Plan:
    """``device="gpu"`` plan of :func:`napari_voxelwise.vesselness` (frames of a 4D image one
    at a time; Frangi's automatic gamma in a first pass over every frame and piece)."""
    from .differential import _hessian_orders, slab_rows
    from .ridges import TRUNCATE, check_options, check_sigmas
    from .ridges import vesselness_plan as cpu_plan

    options = dict(method=method, ridges=ridges, alpha=alpha, beta=beta, gamma=gamma)
    _checked_by(cpu_plan, _stand_in(image), sigmas, spacing=spacing, **options)
    sigmas = check_sigmas(sigmas)
    method, ridges, alpha, beta, gamma = check_options(method, ridges, alpha, beta, gamma)
    frames = image.ndim == 4
    frame = image[0] if frames else image
    _, spacing, _ = _scales(frame, max(sigmas), spacing, TRUNCATE)
    ndim = frame.ndim
    unique = [orders for _, orders in _hessian_orders(ndim)]
    dtype = check.result_float_dtype(image.dtype)
    sign = -1.0 if ridges == "bright" else 1.0
    halo = _halo((max(sigmas),) * ndim, spacing, TRUNCATE, 2)
    on_device = is_device_array(image)
    length = frame.shape[0]
    work = dtype.itemsize
    rows = length if on_device else _rows(frame.shape, work, "vesselness", halo)
    ranges = [(a, min(a + rows, length)) for a in range(0, length, rows)]
    count = image.shape[0] if frames else 1
    state = {"gamma": 1.0 if gamma is None else gamma}
    needs_gamma = method == "frangi" and gamma is None

    def scales_of(volume, a, b):
        """(sigma, the Hessian components of rows a:b) for every sigma, on the device."""
        if a == 0 and b == length:
            part, offset = volume, 0
        else:
            part, offset = slab_rows(volume, a, b, halo, True)
        part = to_device(part)
        for sigma in sigmas:
            components = _portable.derivatives(part, unique, (sigma,) * ndim, spacing, TRUNCATE)
            yield sigma, [components[o][offset : offset + b - a] for o in unique]

    def largest_norm(volume, a, b):
        return max(
            math.sqrt(_portable.squared_norm_max(parts)) * sigma * sigma
            for sigma, parts in scales_of(volume, a, b)
        )

    def respond(volume, a, b):
        xp = device_module() if not on_device else _portable.array_namespace(volume)
        response = xp.zeros((b - a, *frame.shape[1:]), dtype)
        best = xp.zeros_like(response) if return_scale else None
        for sigma, parts in scales_of(volume, a, b):
            factor = sign * sigma * sigma
            _portable.vesselness_update(
                parts, factor, method, alpha, beta, state["gamma"], sigma, response, best
            )
        return (response, best) if return_scale else response

    def run():
        if needs_gamma:
            largest = 0.0
            for index in range(count):
                volume = image[index] if frames else image
                for a, b in ranges:
                    largest = max(largest, largest_norm(volume, a, b))
                    yield
            half = largest / 2
            state["gamma"] = half if half > 0 and math.isfinite(half) else 1.0
        results = []
        for index in range(count):
            volume = image[index] if frames else image
            plan = _rows_plan(length, rows, partial(respond, volume), "vesselness", on_device)
            results.append((yield from plan.steps()))
        if not frames:
            return results[0]
        xp = _portable.array_namespace(results[0][0] if return_scale else results[0])
        if return_scale:
            return tuple(xp.stack([r[k] for r in results]) for k in range(2))
        return xp.stack(results)

    total = count * len(ranges) * (2 if needs_gamma else 1)
    return Plan(total, run, f"vesselness ({method})")


# --------------------------------------------------------------------------- Dask


def on_dask(device, array, call):
    """``call(array)`` for a Dask `array`, its chunks computed where `device` says.

    ``"auto"``: each chunk where it is (CuPy chunks on the device, NumPy chunks on
    the CPU). ``"gpu"``: NumPy chunks are moved to the device and their results
    back, so the result has NumPy chunks. ``"cpu"``: NumPy chunks only.
    """
    from ._device import _unavailable, check_device, gpu_available

    device = check_device(device)
    on_device = is_device_array(getattr(array, "_meta", None))
    if on_device and device == "cpu":
        raise ValueError(
            "device='cpu' cannot take a Dask array of CuPy chunks; use "
            "array.map_blocks(cupy.asnumpy) for the CPU, or device='gpu' or 'auto'"
        )
    if device != "gpu" or on_device:
        return call(array)
    if not gpu_available():
        raise _unavailable()
    meta = device_module().empty((0,) * array.ndim, array.dtype)
    return _to_host_chunks(call(array.map_blocks(to_device, dtype=array.dtype, meta=meta)))


def _to_host_chunks(result):
    if isinstance(result, tuple):
        return tuple(_to_host_chunks(part) for part in result)
    if not check.is_dask_array(result):
        return to_host(result) if is_device_array(result) else result
    meta = np.empty((0,) * result.ndim, result.dtype)
    return result.map_blocks(to_host, dtype=result.dtype, meta=meta)
