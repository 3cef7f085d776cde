"""Closed-form eigenvalues of symmetric 2x2 and 3x3 matrices (Hessians), vectorised.

The order codes ``ORDER_*`` are in :mod:`napari_voxelwise._kernels`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import ORDER_ABS, ORDER_ASCENDING
from ._intrinsics import _JIT, _JIT_CONTRACT


def _cos_third_coefficients(degree: int = 16) -> tuple[float, ...]:  # `_cos_third` needs 16
    """Polynomial ``P(w)``, highest power first, with ``P(2u - 1) = cos(2/3 * arccos(u))``.

    ``cos(arccos(r) / 3)`` is what the trigonometric 3x3 eigenvalue formula
    needs; with ``u = sqrt((1 + r) / 2)`` it is analytic on ``0 <= u <= 1``,
    so a degree-16 Chebyshev fit is accurate to about 2e-15, and evaluating it
    needs no ``acos`` or ``cos`` call: the eigenvalue loop vectorises.
    """
    from numpy.polynomial import chebyshev

    u = 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, 4001))
    fit = chebyshev.chebfit(2 * u - 1, np.cos(2 / 3 * np.arccos(u)), degree)
    return tuple(float(c) for c in chebyshev.cheb2poly(fit)[::-1])


_COS_THIRD = _cos_third_coefficients()


_HALF_SQRT3 = math.sqrt(3.0) / 2.0


@njit(inline="always", **_JIT)
def _cos_third(w):
    """``cos(arccos(r) / 3)`` from ``w = 2 * sqrt((1 + r) / 2) - 1`` (Horner form)."""
    c = _COS_THIRD  # unrolled Horner (a loop over the tuple would stop vectorisation)
    r = c[0] * w + c[1]
    r = (r * w + c[2]) * w + c[3]
    r = (r * w + c[4]) * w + c[5]
    r = (r * w + c[6]) * w + c[7]
    r = (r * w + c[8]) * w + c[9]
    r = (r * w + c[10]) * w + c[11]
    r = (r * w + c[12]) * w + c[13]
    r = (r * w + c[14]) * w + c[15]
    return r * w + c[16]


@njit(inline="always", **_JIT)
def _larger(x, y):
    return x if x > y else y


@njit(inline="always", **_JIT)
def _smaller(x, y):
    return x if x < y else y


@njit(inline="always", **_JIT)
def _closer_to_zero_first(x, y):
    """(x, y) ordered by absolute value, as selects."""
    keep = abs(x) <= abs(y)
    return (x if keep else y), (y if keep else x)


@njit(inline="always", **_JIT)
def _order3(e1, e2, e3, order):
    """Sort three eigenvalues into the requested order (selects only, no branches)."""
    # descending: a sorting network of three compare-swaps
    e1, e2 = _larger(e1, e2), _smaller(e1, e2)
    e2, e3 = _larger(e2, e3), _smaller(e2, e3)
    e1, e2 = _larger(e1, e2), _smaller(e1, e2)
    if order == ORDER_ASCENDING:
        return e3, e2, e1
    if order == ORDER_ABS:
        e1, e2 = _closer_to_zero_first(e1, e2)
        e2, e3 = _closer_to_zero_first(e2, e3)
        e1, e2 = _closer_to_zero_first(e1, e2)
    return e1, e2, e3


@njit(**_JIT_CONTRACT)
def symmetric3_eigenvalues(h00, h01, h02, h11, h12, h22, order, first, second, third):
    """Eigenvalues of symmetric 3x3 matrices given by their six unique entries.

    Closed-form trigonometric solution (Smith 1961) in float64 on the matrix
    scaled by its largest entry (tiny or huge entries lose nothing), with
    ``cos(arccos(r) / 3)`` from a polynomial (see `_cos_third_coefficients`):
    the loop has no branch or library call and vectorises. Inputs are 1-D
    arrays of length M; the eigenvalues go to three contiguous 1-D arrays
    (interleaved stores would stop the vectorisation). A matrix holding NaN
    or inf gives NaN.
    """
    one_third = 1.0 / 3.0
    for k in range(first.shape[0]):
        a = np.float64(h00[k])
        d = np.float64(h01[k])
        e = np.float64(h02[k])
        b = np.float64(h11[k])
        f = np.float64(h12[k])
        c = np.float64(h22[k])
        scale = _larger(
            _larger(_larger(abs(a), abs(b)), _larger(abs(c), abs(d))), _larger(abs(e), abs(f))
        )
        finite = scale < np.inf  # False for inf and NaN
        # 2**64 lifts subnormal entries first, so that 1 / scale cannot overflow
        lift = 18446744073709551616.0 if scale < 1e-290 else 1.0
        inverse = 1.0 / (scale * lift if (scale > 0.0 and finite) else 1.0)
        a = a * lift * inverse
        b = b * lift * inverse
        c = c * lift * inverse
        d = d * lift * inverse
        e = e * lift * inverse
        f = f * lift * inverse
        q = (a + b + c) * one_third
        aq = a - q
        bq = b - q
        cq = c - q
        p2 = aq * aq + bq * bq + cq * cq + 2.0 * (d * d + e * e + f * f)
        p = np.sqrt(p2 * (1.0 / 6.0))
        det = aq * (bq * cq - f * f) - d * (d * cq - f * e) + e * (d * f - bq * e)
        r = det / (2.0 * p * p * p if p2 > 0.0 else 1.0)
        r = _smaller(1.0, _larger(-1.0, r))
        cos_phi = _cos_third(2.0 * np.sqrt(0.5 + 0.5 * r) - 1.0)
        sin_phi = np.sqrt(_larger(1.0 - cos_phi * cos_phi, 0.0))
        e1 = q + 2.0 * p * cos_phi
        e3 = q + 2.0 * p * (-0.5 * cos_phi - _HALF_SQRT3 * sin_phi)
        e2 = 3.0 * q - e1 - e3
        e1, e2, e3 = _order3(e1, e2, e3, order)
        first[k] = e1 * scale if finite else np.nan
        second[k] = e2 * scale if finite else np.nan
        third[k] = e3 * scale if finite else np.nan


@njit(**_JIT_CONTRACT)
def symmetric2_eigenvalues(h00, h01, h11, order, first, second):
    """Eigenvalues of symmetric 2x2 matrices: ``mean +- sqrt(((a - c) / 2)**2 + b**2)``.

    Computed on the matrix scaled by its largest entry (no overflow), into two
    contiguous 1-D arrays; a matrix holding NaN or inf gives NaN.
    """
    for k in range(first.shape[0]):
        a = np.float64(h00[k])
        b = np.float64(h01[k])
        c = np.float64(h11[k])
        scale = _larger(_larger(abs(a), abs(b)), abs(c))
        finite = scale < np.inf
        # 2**64 lifts subnormal entries first, so that 1 / scale cannot overflow
        lift = 18446744073709551616.0 if scale < 1e-290 else 1.0
        inverse = 1.0 / (scale * lift if (scale > 0.0 and finite) else 1.0)
        a = a * lift * inverse
        b = b * lift * inverse
        c = c * lift * inverse
        mean = 0.5 * (a + c)
        half_difference = 0.5 * (a - c)
        radius = np.sqrt(half_difference * half_difference + b * b)
        e1 = (mean + radius) * scale
        e2 = (mean - radius) * scale
        if order == ORDER_ASCENDING:
            e1, e2 = e2, e1
        elif order == ORDER_ABS:
            e1, e2 = _closer_to_zero_first(e1, e2)
        first[k] = e1 if finite else np.nan
        second[k] = e2 if finite else np.nan


# Voxels per block of the interleaving solvers: their scratch stays in L1 cache.
_EIGEN_BLOCK = 512


@njit(**_JIT)
def symmetric3_eigenvalues_interleaved(h00, h01, h02, h11, h12, h22, order, out):
    """`symmetric3_eigenvalues` into ``out`` (M, 3): the layout of a (..., 3) result.

    Solved in blocks of contiguous scratch (which keeps the solver's loop
    vectorised), then interleaved while the block is still in cache: no
    separate transposing pass over the result.
    """
    total = out.shape[0]
    first = np.empty(_EIGEN_BLOCK, out.dtype)
    second = np.empty(_EIGEN_BLOCK, out.dtype)
    third = np.empty(_EIGEN_BLOCK, out.dtype)
    for start in range(0, total, _EIGEN_BLOCK):
        stop = min(start + _EIGEN_BLOCK, total)
        n = stop - start
        symmetric3_eigenvalues(
            h00[start:stop],
            h01[start:stop],
            h02[start:stop],
            h11[start:stop],
            h12[start:stop],
            h22[start:stop],
            order,
            first[:n],
            second[:n],
            third[:n],
        )
        for k in range(n):
            row = out[start + k]
            row[0] = first[k]
            row[1] = second[k]
            row[2] = third[k]


@njit(**_JIT)
def symmetric2_eigenvalues_interleaved(h00, h01, h11, order, out):
    """`symmetric2_eigenvalues` into ``out`` (M, 2), blockwise like the 3x3 version."""
    total = out.shape[0]
    first = np.empty(_EIGEN_BLOCK, out.dtype)
    second = np.empty(_EIGEN_BLOCK, out.dtype)
    for start in range(0, total, _EIGEN_BLOCK):
        stop = min(start + _EIGEN_BLOCK, total)
        n = stop - start
        symmetric2_eigenvalues(
            h00[start:stop], h01[start:stop], h11[start:stop], order, first[:n], second[:n]
        )
        for k in range(n):
            row = out[start + k]
            row[0] = first[k]
            row[1] = second[k]
