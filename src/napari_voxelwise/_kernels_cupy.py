"""Fused CuPy kernels of the portable path: imported only when it runs on CuPy.

The portable path (:mod:`napari_voxelwise._portable`) is a chain of element-wise
array operations; on a GPU each is one kernel launch and one trip through device
memory. Two chains are fused into one kernel each:

* the closed-form eigenvalues of symmetric 2x2 and 3x3 matrices: an
  ``ElementwiseKernel`` that follows ``_portable._eigenvalues2`` and
  ``_eigenvalues3`` step by step (same scaling, shift, clipping and
  trigonometric formula; CUDA's ``cos`` where the portable path uses a Taylor
  polynomial), returning the eigenvalues in descending order as those do;
* Frangi's measure: ``cupy.fuse`` of :func:`_portable.frangi_measure` itself,
  the function NumPy runs.

``_portable.FUSED = False`` turns them off (the unfused portable path on CuPy).
"""

from __future__ import annotations

import cupy

from . import _portable

_EIGENVALUES2 = cupy.ElementwiseKernel(
    "T a, T b, T c",
    "float64 first, float64 second",
    """
    double half_a = (double)a * 0.5, half_c = (double)c * 0.5, off = (double)b;
    double mean = half_a + half_c;
    double radius = hypot(half_a - half_c, off);
    mean += mean * 0.0 + off * 0.0;  // NaN where an entry is inf or NaN
    first = mean + radius;
    second = mean - radius;
    """,
    "napari_voxelwise_eigenvalues2",
)

_EIGENVALUES3 = cupy.ElementwiseKernel(
    "T a0, T d0, T e0, T b0, T f0, T c0",
    "float64 largest, float64 second, float64 smallest",
    """
    double a = a0, d = d0, e = e0, b = b0, f = f0, c = c0;
    double scale = fabs(a);
    double entries[5] = {fabs(d), fabs(e), fabs(b), fabs(f), fabs(c)};
    for (int k = 0; k < 5; ++k) {
        scale = (isnan(entries[k]) || entries[k] > scale) ? entries[k] : scale;  // NaN wins
    }
    scale = isnan(scale) ? scale : fmax(scale, 1e-300);
    double poison = scale - scale;
    double inverse = 1.0 / scale;
    a *= inverse; d *= inverse; e *= inverse; b *= inverse; f *= inverse; c *= inverse;
    double q = (a + b + c) * (1.0 / 3.0);
    a -= q; b -= q; c -= q;
    double p2 = (a * a + b * b + c * c + 2.0 * (d * d + e * e + f * f)) * (1.0 / 6.0);
    double p = sqrt(p2);
    double det = a * (b * c - f * f) - d * (d * c - f * e) + e * (d * f - b * e);
    double cube = 2.0 * p2 * p;
    cube += (cube == 0.0);
    double r = fmin(fmax(det / cube, -1.0), 1.0);
    r = isnan(det / cube) ? det / cube : r;
    double cosine = cos(acos(r) * (1.0 / 3.0));
    double sine = sqrt(1.0 - cosine * cosine);
    cosine *= p;
    sine *= p * sqrt(3.0);
    q += poison;
    double middle = q - cosine;
    double top = (q + 2.0 * cosine) * scale;
    double next = (middle + sine) * scale;
    largest = (isnan(top) || isnan(next)) ? top + next : fmax(top, next);
    second = (isnan(top) || isnan(next)) ? top + next : fmin(top, next);
    smallest = (middle - sine) * scale;
    """,
    "napari_voxelwise_eigenvalues3",
)


def eigenvalues2(xp, a, b, c):
    """Descending eigenvalues of [[a, b], [b, c]] (float64), as ``_portable._eigenvalues2``."""
    return _EIGENVALUES2(a, b, c)


def eigenvalues3(xp, a, d, e, b, f, c):
    """Descending eigenvalues of [[a, d, e], [d, b, f], [e, f, c]] (float64), as
    ``_portable._eigenvalues3``."""
    return _EIGENVALUES3(a, d, e, b, f, c)


def _fused_measure2(lambda1, lambda2, alpha, beta, gamma):
    return _portable.frangi_measure(cupy, lambda1, lambda2, alpha, beta, gamma)


def _fused_measure3(lambda1, lambda2, lambda3, alpha, beta, gamma):
    return _portable.frangi_measure(cupy, lambda1, lambda2, lambda3, alpha, beta, gamma)


_MEASURES = {2: cupy.fuse(_fused_measure2), 3: cupy.fuse(_fused_measure3)}


def frangi_measure(count: int):
    """:func:`_portable.frangi_measure` for `count` eigenvalues, fused into one kernel
    (called as ``measure(xp, *ranked, alpha, beta, gamma)``)."""
    fused = _MEASURES[count]
    return lambda xp, *arguments: fused(*arguments)
