"""Warm-up calls: small computations that reach the kernels of an operation for a dtype.

Run in the compiler process they compile those kernels into numba's disk cache; run in
any other process they load them from there (milliseconds each), so that the user's own
calls find them ready. A kernel is compiled for its argument types (dtype, number of
dimensions, layout, read-only or not, and the line length of the short-line kernels),
not for sizes, so small arrays reach the same kernels as large ones of the same kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: Operations that can be warmed up, as the panels and the batch command name them.
OPERATIONS = ("statistics", "norms", "density", "masking", "gradient", "hessian", "vesselness")
#: The dtypes warmed up when none are given: those of most microscopy images.
DEFAULT_DTYPES = ("uint8", "uint16", "float32", "float64")
#: Short line lengths (a stack reduced along its last axis; one kernel per length up to 16)
#: warmed up when the caller names none.
DEFAULT_LINE_LENGTHS = (2, 3, 4, 5, 8)


def check_operations(operations) -> list[str]:
    """`operations` (None: all) as a list of known names."""
    if operations is None:
        return list(OPERATIONS)
    if isinstance(operations, str):
        operations = [operations]
    names = [str(name) for name in operations]
    for name in names:
        if name not in OPERATIONS:
            raise ValueError(f"operations: unknown operation {name!r}; choose from {OPERATIONS}")
    return names


def check_dtypes(dtypes) -> list[str]:
    """`dtypes` (None: :data:`DEFAULT_DTYPES`) as a list of NumPy dtype names."""
    if dtypes is None:
        return list(DEFAULT_DTYPES)
    if isinstance(dtypes, str | np.dtype | type):
        dtypes = [dtypes]
    names = []
    for dtype in dtypes:
        try:
            name = np.dtype(dtype).name
        except TypeError as error:
            raise TypeError(f"dtypes: {dtype!r} is not a NumPy dtype") from error
        if np.dtype(name).kind not in "biuf":
            raise TypeError(f"dtypes: {name} is not a real number dtype")
        names.append(name)
    return names


def _data(shape, dtype) -> np.ndarray:
    values = (np.arange(int(np.prod(shape))) % 7).reshape(shape)
    return values.astype(dtype)


def _statistics(dtype, line_lengths) -> list[Callable[[], object]]:
    from .statistics import STATISTICS, axis_statistic

    floats = np.dtype(dtype).kind == "f"
    stack = _data((4, 5, 19), dtype)
    calls = []
    for statistic in STATISTICS:
        for skipna in (False, True) if floats else (False,):
            for axis in (0, 1, 2):
                for data in (stack, stack[:, ::2]):
                    calls.append(
                        lambda s=statistic, d=data, a=axis, n=skipna: axis_statistic(
                            d, s, axis=a, skipna=n, workers=1
                        )
                    )
            for length in line_lengths:
                lines = _data((3, length), dtype)
                calls.append(
                    lambda s=statistic, d=lines, n=skipna: axis_statistic(
                        d, s, axis=-1, skipna=n, workers=1
                    )
                )
    return calls


def _norms(dtype, line_lengths) -> list[Callable[[], object]]:
    from .statistics import frame_norms

    stack = _data((4, 5, 6), dtype)
    return [
        lambda o=order, a=axis, d=data: frame_norms(d, axis=a, ord=o, workers=1)
        for order in (2, 1, np.inf, 3, 2.5)
        for axis in (0, 1, 2)
        for data in (stack, stack[:, ::2])
    ]


def _density(dtype, line_lengths) -> list[Callable[[], object]]:
    from .density import density_map

    calls = []
    for shape in ((12, 14), (6, 12, 14), (3, 6, 8, 8)):
        image = _data(shape, dtype)
        for mode in ("block", "sliding"):
            for edge in ("trim", "pad") if mode == "block" else ("trim",):
                for threshold in (0, 2.5, -1):
                    for window in (3, (2, 3)):
                        calls.append(
                            lambda i=image, w=window, m=mode, t=threshold, e=edge: density_map(
                                i, w, m, t, e, workers=1
                            )
                        )
    return calls


def _masking(dtype, line_lengths) -> list[Callable[[], object]]:
    from .masking import apply_mask, mask_filter

    image = _data((4, 6, 7), dtype)
    inside = image > 2
    points = _data((5, 6, 3), dtype)
    selected = points[..., 0] > 2
    calls = [lambda: apply_mask(image, inside, workers=1)]
    calls.append(lambda: apply_mask(image, inside[0], workers=1))
    calls.append(lambda: apply_mask(image[:, ::2], inside[:, ::2], workers=1))
    calls.append(lambda: mask_filter(points, selected, workers=1))
    calls.append(lambda: mask_filter(points[..., 0], selected, workers=1))
    return calls


def _gradient(dtype, line_lengths) -> list[Callable[[], object]]:
    from .differential import gradient_magnitude, gradient_vectors

    calls = []
    for shape in ((9, 10), (7, 9, 10)):
        volume = _data(shape, dtype)
        for sigma in (None, 1.0):
            calls.append(lambda v=volume, s=sigma: gradient_vectors(v, sigma=s, workers=1))
            calls.append(lambda v=volume, s=sigma: gradient_magnitude(v, sigma=s, workers=1))
    return calls


def _hessian(dtype, line_lengths) -> list[Callable[[], object]]:
    from .differential import frangi_vesselness, hessian_eigenvalues, hessian_matrix

    calls = []
    for shape in ((9, 10), (7, 9, 10)):
        volume = _data(shape, dtype)
        for sigma in (None, 1.0):
            calls.append(lambda v=volume, s=sigma: hessian_matrix(v, sigma=s, workers=1))
            for order in ("descending", "ascending", "abs"):
                calls.append(
                    lambda v=volume, s=sigma, o=order: frangi_vesselness(
                        hessian_eigenvalues(v, sigma=s, order=o, workers=1), workers=1
                    )
                )
    return calls


def _vesselness(dtype, line_lengths) -> list[Callable[[], object]]:
    from .ridges import vesselness

    calls = []
    for shape in ((9, 10), (7, 9, 10)):
        volume = _data(shape, dtype)
        for method in ("frangi", "sato"):
            calls.append(
                lambda v=volume, m=method: vesselness(
                    v, [1.0], method=m, return_scale=True, workers=1
                )
            )
    return calls


_RECIPES = {
    "statistics": _statistics,
    "norms": _norms,
    "density": _density,
    "masking": _masking,
    "gradient": _gradient,
    "hessian": _hessian,
    "vesselness": _vesselness,
}


def run(
    operations: Sequence[str], dtypes: Sequence[str], line_lengths=DEFAULT_LINE_LENGTHS
) -> None:
    """Run the warm-up calls of `operations` for `dtypes`."""
    for operation in operations:
        for dtype in dtypes:
            for call in _RECIPES[operation](np.dtype(dtype), tuple(line_lengths)):
                call()
