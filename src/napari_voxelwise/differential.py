"""Gradients, Hessian matrices and their eigenvalues for every voxel.

The answer to "``np.gradient`` of a (50, 50, 50) volume as one (50, 50, 50, 3)
array, the full 3x3 Hessian of every voxel as (Z, Y, X, 3, 3), and the three
eigenvalues of every voxel's Hessian, fast".

Derivatives are either finite differences (``sigma=None`` or 0, the same as
``np.gradient``) or Gaussian derivatives at scale ``sigma`` (the same as
``scipy.ndimage.gaussian_filter(volume, sigma / spacing, order=...)``, mode
"reflect"). Both are taken with respect to physical coordinates: ``spacing``
is the voxel size per axis (napari's layer ``scale``) and ``sigma`` is in the
same units, so anisotropic voxels get the right smoothing and derivatives.

The volume is processed in slabs along its first axis, each with the halo its
filter needs, on all cores; a Gaussian Hessian shares its smoothing passes
between the components, and the eigenvalues come from a closed-form solver fed
with the six unique components of each slab, so no (..., 3, 3) matrix is ever
built for them. Finite differences are computed by a kernel in float64 (a
float32 volume's are rounded once, where ``np.gradient`` rounds the difference
and the quotient in float32; a Hessian's first derivatives stay float64), and
each slab's components are written into the (..., ndim) or (..., ndim, ndim)
result row by row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from itertools import combinations_with_replacement

import numpy as np

from . import _device, _dispatch, _gpu, _portable
from . import _validation as check
from ._blocks import frozen
from ._plan import Plan, resolve_workers, run_tasks, split_range, task_count

__all__ = [
    "EIGENVALUE_ORDERS",
    "RIDGES",
    "frangi_vesselness",
    "gradient_magnitude",
    "gradient_vectors",
    "hessian_eigenvalues",
    "hessian_matrix",
]

#: Orders understood by :func:`hessian_eigenvalues`.
EIGENVALUE_ORDERS = ("descending", "ascending", "abs")
#: Ridge polarities understood by :func:`frangi_vesselness`.
RIDGES = ("bright", "dark")


# --------------------------------------------------------------------------- public API


def gradient_vectors(
    volume, spacing=None, sigma=None, *, truncate=4.0, workers=None, device="auto"
) -> np.ndarray:
    """Gradient of every voxel as one array with the components last.

    With ``sigma=None`` (default) this equals
    ``np.stack(np.gradient(volume, *spacing), axis=-1)``: central differences
    inside, one-sided at the edges.

    Parameters
    ----------
    volume : array_like, shape (..., N)
        Real numbers with at least one dimension (2 or more samples per axis
        for finite differences).
    spacing : float or sequence of float, optional
        Voxel size per axis (napari's ``layer.scale``); default 1.
    sigma : float or sequence of float, optional
        Gaussian scale in the units of `spacing`. None or 0: finite
        differences; > 0: Gaussian derivatives.
    truncate : float, optional
        Gaussian kernels are cut at ``truncate`` standard deviations (scipy's
        default 4).
    workers : int, optional
        Threads to use; default: all cores.
    device : {"auto", "cpu", "gpu"}, optional
        Where to compute: ``"cpu"``; ``"gpu"`` (CuPy and a CUDA device: a NumPy
        input is moved in pieces that fit the device and the result comes back
        as NumPy; a CuPy input gives a CuPy result); ``"auto"`` (default): the
        GPU for CuPy input, the CPU for NumPy input.

    Returns
    -------
    gradient : ndarray, shape ``volume.shape + (volume.ndim,)``
        ``gradient[..., i]`` is the derivative along axis ``i``; float64 for
        float64 input, float32 otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> volume = np.random.default_rng(0).random((50, 50, 50))
    >>> gradient = gradient_vectors(volume)
    >>> gradient.shape
    (50, 50, 50, 3)
    >>> bool(np.allclose(gradient, np.stack(np.gradient(volume), axis=-1)))
    True
    """
    if check.is_dask_array(volume):  # a lazy Dask result (see _dask.py)
        dask = check.dask_functions()
        return _gpu.on_dask(
            device,
            volume,
            lambda data: dask.gradient_vectors(data, spacing, sigma, truncate=truncate),
        )
    if _device.resolve(device, volume) == "gpu":
        return _gpu.gradient_plan(volume, spacing, sigma, truncate=truncate).compute()
    plan = gradient_plan(
        volume, spacing, sigma, truncate=truncate, magnitude=False, workers=workers
    )
    return plan.compute()


def gradient_magnitude(
    volume, spacing=None, sigma=None, *, truncate=4.0, workers=None, device="auto"
) -> np.ndarray:
    """Length of the gradient of every voxel, ``norm(gradient_vectors(...), axis=-1)``.

    Computed slab by slab, without building the (..., ndim) gradient array.

    Parameters
    ----------
    volume : array_like
        Real numbers with at least one dimension.
    spacing : float or sequence of float, optional
        Voxel size per axis (napari's ``layer.scale``); default 1.
    sigma : float or sequence of float, optional
        Gaussian scale in the units of `spacing`; None or 0: finite differences.
    truncate : float, optional
        Gaussian kernels are cut at ``truncate`` standard deviations.
    workers : int, optional
        Threads to use; default: all cores.
    device : {"auto", "cpu", "gpu"}, optional
        Where to compute: ``"cpu"``; ``"gpu"`` (CuPy and a CUDA device: a NumPy
        input is moved in pieces that fit the device and the result comes back
        as NumPy; a CuPy input gives a CuPy result); ``"auto"`` (default): the
        GPU for CuPy input, the CPU for NumPy input.

    Returns
    -------
    magnitude : ndarray, shape ``volume.shape``
        float64 for float64 input, float32 otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> ramp = np.tile(np.arange(5.0), (4, 1))  # slope 1 along the last axis
    >>> gradient_magnitude(ramp, spacing=(1.0, 0.5))[0]
    array([2., 2., 2., 2., 2.])
    """
    if check.is_dask_array(volume):  # a lazy Dask result (see _dask.py)
        dask = check.dask_functions()
        return _gpu.on_dask(
            device,
            volume,
            lambda data: dask.gradient_magnitude(data, spacing, sigma, truncate=truncate),
        )
    if _device.resolve(device, volume) == "gpu":
        plan = _gpu.gradient_plan(volume, spacing, sigma, truncate=truncate, magnitude=True)
        return plan.compute()
    plan = gradient_plan(
        volume, spacing, sigma, truncate=truncate, magnitude=True, workers=workers
    )
    return plan.compute()


def hessian_matrix(
    volume, sigma=1.0, spacing=None, *, truncate=4.0, workers=None, device="auto"
) -> np.ndarray:
    """Full, symmetric Hessian matrix of every voxel.

    Parameters
    ----------
    volume : array_like
        Real numbers with at least one dimension.
    sigma : float or sequence of float or None, optional
        Gaussian scale in the units of `spacing` (default 1). None or 0:
        finite differences, equal to the seed's
        ``np.array([np.gradient(g, *spacing) for g in np.gradient(volume, *spacing)])``
        with its two leading axes moved last.
    spacing : float or sequence of float, optional
        Voxel size per axis; default 1.
    truncate : float, optional
        Gaussian kernels are cut at ``truncate`` standard deviations.
    workers : int, optional
        Threads to use; default: all cores.
    device : {"auto", "cpu", "gpu"}, optional
        Where to compute: ``"cpu"``; ``"gpu"`` (CuPy and a CUDA device: a NumPy
        input is moved in pieces that fit the device and the result comes back
        as NumPy; a CuPy input gives a CuPy result); ``"auto"`` (default): the
        GPU for CuPy input, the CPU for NumPy input.

    Returns
    -------
    hessian : ndarray, shape ``volume.shape + (ndim, ndim)``
        ``hessian[..., i, j]`` is the second derivative along axes i and j with
        respect to physical coordinates; float64 for float64 input, float32
        otherwise. With ``sigma > 0`` it equals
        ``scipy.ndimage.gaussian_filter(volume, sigma / spacing, order=o) /
        (spacing[i] * spacing[j])`` (mode "reflect").

    Examples
    --------
    >>> import numpy as np
    >>> z, y, x = np.mgrid[:5, :5, :5].astype(float)
    >>> hessian = hessian_matrix(x * x + 3 * y * z, sigma=None)
    >>> hessian.shape
    (5, 5, 5, 3, 3)
    >>> hessian[2, 2, 2]
    array([[0., 3., 0.],
           [3., 0., 0.],
           [0., 0., 2.]])
    """
    if check.is_dask_array(volume):  # a lazy Dask result (see _dask.py)
        dask = check.dask_functions()
        return _gpu.on_dask(
            device,
            volume,
            lambda data: dask.hessian_matrix(data, sigma, spacing, truncate=truncate),
        )
    if _device.resolve(device, volume) == "gpu":
        return _gpu.hessian_plan(volume, sigma, spacing, truncate=truncate).compute()
    return hessian_plan(volume, sigma, spacing, truncate=truncate, workers=workers).compute()


def hessian_eigenvalues(
    volume,
    sigma=1.0,
    spacing=None,
    order="descending",
    *,
    truncate=4.0,
    workers=None,
    device="auto",
) -> np.ndarray:
    """Eigenvalues of the Hessian matrix of every voxel of a 2D or 3D volume.

    A closed-form solver (2x2 directly, 3x3 trigonometric) fed with the unique
    Hessian components of each slab; it agrees with ``np.linalg.eigvalsh`` to
    about 1e-7 of the largest eigenvalue and is robust on degenerate voxels
    (flat regions, isotropic blobs).

    Parameters
    ----------
    volume : array_like, 2D or 3D
        Real numbers.
    sigma, spacing, truncate : optional
        As in :func:`hessian_matrix`.
    order : {"descending", "ascending", "abs"}, optional
        ``"descending"`` (default): ``l1 >= l2 >= l3``; ``"ascending"``; or
        ``"abs"``: ascending absolute value, Frangi's convention
        ``|l1| <= |l2| <= |l3|``.
    workers : int, optional
        Threads to use; default: all cores.
    device : {"auto", "cpu", "gpu"}, optional
        Where to compute: ``"cpu"``; ``"gpu"`` (CuPy and a CUDA device: a NumPy
        input is moved in pieces that fit the device and the result comes back
        as NumPy; a CuPy input gives a CuPy result); ``"auto"`` (default): the
        GPU for CuPy input, the CPU for NumPy input.

    Returns
    -------
    eigenvalues : ndarray, shape ``volume.shape + (ndim,)``
        float64 for float64 input, float32 otherwise. NaN where the volume's
        neighbourhood holds NaN or inf; +-inf only for an eigenvalue whose
        exact value lies beyond the result dtype's range (values near the
        largest float).

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[-3:4, -3:4].astype(float)
    >>> hessian_eigenvalues(x * x - 2 * y * y, sigma=None)[3, 3]
    array([ 2., -4.])
    """
    if check.is_dask_array(volume):  # a lazy Dask result (see _dask.py)
        dask = check.dask_functions()
        return _gpu.on_dask(
            device,
            volume,
            lambda data: dask.hessian_eigenvalues(data, sigma, spacing, order, truncate=truncate),
        )
    if _device.resolve(device, volume) == "gpu":
        plan = _gpu.hessian_eigenvalues_plan(volume, sigma, spacing, order, truncate=truncate)
        return plan.compute()
    return hessian_eigenvalues_plan(
        volume, sigma, spacing, order, truncate=truncate, workers=workers
    ).compute()


def frangi_vesselness(
    eigenvalues, alpha=0.5, beta=0.5, gamma=None, ridges="bright", *, workers=None, device="auto"
) -> np.ndarray:
    """Frangi's vesselness from per-voxel Hessian eigenvalues (2D or 3D).

    The same measure as ``skimage.filters.frangi`` at one scale, computed from
    eigenvalues you already have (e.g. from :func:`hessian_eigenvalues`).

    Parameters
    ----------
    eigenvalues : array_like, shape (..., 2) or (..., 3)
        Eigenvalues of each voxel's Hessian, in any order.
    alpha : float, optional
        Sensitivity to plate-like structures (3D only; default 0.5).
    beta : float, optional
        Sensitivity to blob-like structures (default 0.5).
    gamma : float, optional
        Sensitivity to overall structure, Frangi's ``c``; default: half of the
        largest Hessian norm in the array (as scikit-image does).
    ridges : {"bright", "dark"}, optional
        Polarity of the tubes to enhance: bright on dark (default) or dark on
        bright (scikit-image's ``black_ridges=True``).
    workers : int, optional
        Threads to use; default: all cores.
    device : {"auto", "cpu", "gpu"}, optional
        Where to compute: ``"cpu"``; ``"gpu"`` (CuPy and a CUDA device: a NumPy
        input is moved in pieces that fit the device and the result comes back
        as NumPy; a CuPy input gives a CuPy result); ``"auto"`` (default): the
        GPU for CuPy input, the CPU for NumPy input.

    Returns
    -------
    vesselness : ndarray, shape ``eigenvalues.shape[:-1]``
        Values in [0, 1]; float64 for float64 input, float32 otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> tube = np.array([[-4.0, -4.0, 0.0]])  # bright tube: two strong negative eigenvalues
    >>> plate = np.array([[-4.0, 0.0, 0.0]])
    >>> bool(frangi_vesselness(tube, gamma=1.0)[0] > frangi_vesselness(plate, gamma=1.0)[0])
    True
    """
    if check.is_dask_array(eigenvalues):  # a lazy Dask result (see _dask.py)
        dask = check.dask_functions()
        return _gpu.on_dask(
            device,
            eigenvalues,
            lambda data: dask.frangi_vesselness(data, alpha, beta, gamma, ridges),
        )
    if _device.resolve(device, eigenvalues) == "gpu":
        return _gpu.frangi_plan(eigenvalues, alpha, beta, gamma, ridges).compute()
    return frangi_plan(eigenvalues, alpha, beta, gamma, ridges, workers=workers).compute()


# --------------------------------------------------------------------------- Gaussian kernels


def reflect_index(start: int, stop: int, length: int) -> np.ndarray:
    """Indices ``start..stop-1`` folded into ``[0, length)`` as scipy's "reflect" mode does.

    ``d c b a | a b c d | d c b a``, repeated for indices far outside.
    """
    index = np.arange(start, stop) % (2 * length)
    return np.where(index >= length, 2 * length - 1 - index, index)


def gaussian_weights(sigma: float, order: int, truncate: float) -> np.ndarray:
    """Correlation weights of scipy's ``gaussian_filter1d`` (length ``2r + 1``).

    ``r = int(truncate * sigma + 0.5)``; order 0 is the normalised Gaussian,
    orders 1 and 2 its derivatives, exactly as ``scipy.ndimage`` builds them.
    """
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x.astype(np.float64) ** 2)
    phi /= phi.sum()
    if order == 0:
        kernel = phi
    else:
        # The derivative of order n of the Gaussian is q(x) * phi(x), q a polynomial.
        exponents = np.arange(order + 1)
        q = np.zeros(order + 1)
        q[0] = 1
        derivative = np.diag(exponents[1:], 1) + np.diag(np.full(order, -1 / sigma**2), -1)
        for _ in range(order):
            q = derivative.dot(q)
        kernel = (x[:, None] ** exponents).dot(q) * phi
    return kernel[::-1]  # scipy correlates with the reversed kernel (a convolution)


class _AxisFilters:
    """Half-kernels of the Gaussian derivatives of orders 0..2 along one axis."""

    def __init__(self, sigma_voxels: float, spacing: float, truncate: float, dtype):
        self.radius = int(truncate * sigma_voxels + 0.5)
        self._filters = {}
        for order in range(3):
            weights = gaussian_weights(sigma_voxels, order, truncate) / spacing**order
            half = np.ascontiguousarray(weights[self.radius :], dtype=dtype)
            self._filters[order] = (half, 1 if order % 2 == 0 else -1)

    def __getitem__(self, order: int):
        return self._filters[order]


def _correlate_axis(array: np.ndarray, axis: int, half, parity, index, length: int):
    """One 1D pass of :func:`_kernels.filters.correlate_lines` along `axis` of a C-contiguous
    array."""
    from ._kernels.filters import correlate_lines

    shape = array.shape
    outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
    result = np.empty((*shape[:axis], length, *shape[axis + 1 :]), array.dtype)
    correlate_lines(
        frozen(array.reshape(outer, shape[axis], inner)),
        half,
        parity,
        index,
        result.reshape(outer, length, inner),
    )
    return result


def _gaussian_components(extended, halo, filters, orders):
    """Gaussian derivatives `orders` of a slab with `halo` rows of context on axis 0.

    Separable passes are shared between components: the pass along axis 0 of
    order k is done once for every component that needs order k there, and so
    on down the axes (15 passes instead of 18 for a 3D Hessian).
    """
    ndim = extended.ndim
    rows = extended.shape[0] - 2 * halo
    results = {}
    _descend(extended, 0, list(orders), halo, rows, filters, ndim, results)
    return results


def _descend(array, axis, group, halo, rows, filters, ndim, results):
    """One level of :func:`_gaussian_components`: the passes along `axis`, then deeper.

    A module-level function, not a recursive closure: a closure that refers to
    itself is a reference cycle, which kept every slab's components alive until
    the garbage collector ran (hundreds of MiB on a 256^3 volume).
    """
    by_order: dict[int, list] = {}
    for orders_ in group:
        by_order.setdefault(orders_[axis], []).append(orders_)
    for order, subgroup in by_order.items():
        half, parity = filters[axis][order]
        radius = half.shape[0] - 1
        if axis == 0:  # "valid" pass: the slab's halo is the context
            index = np.arange(halo - radius, halo + rows + radius)
            filtered = _correlate_axis(array, 0, half, parity, index, rows)
        else:
            length = array.shape[axis]
            index = reflect_index(-radius, length + radius, length)
            filtered = _correlate_axis(array, axis, half, parity, index, length)
        if axis == ndim - 1:
            results[subgroup[0]] = filtered
        else:
            _descend(filtered, axis + 1, subgroup, halo, rows, filters, ndim, results)


def _difference_components(extended, offset, rows, spacing, orders):
    """Finite-difference derivatives (np.gradient, once or twice) of a slab's rows.

    `extended` is a C-contiguous slab whose rows ``offset:offset + rows`` are wanted,
    with the rows around them that the differences need (or the volume's first and
    last rows). Second derivatives difference float64 first derivatives, each
    computed once over the rows the second pass needs (two more along axis 0).
    Returns a dict from order tuples to arrays of the slab's dtype, shape
    ``(rows, ...)``.
    """
    scales = [1.0 / step for step in spacing]
    dtype = extended.dtype
    own = extended[offset : offset + rows]  # enough for derivatives along the other axes
    lo, hi = max(offset - 1, 0), min(offset + rows + 1, len(extended))
    first: dict[int, np.ndarray] = {}  # float64 first derivatives (along axis 0: rows lo:hi)
    results = {}
    for orders_ in orders:
        steps = [axis for axis, count in enumerate(orders_) for _ in range(count)]
        i, j = steps[0], steps[-1]  # i <= j
        if len(steps) == 1:
            results[orders_] = (
                _difference_along(extended, 0, scales[0], dtype, offset, rows)
                if i == 0
                else _difference_along(own, i, scales[i], dtype)
            )
            continue
        if i not in first:
            first[i] = (
                _difference_along(extended, 0, scales[0], np.float64, lo, hi - lo)
                if i == 0
                else _difference_along(own, i, scales[i], np.float64)
            )
        if j == 0:
            results[orders_] = _difference_along(first[0], 0, scales[0], dtype, offset - lo, rows)
        else:
            part = first[0][offset - lo : offset - lo + rows] if i == 0 else first[i]
            results[orders_] = _difference_along(part, j, scales[j], dtype)
    return results


def _difference_along(array, axis, scale, dtype, lo=0, rows=None):
    """`_kernels.filters.difference_lines` along `axis` of a C-contiguous array, into a new array.

    Along axis 0 the result holds rows ``lo:lo + rows`` (default: all); along the
    other axes, all of them.
    """
    from ._kernels.filters import difference_lines

    shape = array.shape
    if axis == 0 and rows is not None:
        shape = (rows, *shape[1:])
    outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
    result = np.empty(shape, dtype)
    difference_lines(
        frozen(array.reshape(outer, array.shape[axis], inner)),
        lo,
        scale,
        result.reshape(outer, shape[axis], inner),
    )
    return result


def _flat_parts(components: dict, orders) -> tuple[np.ndarray, ...]:
    """The components `orders` (new C-contiguous slab arrays) as flat read-only views."""
    return tuple(frozen(components[o].reshape(-1)) for o in orders)


# --------------------------------------------------------------------------- slab engine


def slab_rows(volume, start: int, stop: int, halo: int, gaussian: bool):
    """Rows ``start:stop`` of `volume` with `halo` rows of context: ``(rows, offset)``.

    `offset` is where row `start` lies in `rows`. Gaussian filters read the halo
    folded at the volume's ends as scipy's "reflect" mode does; finite
    differences read no row beyond the ends (their one-sided edges need none).
    """
    length = volume.shape[0]
    if not gaussian:
        first, last = max(start - halo, 0), min(stop + halo, length)
        return volume[first:last], start - first
    if start - halo >= 0 and stop + halo <= length:
        return volume[start - halo : stop + halo], halo
    return volume[reflect_index(start - halo, stop + halo, length)], halo


def _derivative_plan(
    volume: np.ndarray,
    sigma,
    spacing,
    truncate: float,
    orders: Sequence[tuple[int, ...]],
    consume: Callable[[int, int, dict], None],
    finish: Callable[[], object],
    workers: int,
    description: str,
    cost_per_voxel: float,
) -> Plan:
    """Plan computing derivative components slab by slab along axis 0.

    ``consume(start, stop, components, kernels)`` stores the components of rows
    ``start:stop`` (a dict from order tuples to arrays) into the result, with the
    kernels or (`kernels` False) the portable path.
    """
    work_dtype = check.result_float_dtype(volume.dtype)
    length = volume.shape[0]
    check_finite = volume.dtype.kind == "f"
    if sigma is None:
        halo = max(o[0] for o in orders)
        filters = None
    else:
        sigma_voxels = [s / d for s, d in zip(sigma, spacing, strict=True)]
        filters = [
            _AxisFilters(s, d, truncate, work_dtype)
            for s, d in zip(sigma_voxels, spacing, strict=True)
        ]
        halo = filters[0].radius

    def compute_slab(kernels: bool, start: int, stop: int):
        rows, offset = slab_rows(volume, start, stop, halo, filters is not None)
        extended = np.ascontiguousarray(rows, dtype=work_dtype)
        if not kernels:  # the slab's own rows (the halo gives them context)
            own = (offset, offset + stop - start)
            components = _portable.derivatives(
                extended, orders, sigma, spacing, truncate, rows=own
            )
        elif filters is None:
            components = _difference_components(extended, offset, stop - start, spacing, orders)
        else:
            components = _gaussian_components(extended, halo, filters, orders)
            if check_finite and not np.isfinite(extended).all():
                for component in components.values():
                    component[~np.isfinite(component)] = np.nan
        consume(start, stop, components, kernels)

    work = volume.size * cost_per_voxel * work_dtype.itemsize
    parts = task_count(work, length, workers)
    if halo:  # keep slabs at least as thick as the halo when there are enough of them
        parts = max(min(parts, length // halo), min(workers, length))
    slabs = split_range(length, parts)
    tasks = _dispatch.tasks(
        [partial(compute_slab, True, a, b) for a, b in slabs] if _dispatch.numba_ready() else None,
        [partial(compute_slab, False, a, b) for a, b in slabs],
    )
    return Plan.from_tasks(tasks, finish, workers, description)


def _check_volume(volume, name: str = "volume") -> np.ndarray:
    return check.as_numeric_array(volume, name)


def _check_scales(volume: np.ndarray, sigma, spacing, truncate):
    """Normalise (sigma or None, spacing, truncate) for `volume`."""
    ndim = volume.ndim
    spacing = (
        (1.0,) * ndim if spacing is None else check.normalize_per_axis(spacing, "spacing", ndim)
    )
    truncate = check.check_real(truncate, "truncate")
    if truncate <= 0:
        raise ValueError(f"truncate must be > 0, got {truncate}")
    if sigma is not None:
        if np.ndim(sigma) == 0:
            value = check.check_real(sigma, "sigma")
            if value < 0:
                raise ValueError(
                    f"sigma must be >= 0 (0 or None: finite differences), got {sigma}"
                )
            sigma = None if value == 0 else (value,) * ndim
        else:
            sigma = check.normalize_per_axis(sigma, "sigma", ndim)
    if sigma is not None:
        for axis, (length, s, step) in enumerate(zip(volume.shape, sigma, spacing, strict=False)):
            voxels = s / step
            if not 1e-3 <= voxels <= 4 * length + 64:
                raise ValueError(
                    f"sigma is {voxels:.3g} voxels along axis {axis} (sigma {s:g} / spacing "
                    f"{step:g}); it must lie between 0.001 and 4 x the axis length + 64 voxels"
                )
    if sigma is None and min(volume.shape) < 2:
        raise ValueError(
            f"volume needs at least 2 samples along every axis for finite differences, "
            f"got shape {volume.shape}; use sigma > 0"
        )
    return sigma, spacing, truncate


def gradient_plan(
    volume, spacing=None, sigma=None, *, truncate=4.0, magnitude=False, workers=None
) -> Plan:
    """Checked, ready-to-run plan of :func:`gradient_vectors` or :func:`gradient_magnitude`."""

    volume = _check_volume(volume)
    sigma, spacing, truncate = _check_scales(volume, sigma, spacing, truncate)
    workers = resolve_workers(workers)
    ndim = volume.ndim
    dtype = check.result_float_dtype(volume.dtype)
    orders = [tuple(int(a == b) for b in range(ndim)) for a in range(ndim)]
    out = np.empty(volume.shape if magnitude else (*volume.shape, ndim), dtype)

    def consume(start, stop, components, kernels):
        if not kernels:
            vectors = np.stack([components[o] for o in orders], axis=-1)
            if magnitude:  # the length of each vector, summed in float64
                out[start:stop] = np.sqrt(np.square(vectors, dtype=np.float64).sum(axis=-1))
            else:
                out[start:stop] = vectors
            return
        from ._kernels.filters import interleave, vector_norms

        parts = _flat_parts(components, orders)
        if magnitude:
            vector_norms(parts, out[start:stop].reshape(-1))
        else:
            interleave(parts, out[start:stop].reshape(-1, ndim))

    name = "gradient magnitude" if magnitude else "gradient"
    return _derivative_plan(
        volume,
        sigma,
        spacing,
        truncate,
        orders,
        consume,
        lambda: out,
        workers,
        name,
        cost_per_voxel=2 * ndim,
    )


def _hessian_orders(ndim: int) -> list[tuple[tuple[int, int], tuple[int, ...]]]:
    """((i, j), derivative orders per axis) of the unique Hessian components, i <= j."""
    pairs = []
    for i, j in combinations_with_replacement(range(ndim), 2):
        orders = [0] * ndim
        orders[i] += 1
        orders[j] += 1
        pairs.append(((i, j), tuple(orders)))
    return pairs


def hessian_plan(volume, sigma=1.0, spacing=None, *, truncate=4.0, workers=None) -> Plan:
    """Checked, ready-to-run plan of :func:`hessian_matrix` (see there)."""

    volume = _check_volume(volume)
    sigma, spacing, truncate = _check_scales(volume, sigma, spacing, truncate)
    workers = resolve_workers(workers)
    ndim = volume.ndim
    pairs = _hessian_orders(ndim)
    pairs_by_index = dict(pairs)
    out = np.empty((*volume.shape, ndim, ndim), check.result_float_dtype(volume.dtype))

    # the (i, j) and (j, i) entries of each matrix, row by row, come from one component
    entries = [pairs_by_index[min(i, j), max(i, j)] for i in range(ndim) for j in range(ndim)]

    def consume(start, stop, components, kernels):
        if not kernels:
            matrices = np.stack([components[o] for o in entries], axis=-1)
            out[start:stop] = matrices.reshape(*matrices.shape[:-1], ndim, ndim)
            return
        from ._kernels.filters import interleave

        parts = _flat_parts(components, entries)
        interleave(parts, out[start:stop].reshape(-1, ndim * ndim))

    return _derivative_plan(
        volume,
        sigma,
        spacing,
        truncate,
        [o for _, o in pairs],
        consume,
        lambda: out,
        workers,
        "Hessian matrix",
        cost_per_voxel=len(pairs) * 3,
    )


def hessian_eigenvalues_plan(
    volume, sigma=1.0, spacing=None, order="descending", *, truncate=4.0, workers=None
) -> Plan:
    """Checked, ready-to-run plan of :func:`hessian_eigenvalues` (see there)."""
    from . import _kernels

    volume = _check_volume(volume)
    if volume.ndim not in (2, 3):
        raise ValueError(
            f"volume must be 2D or 3D for Hessian eigenvalues, got {volume.ndim}D "
            f"(shape {volume.shape}); process a 4D stack frame by frame"
        )
    order = check.check_choice(order, "order", EIGENVALUE_ORDERS)
    sigma, spacing, truncate = _check_scales(volume, sigma, spacing, truncate)
    workers = resolve_workers(workers)
    ndim = volume.ndim
    pairs = _hessian_orders(ndim)
    order_code = {
        "descending": _kernels.ORDER_DESCENDING,
        "ascending": _kernels.ORDER_ASCENDING,
        "abs": _kernels.ORDER_ABS,
    }[order]
    out = np.empty((*volume.shape, ndim), check.result_float_dtype(volume.dtype))
    unique = [orders for _, orders in pairs]

    def consume(start, stop, components, kernels):
        if not kernels:
            parts = [components[orders] for orders in unique]
            out[start:stop] = _portable.symmetric_eigenvalues(parts, order, out.dtype)
            return
        from ._kernels import eigenvalues

        solver = (
            eigenvalues.symmetric3_eigenvalues_interleaved
            if ndim == 3
            else eigenvalues.symmetric2_eigenvalues_interleaved
        )
        # straight into the result (a view: `out` is C-contiguous), block by block
        solver(*_flat_parts(components, unique), order_code, out[start:stop].reshape(-1, ndim))

    return _derivative_plan(
        volume,
        sigma,
        spacing,
        truncate,
        [o for _, o in pairs],
        consume,
        lambda: out,
        workers,
        "Hessian eigenvalues",
        cost_per_voxel=len(pairs) * 3,
    )


def frangi_plan(
    eigenvalues, alpha=0.5, beta=0.5, gamma=None, ridges="bright", *, workers=None
) -> Plan:
    """Checked, ready-to-run plan of :func:`frangi_vesselness` (see there)."""
    eigenvalues = check.as_numeric_array(eigenvalues, "eigenvalues", min_ndim=1)
    if eigenvalues.shape[-1] not in (2, 3):
        raise ValueError(
            "eigenvalues must have 2 or 3 entries on the last axis (2D or 3D Hessians), "
            f"got shape {eigenvalues.shape}"
        )
    alpha = check.check_real(alpha, "alpha")
    beta = check.check_real(beta, "beta")
    for name, value in (("alpha", alpha), ("beta", beta)):
        if value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    if gamma is not None:
        gamma = check.check_real(gamma, "gamma")
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0 (or None for automatic), got {gamma}")
    ridges = check.check_choice(ridges, "ridges", RIDGES)
    workers = resolve_workers(workers)
    dtype = check.result_float_dtype(eigenvalues.dtype)
    out = np.empty(eigenvalues.shape[:-1], dtype)
    flat_in = eigenvalues.reshape(-1, eigenvalues.shape[-1])
    flat_out = out.reshape(-1)
    sign = -1.0 if ridges == "bright" else 1.0  # bright tubes: negative eigenvalues
    blocks = split_range(
        flat_in.shape[0], task_count(eigenvalues.nbytes, flat_in.shape[0], workers)
    )
    norms_max = np.zeros(len(blocks))

    def sorted_block(start, stop):
        values = sign * np.asarray(flat_in[start:stop], dtype=dtype)
        ranking = np.argsort(np.abs(values), axis=-1, kind="stable")
        return np.take_along_axis(values, ranking, axis=-1)

    def block_norm_max(index, start, stop):
        values = np.asarray(flat_in[start:stop], dtype=np.float64)
        # fmax skips NaN voxels: they give NaN themselves but do not set the scale;
        # norms beyond the float64 range are inf (then every finite voxel scores 0)
        with np.errstate(over="ignore"):
            norms_max[index] = np.fmax.reduce(np.sqrt(np.square(values).sum(axis=-1)))

    def vesselness(scale, start, stop):
        values = sorted_block(start, stop)
        lambda1 = values[:, 0]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if values.shape[1] == 2:
                lambda2 = np.maximum(values[:, 1], 1e-10)
                plate = 1.0
                blob_ratio = np.abs(lambda1) / lambda2
            else:
                lambda2 = np.maximum(values[:, 1], 1e-10)
                lambda3 = np.maximum(values[:, 2], 1e-10)
                plate = 1.0 - np.exp(-((lambda2 / lambda3) ** 2) / (2 * alpha**2))
                blob_ratio = np.abs(lambda1) / np.sqrt(lambda2 * lambda3)
            structure = np.square(values).sum(axis=-1)
            result = plate * np.exp(-(blob_ratio**2) / (2 * beta**2))
            result *= 1.0 - np.exp(-structure / (2 * scale**2))
        flat_out[start:stop] = result

    def run():
        scale = gamma
        if scale is None:
            yield from run_tasks(
                [partial(block_norm_max, i, a, b) for i, (a, b) in enumerate(blocks)], workers
            )
            scale = float(np.fmax.reduce(norms_max)) / 2
            if not scale > 0:  # all zero (or all NaN): the scale does not matter
                scale = 1.0
        yield from run_tasks([partial(vesselness, scale, a, b) for a, b in blocks], workers)
        return out

    total = len(blocks) * (1 if gamma is not None else 2)
    return Plan(total, run, "Frangi vesselness")
