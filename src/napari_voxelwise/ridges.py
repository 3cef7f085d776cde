"""Multi-scale vesselness (Frangi, Sato) with the scale at which each voxel responded.

The Hessian of every scale is computed slab by slab (the engine of
:mod:`napari_voxelwise.differential`), scale-normalised by ``sigma**2`` in
physical units, and its measure is folded into a running maximum: memory holds
the result (and the best-scale map), never a stack of scales.
"""

from __future__ import annotations

import math

import numpy as np

from . import _device, _gpu, _portable
from . import _validation as check
from ._plan import Plan, resolve_workers
from .differential import (
    RIDGES,
    _check_scales,
    _derivative_plan,
    _flat_parts,
    _hessian_orders,
)

__all__ = ["VESSELNESS_METHODS", "vesselness", "vesselness_plan"]

#: Measures understood by :func:`vesselness`.
VESSELNESS_METHODS = ("frangi", "sato")
#: Gaussian kernels stop at this many standard deviations (as scipy.ndimage's default).
TRUNCATE = 4.0
#: Work of one scale per voxel, in result bytes, for the slab engine's task sizes.
_COST_PER_VOXEL = 24.0


def vesselness(
    image,
    sigmas,
    *,
    method: str = "frangi",
    ridges: str = "bright",
    spacing=None,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float | None = None,
    return_scale: bool = False,
    workers: int | None = None,
    device: str = "auto",
):
    """Vesselness over several scales: the strongest response per voxel, and its scale.

    For every sigma the Hessian is computed with Gaussian derivatives in
    physical units (anisotropic voxels are smoothed by ``sigma / spacing``
    voxels per axis) and multiplied by ``sigma**2``, which makes responses at
    different scales comparable; the result is the per-voxel maximum over the
    scales.

    Relation to scikit-image (``spacing=None``): ``method="sato"`` equals
    ``skimage.filters.sato(image, sigmas, black_ridges=(ridges == "dark"))``.
    ``method="frangi"`` at each scale equals
    ``skimage.filters.frangi(image, [sigma], gamma=gamma / sigma**2,
    black_ridges=(ridges == "dark"))`` (scikit-image does not normalise the
    Hessian, so its ``gamma`` is in unnormalised units), and the result is the
    maximum of those over the sigmas. With one sigma and ``gamma=None`` the
    two are equal. With several sigmas and ``gamma=None``, ``gamma`` here is
    half of the largest normalised Hessian norm over all scales and voxels,
    whereas scikit-image takes half of the largest norm at its first sigma
    and reuses that value, unnormalised, for every other scale.

    Parameters
    ----------
    image : array_like, 2D, 3D or 4D
        Real numbers. A 4D image is a time-lapse: every frame along axis 0 is
        filtered on its own (``gamma=None`` is then one value for all frames).
        A Dask array gives a lazy Dask result, computed chunk by chunk with a
        halo set by the largest sigma.
    sigmas : float or sequence of float
        Gaussian scales (> 0), in the units of `spacing` (voxels when spacing
        is None).
    method : {"frangi", "sato"}, optional
        Frangi et al. 1998 (as ``skimage.filters.frangi``) or Sato et al. 1998
        (as ``skimage.filters.sato``).
    ridges : {"bright", "dark"}, optional
        Enhance bright tubes on a dark background (default) or dark tubes on a
        bright one.
    spacing : float or sequence of float, optional
        Voxel size per spatial axis; default 1.
    alpha, beta : float, optional
        Frangi's sensitivity to plates (3D only) and to blobs (default 0.5).
        Unused by Sato.
    gamma : float, optional
        Frangi's sensitivity to overall contrast (``c``), in units of the
        normalised Hessian; default: half of the largest normalised Hessian norm
        of the whole image (the same value for a NumPy or a Dask input).
        Unused by Sato.
    return_scale : bool, optional
        Also return the best-scale map.
    workers : int, optional
        Threads to use; default: all cores.
    device : {"auto", "cpu", "gpu"}, optional
        Where to compute: ``"cpu"``; ``"gpu"`` (CuPy and a CUDA device: a NumPy
        input is moved in pieces that fit the device and the result comes back
        as NumPy; a CuPy input gives a CuPy result); ``"auto"`` (default): the
        GPU for CuPy input, the CPU for NumPy input.

    Returns
    -------
    response : ndarray, shape ``image.shape``
        float64 for float64 input, float32 otherwise; Frangi's values lie in
        [0, 1]. NaN where the image's neighbourhood holds NaN or inf.
    scale : ndarray, shape ``image.shape`` (only with ``return_scale=True``)
        The sigma (in the units of `spacing`) at which each voxel's response
        peaked, a measure of the local tube size: at the centre of a tube whose
        cross-section is a Gaussian of standard deviation ``w`` it is ``w``; of
        a solid tube of radius ``R``, about ``R / sqrt(2)``. 0 where the
        response is 0, NaN where it is NaN.

    Examples
    --------
    >>> import numpy as np
    >>> z, y, x = np.mgrid[:9, :24, :24]
    >>> tube = np.exp(-((y - 12.0) ** 2 + (x - 12.0) ** 2) / (2 * 2.0**2))  # along z
    >>> response, scale = vesselness(tube, [1, 2, 4], return_scale=True)
    >>> float(scale[4, 12, 12])
    2.0
    """
    options = dict(method=method, ridges=ridges, spacing=spacing, alpha=alpha, beta=beta)
    options.update(gamma=gamma, return_scale=return_scale)
    if check.is_dask_array(image):  # a lazy Dask result (see _dask.py)
        dask = check.dask_functions()
        return _gpu.on_dask(device, image, lambda data: dask.vesselness(data, sigmas, **options))
    if _device.resolve(device, image) == "gpu":
        return _gpu.vesselness_plan(image, sigmas, **options).compute()
    return vesselness_plan(
        image,
        sigmas,
        method=method,
        ridges=ridges,
        spacing=spacing,
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        return_scale=return_scale,
        workers=workers,
    ).compute()


def check_sigmas(sigmas) -> tuple[float, ...]:
    """`sigmas` as a tuple of positive finite floats (ValueError naming `sigmas`)."""
    if isinstance(sigmas, (str, bytes)):
        raise TypeError(f"sigmas must be a number or a sequence of numbers, got {sigmas!r}")
    values = (sigmas,) if np.ndim(sigmas) == 0 else tuple(np.asarray(sigmas).ravel().tolist())
    if not values:
        raise ValueError("sigmas must hold at least one scale, got none")
    result = []
    for value in values:
        try:
            number = check.check_real(value, "sigmas")
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"sigmas: {exc}") from None
        if not number > 0:
            raise ValueError(f"sigmas must all be > 0, got {value}")
        result.append(number)
    return tuple(result)


def check_options(method, ridges, alpha, beta, gamma) -> tuple:
    """Checked ``(method, ridges, alpha, beta, gamma)``."""
    method = check.check_choice(method, "method", VESSELNESS_METHODS)
    ridges = check.check_choice(ridges, "ridges", RIDGES)
    alpha = check.check_real(alpha, "alpha")
    beta = check.check_real(beta, "beta")
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    if gamma is not None:
        gamma = check.check_real(gamma, "gamma")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0 (or None for automatic), got {gamma}")
    return method, ridges, alpha, beta, gamma


def vesselness_plan(
    image,
    sigmas,
    *,
    method: str = "frangi",
    ridges: str = "bright",
    spacing=None,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float | None = None,
    return_scale: bool = False,
    workers: int | None = None,
) -> Plan:
    """Checked, ready-to-run plan of :func:`vesselness` (see there) of a NumPy image."""
    image = check.as_numeric_array(image, "image")
    if image.ndim not in (2, 3, 4):
        raise ValueError(
            f"image must be 2D, 3D or 4D (frames along axis 0), got {image.ndim}D "
            f"(shape {image.shape})"
        )
    sigmas = check_sigmas(sigmas)
    method, ridges, alpha, beta, gamma = check_options(method, ridges, alpha, beta, gamma)
    frames = image.ndim == 4
    frame = image[0] if frames else image
    for sigma in sigmas:  # checks spacing and that every sigma suits the image
        try:
            _, checked_spacing, _ = _check_scales(frame, sigma, spacing, TRUNCATE)
        except ValueError as exc:
            if str(exc).startswith("sigma "):
                raise ValueError(f"sigmas: {exc}") from None
            raise
    spacing = checked_spacing
    workers = resolve_workers(workers)
    ndim = frame.ndim
    unique = [orders for _, orders in _hessian_orders(ndim)]
    dtype = check.result_float_dtype(image.dtype)
    response = np.zeros(image.shape, dtype)
    best = np.zeros(image.shape, dtype) if return_scale else None
    sign = -1.0 if ridges == "bright" else 1.0  # bright tubes: negative eigenvalues
    code = VESSELNESS_METHODS.index(method)
    needs_gamma = method == "frangi" and gamma is None
    state = {"gamma": 1.0 if gamma is None else gamma}
    maxima: list[float] = []

    def scale_plan(index: int, sigma: float, phase: str) -> Plan:
        volume = image[index] if frames else image
        target = response[index] if frames else response
        target_best = None if best is None else (best[index] if frames else best)
        normalise = sigma * sigma

        def consume(start, stop, components, kernels):
            parts = [components[orders] for orders in unique]
            if phase == "norm":
                if kernels:
                    from ._kernels import vesselness as kernel

                    solve = kernel.squared_norm_max3 if ndim == 3 else kernel.squared_norm_max2
                    largest = solve(*_flat_parts(components, unique))
                else:
                    largest = _portable.squared_norm_max(parts)
                maxima.append(math.sqrt(largest) * normalise)
                return
            rows = target[start:stop]
            rows_best = None if target_best is None else target_best[start:stop]
            factor = sign * normalise
            if not kernels:
                _portable.vesselness_update(
                    parts, factor, method, alpha, beta, state["gamma"], sigma, rows, rows_best
                )
                return
            from ._kernels import vesselness as kernel

            update = kernel.vesselness3_update if ndim == 3 else kernel.vesselness2_update
            flat_best = np.empty(0, dtype) if rows_best is None else rows_best.reshape(-1)
            update(
                *_flat_parts(components, unique),
                factor,
                code,
                alpha,
                beta,
                state["gamma"],
                sigma,
                rows.reshape(-1),
                flat_best,
            )

        return _derivative_plan(
            volume,
            (sigma,) * ndim,
            spacing,
            TRUNCATE,
            unique,
            consume,
            lambda: None,
            workers,
            f"vesselness sigma {sigma:g}",
            _COST_PER_VOXEL,
        )

    count = image.shape[0] if frames else 1
    phases = ("norm", "response") if needs_gamma else ("response",)
    # every frame and scale has the same number of steps as frame 0's plan of that scale
    per_frame = sum(scale_plan(0, sigma, "response").total for sigma in sigmas)

    def run():
        for phase in phases:
            for index in range(count):
                for sigma in sigmas:
                    yield from scale_plan(index, sigma, phase).steps()
            if phase == "norm":
                largest = max(maxima, default=0.0) / 2
                state["gamma"] = largest if largest > 0 and math.isfinite(largest) else 1.0
        return (response, best) if return_scale else response

    return Plan(per_frame * count * len(phases), run, f"vesselness ({method})")


def normalised_norms(volume, sigmas, spacing) -> np.ndarray:
    """Per voxel, the largest normalised Hessian norm ``sigma**2 ||H||`` over `sigmas`.

    float64, 0 where the neighbourhood holds NaN (skipped, as ``gamma=None``
    skips it); one thread. The Dask twin reduces this map to Frangi's
    automatic gamma, so that it equals the NumPy result's.
    """
    on_device = _device.is_device_array(volume)  # a CuPy chunk: the portable path, whole
    if not on_device:
        volume = check.as_numeric_array(volume, "volume")
    xp = _portable.array_namespace(volume)
    unique = [orders for _, orders in _hessian_orders(volume.ndim)]
    weights = [1.0 if max(orders) == 2 else 2.0 for orders in unique]  # off-diagonals: twice
    out = xp.zeros(volume.shape, xp.float64)

    for sigma in sigmas:

        def consume(start, stop, components, kernels, normalise=sigma * sigma):
            total = sum(
                weight * xp.square(components[orders].astype(xp.float64))
                for weight, orders in zip(weights, unique, strict=True)
            )
            xp.fmax(out[start:stop], xp.sqrt(total) * normalise, out=out[start:stop])

        if on_device:
            scales = (sigma,) * volume.ndim
            components = _portable.derivatives(volume, unique, scales, spacing, TRUNCATE)
            consume(0, volume.shape[0], components, False)
            continue
        _derivative_plan(
            volume,
            (sigma,) * volume.ndim,
            spacing,
            TRUNCATE,
            unique,
            consume,
            lambda: None,
            1,
            "Hessian norms",
            _COST_PER_VOXEL,
        ).compute()
    return out


def scale_range(start: float, stop: float, count: int, spacing: str = "linear") -> list[float]:
    """`count` scales from `start` to `stop`, spaced linearly or logarithmically.

    Examples
    --------
    >>> scale_range(1, 8, 4, "log")
    [1.0, 2.0, 4.0, 8.0]
    """
    start = check.check_real(start, "start")
    stop = check.check_real(stop, "stop")
    count = check.check_int(count, "count", minimum=1)
    spacing = check.check_choice(spacing, "spacing", ("linear", "log"))
    if not 0 < start <= stop:
        raise ValueError(f"scales need 0 < start <= stop, got start {start}, stop {stop}")
    if count == 1:
        return [start]
    if spacing == "log":
        values = np.geomspace(start, stop, count)
    else:
        values = np.linspace(start, stop, count)
    return [float(f"{v:.6g}") for v in values]
