"""Numba kernels of the numeric core (CPU).

This module is imported lazily, by the computations that need it, so that
importing the plugin never loads Numba. The kernels are serial and release the
GIL (``nogil``); parallelism comes from :mod:`napari_voxelwise._plan`, which
runs several of them at once on slabs of the data. Each kernel is compiled on
first use for the dtypes it meets and cached on disk.

Every kernel uses IEEE float semantics (``error_model="numpy"``): a division by
zero gives inf or NaN instead of raising.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}
# Reassociation lets LLVM vectorise float sums; NaN and inf keep IEEE behaviour.
_JIT_REASSOC = {**_JIT, "fastmath": {"reassoc", "contract"}}

# Codes of the statistics computed by `moment_statistic`.
STAT_MEAN, STAT_VAR, STAT_STD, STAT_CV, STAT_SUM = 0, 1, 2, 3, 4
# Codes of the eigenvalue orders.
ORDER_DESCENDING, ORDER_ASCENDING, ORDER_ABS = 0, 1, 2
# Codes of the norms computed by `frame_norm_partials`.
NORM_POWER, NORM_SQUARES, NORM_ABS, NORM_MAX = 0, 1, 2, 3


@njit(**_JIT)
def _finish_moment(stat, total, squares, count, ddof):
    """One statistic from a sum, a sum of squared deviations and a count."""
    if stat == STAT_SUM:
        return total
    mean = total / count
    if stat == STAT_MEAN:
        return mean
    dof = count - ddof
    var = squares / dof if dof > 0 else np.nan
    if stat == STAT_VAR:
        return var
    std = math.sqrt(var)
    if stat == STAT_STD:
        return std
    return std / mean


@njit(**_JIT)
def moment_statistic(x, o0, o1, j0, j1, ddof, skipna, stat, out):
    """Mean, variance, std, cv or sum along axis 1 of ``x`` (outer, n, inner).

    Computes ``out[o, j]`` for ``o0 <= o < o1`` and ``j0 <= j < j1`` with a
    two-pass algorithm in float64 over cache-sized tiles of the inner axis:
    the tile is read once for the mean and once more, from cache, for the
    squared deviations. With ``skipna`` NaNs are left out of every sum.
    """
    n = x.shape[1]
    tile = min(2048, max(16, 65536 // n))
    sums = np.empty(tile)
    squares = np.empty(tile)
    counts = np.empty(tile)
    need_squares = stat != STAT_MEAN and stat != STAT_SUM
    for o in range(o0, o1):
        for t0 in range(j0, j1, tile):
            m = min(tile, j1 - t0)
            sums[:m] = 0.0
            squares[:m] = 0.0
            if skipna:
                counts[:m] = 0.0
                for i in range(n):
                    for j in range(m):
                        v = x[o, i, t0 + j]
                        if v == v:
                            sums[j] += v
                            counts[j] += 1.0
            else:
                counts[:m] = n
                for i in range(n):
                    for j in range(m):
                        sums[j] += x[o, i, t0 + j]
            if need_squares:
                for j in range(m):
                    mean = sums[j] / counts[j]
                    for i in range(n):
                        v = x[o, i, t0 + j]
                        if not skipna or v == v:
                            d = v - mean
                            squares[j] += d * d
            for j in range(m):
                out[o, t0 + j] = _finish_moment(stat, sums[j], squares[j], counts[j], ddof)


@njit(**_JIT)
def moment_statistic_lines(x, o0, o1, ddof, skipna, stat, out):
    """As `moment_statistic` for ``x`` of shape (outer, n, 1): one line per output."""
    n = x.shape[1]
    for o in range(o0, o1):
        total = 0.0
        count = 0.0
        for i in range(n):
            v = x[o, i, 0]
            if not skipna or v == v:
                total += v
                count += 1.0
        squares = 0.0
        if stat != STAT_MEAN and stat != STAT_SUM:
            mean = total / count
            for i in range(n):
                v = x[o, i, 0]
                if not skipna or v == v:
                    d = v - mean
                    squares += d * d
        out[o, 0] = _finish_moment(stat, total, squares, count, ddof)


@njit(**_JIT_REASSOC)
def frame_norm_partials(x, o0, o1, j0, j1, kind, power, partial):
    """Accumulate per-frame norm terms of ``x`` (outer, n, inner) into ``partial`` (n,).

    The frame index is axis 1. ``kind`` selects sum of ``|x|**power``, of
    squares, of ``|x|``, or the maximum of ``|x|`` (NaN wins).
    """
    n = x.shape[1]
    for o in range(o0, o1):
        for i in range(n):
            acc = 0.0
            if kind == NORM_MAX:
                acc = partial[i]
                for j in range(j0, j1):
                    a = abs(np.float64(x[o, i, j]))
                    if a > acc or a != a:
                        acc = a
                partial[i] = acc
                continue
            if kind == NORM_SQUARES:
                for j in range(j0, j1):
                    v = np.float64(x[o, i, j])
                    acc += v * v
            elif kind == NORM_ABS:
                for j in range(j0, j1):
                    acc += abs(np.float64(x[o, i, j]))
            else:
                for j in range(j0, j1):
                    acc += abs(np.float64(x[o, i, j])) ** power
            partial[i] += acc


@njit(**_JIT)
def correlate_lines(src, half, parity, index, dst):
    """Correlate along axis 1 with a symmetric or antisymmetric kernel.

    ``dst[a, i, b] = sum_m w[m] * src[a, index[i + r + m], b]`` for ``m`` in
    ``-r..r``, where ``w[m] = half[m]`` for ``m >= 0`` and
    ``w[-m] = parity * half[m]``. ``index`` (length ``N + 2r``) maps the
    extended line onto rows of ``src``: the identity for a "valid" pass over a
    slab with halo, or a reflection for scipy's ``mode="reflect"``.
    """
    n_outer, n, n_inner = dst.shape
    r = half.shape[0] - 1
    if n_inner == 1:
        line = np.empty(n + 2 * r, dst.dtype)
        acc = np.empty(n, dst.dtype)
        for a in range(n_outer):
            for k in range(n + 2 * r):
                line[k] = src[a, index[k], 0]
            w0 = half[0]
            for i in range(n):
                acc[i] = w0 * line[i + r]
            for m in range(1, r + 1):
                w = half[m]
                if parity > 0:
                    for i in range(n):
                        acc[i] += w * (line[i + r + m] + line[i + r - m])
                else:
                    for i in range(n):
                        acc[i] += w * (line[i + r + m] - line[i + r - m])
            for i in range(n):
                dst[a, i, 0] = acc[i]
        return
    for a in range(n_outer):
        for i in range(n):
            c = index[i + r]
            w0 = half[0]
            for b in range(n_inner):
                dst[a, i, b] = w0 * src[a, c, b]
            for m in range(1, r + 1):
                p = index[i + r + m]
                q = index[i + r - m]
                w = half[m]
                if parity > 0:
                    for b in range(n_inner):
                        dst[a, i, b] += w * (src[a, p, b] + src[a, q, b])
                else:
                    for b in range(n_inner):
                        dst[a, i, b] += w * (src[a, p, b] - src[a, q, b])


@njit(**_JIT)
def _order3(e1, e2, e3, order):
    """Sort three eigenvalues into the requested order."""
    # descending first (a sorting network of three compare-swaps)
    if e1 < e2:
        e1, e2 = e2, e1
    if e2 < e3:
        e2, e3 = e3, e2
    if e1 < e2:
        e1, e2 = e2, e1
    if order == ORDER_DESCENDING:
        return e1, e2, e3
    if order == ORDER_ASCENDING:
        return e3, e2, e1
    # ascending absolute value
    if abs(e1) > abs(e2):
        e1, e2 = e2, e1
    if abs(e2) > abs(e3):
        e2, e3 = e3, e2
    if abs(e1) > abs(e2):
        e1, e2 = e2, e1
    return e1, e2, e3


@njit(**_JIT)
def symmetric3_eigenvalues(h00, h01, h02, h11, h12, h22, order, out):
    """Eigenvalues of symmetric 3x3 matrices given by their six unique entries.

    Closed-form trigonometric solution (Smith 1961) in float64 on the matrix
    scaled by its largest entry, so that neither tiny nor huge entries lose
    precision. Inputs are 1-D arrays of length M; ``out`` is (M, 3).
    """
    third = 1.0 / 3.0
    two_pi_3 = 2.0 * math.pi / 3.0
    for k in range(out.shape[0]):
        a = np.float64(h00[k])
        d = np.float64(h01[k])
        e = np.float64(h02[k])
        b = np.float64(h11[k])
        f = np.float64(h12[k])
        c = np.float64(h22[k])
        scale = max(abs(a), abs(b), abs(c), abs(d), abs(e), abs(f))
        if scale == 0.0:
            out[k, 0] = 0.0
            out[k, 1] = 0.0
            out[k, 2] = 0.0
            continue
        if not (scale < np.inf):  # inf or NaN anywhere
            out[k, 0] = np.nan
            out[k, 1] = np.nan
            out[k, 2] = np.nan
            continue
        inv = 1.0 / scale
        a *= inv
        b *= inv
        c *= inv
        d *= inv
        e *= inv
        f *= inv
        q = (a + b + c) * third
        aq = a - q
        bq = b - q
        cq = c - q
        p2 = aq * aq + bq * bq + cq * cq + 2.0 * (d * d + e * e + f * f)
        if p2 <= 0.0:
            e1 = q
            e2 = q
            e3 = q
        else:
            p = math.sqrt(p2 / 6.0)
            det = aq * (bq * cq - f * f) - d * (d * cq - f * e) + e * (d * f - bq * e)
            r = det / (2.0 * p * p * p)
            r = min(1.0, max(-1.0, r))
            phi = math.acos(r) * third
            e1 = q + 2.0 * p * math.cos(phi)
            e3 = q + 2.0 * p * math.cos(phi + two_pi_3)
            e2 = 3.0 * q - e1 - e3
        e1, e2, e3 = _order3(e1 * scale, e2 * scale, e3 * scale, order)
        out[k, 0] = e1
        out[k, 1] = e2
        out[k, 2] = e3


@njit(**_JIT)
def symmetric2_eigenvalues(h00, h01, h11, order, out):
    """Eigenvalues of symmetric 2x2 matrices: ``mean +- hypot((a - c) / 2, b)``."""
    for k in range(out.shape[0]):
        a = np.float64(h00[k])
        b = np.float64(h01[k])
        c = np.float64(h11[k])
        if not (abs(a) < np.inf and abs(b) < np.inf and abs(c) < np.inf):
            out[k, 0] = np.nan
            out[k, 1] = np.nan
            continue
        mean = 0.5 * (a + c)
        radius = math.hypot(0.5 * (a - c), b)
        e1 = mean + radius
        e2 = mean - radius
        if order == ORDER_ASCENDING or (order == ORDER_ABS and abs(e1) > abs(e2)):
            e1, e2 = e2, e1
        out[k, 0] = e1
        out[k, 1] = e2
