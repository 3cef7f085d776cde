"""Multi-scale vesselness: one scale's response folded into a running maximum.

Each call takes one scale's Hessian components (flat, as the slab engine
gives them), solves every voxel's eigenvalues in closed form, evaluates
Frangi's or Sato's measure and keeps the larger of it and the response so far
(and the scale it came from): no stack of scales is ever stored.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import ORDER_ABS, ORDER_ASCENDING, ORDER_DESCENDING
from ._intrinsics import _JIT
from .eigenvalues import _EIGEN_BLOCK, symmetric2_eigenvalues, symmetric3_eigenvalues

#: method codes of the kernels
FRANGI, SATO = 0, 1


@njit(inline="always", **_JIT)
def _floor(value):
    """``max(value, 1e-10)``: Frangi's eigenvalues of the wrong sign count as tiny."""
    return value if value > 1e-10 else 1e-10


@njit(inline="always", **_JIT)
def _positive(value):
    return value if value > 0.0 else 0.0


@njit(inline="always", **_JIT)
def _keep(response, best, k, value, sigma, track):
    """Fold `value` into the running maximum at `k`; NaN stays NaN."""
    before = response[k]
    if value > before or value != value:
        response[k] = value
        if track:  # compared as stored: a value rounding to the old one changes nothing
            after = response[k]
            if after != after:
                best[k] = np.nan
            elif after > before:
                best[k] = sigma


@njit(inline="always", **_JIT)
def _order(method, factor):
    """Eigenvalue order for `method`: by magnitude (Frangi), or descending after the
    ridge sign in `factor` (Sato)."""
    if method == FRANGI:
        return ORDER_ABS
    return ORDER_DESCENDING if factor > 0.0 else ORDER_ASCENDING


@njit(**_JIT)
def vesselness3_update(
    h00, h01, h02, h11, h12, h22, factor, method, alpha, beta, gamma, sigma, response, best
):
    """Fold one scale's 3D vesselness into ``response`` (and ``best``, if not empty).

    ``factor`` multiplies the eigenvalues: the scale normalisation ``sigma**2``,
    negative for bright ridges. Frangi: ``(1 - exp(-Ra^2 / 2 alpha^2)) exp(-Rb^2 /
    2 beta^2) (1 - exp(-S^2 / 2 gamma^2))`` on eigenvalues sorted by magnitude;
    Sato: the geometric mean of the two largest, clipped at 0.
    """
    total = response.shape[0]
    track = best.shape[0] > 0
    first = np.empty(_EIGEN_BLOCK, np.float64)
    second = np.empty(_EIGEN_BLOCK, np.float64)
    third = np.empty(_EIGEN_BLOCK, np.float64)
    order = _order(method, factor)
    plate_scale = -1.0 / (2.0 * alpha * alpha)
    blob_scale = -1.0 / (2.0 * beta * beta)
    structure_scale = -1.0 / (2.0 * gamma * gamma)
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
            l1 = first[k] * factor
            l2 = second[k] * factor
            l3 = third[k] * factor
            if method == FRANGI:
                lambda2 = _floor(l2)
                lambda3 = _floor(l3)
                plate_ratio = lambda2 / lambda3
                blob_squared = l1 * l1 / (lambda2 * lambda3)
                value = (1.0 - np.exp(plate_scale * plate_ratio * plate_ratio)) * np.exp(
                    blob_scale * blob_squared
                )
                value *= 1.0 - np.exp(structure_scale * (l1 * l1 + l2 * l2 + l3 * l3))
            else:
                value = np.sqrt(_positive(l1) * _positive(l2)) if l1 == l1 else np.nan
            _keep(response, best, start + k, value, sigma, track)


@njit(**_JIT)
def vesselness2_update(h00, h01, h11, factor, method, alpha, beta, gamma, sigma, response, best):
    """`vesselness3_update` of 2D Hessians (no plate term; Sato: the largest eigenvalue)."""
    total = response.shape[0]
    track = best.shape[0] > 0
    first = np.empty(_EIGEN_BLOCK, np.float64)
    second = np.empty(_EIGEN_BLOCK, np.float64)
    order = _order(method, factor)
    blob_scale = -1.0 / (2.0 * beta * beta)
    structure_scale = -1.0 / (2.0 * gamma * gamma)
    for start in range(0, total, _EIGEN_BLOCK):
        stop = min(start + _EIGEN_BLOCK, total)
        n = stop - start
        symmetric2_eigenvalues(
            h00[start:stop], h01[start:stop], h11[start:stop], order, first[:n], second[:n]
        )
        for k in range(n):
            l1 = first[k] * factor
            l2 = second[k] * factor
            if method == FRANGI:
                lambda2 = _floor(l2)
                value = np.exp(blob_scale * l1 * l1 / (lambda2 * lambda2))
                value *= 1.0 - np.exp(structure_scale * (l1 * l1 + l2 * l2))
            else:
                value = _positive(l1) if l1 == l1 else np.nan
            _keep(response, best, start + k, value, sigma, track)


@njit(**_JIT)
def squared_norm_max3(h00, h01, h02, h11, h12, h22):
    """Largest squared Frobenius norm of the symmetric 3x3 matrices (NaN skipped; 0 if none)."""
    largest = 0.0
    for k in range(h00.shape[0]):
        a = np.float64(h00[k])
        b = np.float64(h11[k])
        c = np.float64(h22[k])
        d = np.float64(h01[k])
        e = np.float64(h02[k])
        f = np.float64(h12[k])
        value = a * a + b * b + c * c + 2.0 * (d * d + e * e + f * f)
        if value > largest:
            largest = value
    return largest


@njit(**_JIT)
def squared_norm_max2(h00, h01, h11):
    """Largest squared Frobenius norm of the symmetric 2x2 matrices (NaN skipped; 0 if none)."""
    largest = 0.0
    for k in range(h00.shape[0]):
        a = np.float64(h00[k])
        b = np.float64(h01[k])
        c = np.float64(h11[k])
        value = a * a + c * c + 2.0 * b * b
        if value > largest:
            largest = value
    return largest
