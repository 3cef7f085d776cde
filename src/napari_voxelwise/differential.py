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
built for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from itertools import combinations_with_replacement

import numpy as np

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
    volume, spacing=None, sigma=None, *, truncate=4.0, workers=None
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
        return check.dask_functions().gradient_vectors(volume, spacing, sigma, truncate=truncate)
    plan = gradient_plan(
        volume, spacing, sigma, truncate=truncate, magnitude=False, workers=workers
    )
    return plan.compute()


def gradient_magnitude(
    volume, spacing=None, sigma=None, *, truncate=4.0, workers=None
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
        return check.dask_functions().gradient_magnitude(volume, spacing, sigma, truncate=truncate)
    plan = gradient_plan(
        volume, spacing, sigma, truncate=truncate, magnitude=True, workers=workers
    )
    return plan.compute()


def hessian_matrix(volume, sigma=1.0, spacing=None, *, truncate=4.0, workers=None) -> np.ndarray:
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
        return check.dask_functions().hessian_matrix(volume, sigma, spacing, truncate=truncate)
    return hessian_plan(volume, sigma, spacing, truncate=truncate, workers=workers).compute()


def hessian_eigenvalues(
    volume, sigma=1.0, spacing=None, order="descending", *, truncate=4.0, workers=None
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
        return check.dask_functions().hessian_eigenvalues(
            volume, sigma, spacing, order, truncate=truncate
        )
    return hessian_eigenvalues_plan(
        volume, sigma, spacing, order, truncate=truncate, workers=workers
    ).compute()


def frangi_vesselness(
    eigenvalues, alpha=0.5, beta=0.5, gamma=None, ridges="bright", *, workers=None
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
        return check.dask_functions().frangi_vesselness(eigenvalues, alpha, beta, gamma, ridges)
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
    """One 1D pass of :func:`_kernels.correlate_lines` along `axis` of a C-contiguous array."""
    from ._kernels import correlate_lines

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


def _difference_components(extended, spacing, orders):
    """Finite-difference derivatives (np.gradient, one axis after the other).

    Values within a factor 4 of the dtype's largest would overflow in the
    differences themselves (``x - (-x)``) though the derivative is finite:
    such slabs are differenced at a quarter of their values (exact, a power
    of two) and scaled back, so only derivatives that truly exceed the range
    become infinite.
    """
    lift = 1.0
    if extended.dtype.kind == "f" and extended.size:
        largest = np.finfo(extended.dtype).max / 4
        with np.errstate(invalid="ignore"):
            if np.nanmax(np.abs(extended), initial=0) > largest:
                lift = 4.0 ** max(_highest_order(orders), 1)
                extended = extended / extended.dtype.type(lift)
    # (no recursive closure here: it would be a reference cycle keeping `memo` alive)
    memo: dict[tuple, np.ndarray] = {(): extended}
    results = {}
    for orders_ in orders:
        steps = tuple(axis for axis, count in enumerate(orders_) for _ in range(count))
        for depth in range(1, len(steps) + 1):
            if steps[:depth] not in memo:
                with np.errstate(invalid="ignore"):  # inf - inf next to an inf input: NaN
                    memo[steps[:depth]] = np.gradient(
                        memo[steps[: depth - 1]], spacing[steps[depth - 1]], axis=steps[depth - 1]
                    )
        results[orders_] = memo[steps]
    if lift != 1.0:
        with np.errstate(over="ignore"):  # a derivative beyond the range is infinite
            results = {key: value * value.dtype.type(lift) for key, value in results.items()}
    return results


def _highest_order(orders) -> int:
    """The highest derivative order among `orders` (tuples of per-axis counts)."""
    return max((sum(order) for order in orders), default=0)


# --------------------------------------------------------------------------- slab engine


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

    ``consume(start, stop, components)`` stores the components of rows
    ``start:stop`` (a dict from order tuples to arrays) into the result.
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

    def compute_slab(start: int, stop: int):
        if filters is None:
            first, last = max(start - halo, 0), min(stop + halo, length)
            extended = np.ascontiguousarray(volume[first:last], dtype=work_dtype)
            components = _difference_components(extended, spacing, orders)
            components = {k: v[start - first : stop - first] for k, v in components.items()}
        else:
            if start - halo >= 0 and stop + halo <= length:
                rows = volume[start - halo : stop + halo]
            else:
                rows = volume[reflect_index(start - halo, stop + halo, length)]
            extended = np.ascontiguousarray(rows, dtype=work_dtype)
            components = _gaussian_components(extended, halo, filters, orders)
        if check_finite and not np.isfinite(extended).all():
            for component in components.values():
                component[~np.isfinite(component)] = np.nan
        consume(start, stop, components)

    work = volume.size * cost_per_voxel * work_dtype.itemsize
    parts = task_count(work, length, workers)
    if halo:  # keep slabs at least as thick as the halo when there are enough of them
        parts = max(min(parts, length // halo), min(workers, length))
    tasks = [partial(compute_slab, a, b) for a, b in split_range(length, parts)]
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

    def consume(start, stop, components):
        if magnitude:
            squares = sum(np.square(components[o], dtype=np.float64) for o in orders)
            out[start:stop] = np.sqrt(squares)
        else:
            for axis, orders_ in enumerate(orders):
                out[start:stop, ..., axis] = components[orders_]

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
    out = np.empty((*volume.shape, ndim, ndim), check.result_float_dtype(volume.dtype))

    def consume(start, stop, components):
        for (i, j), orders in pairs:
            out[start:stop, ..., i, j] = components[orders]
            out[start:stop, ..., j, i] = components[orders]

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
    solver = (
        _kernels.symmetric3_eigenvalues_interleaved
        if ndim == 3
        else _kernels.symmetric2_eigenvalues_interleaved
    )

    def consume(start, stop, components):
        flat = [components[orders].reshape(-1) for _, orders in pairs]
        # straight into the result (a view: `out` is C-contiguous), block by block
        solver(*flat, order_code, out[start:stop].reshape(-1, ndim))

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
