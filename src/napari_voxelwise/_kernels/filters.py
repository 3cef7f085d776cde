"""Derivative filters: correlation with Gaussian derivative kernels, finite differences,
and the gathering of their components (``interleave``, ``vector_norms``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._intrinsics import _JIT, _JIT_CONTRACT

# Inner-axis elements per chunk of `correlate_lines` (8 KiB of float32).
_CORRELATE_CHUNK = 2048


@njit(**_JIT_CONTRACT)
def correlate_lines(src, half, parity, index, dst):
    """Correlate along axis 1 with a symmetric or antisymmetric kernel.

    ``dst[a, i, b] = sum_m w[m] * src[a, index[i + r + m], b]`` for ``m`` in
    ``-r..r``, where ``w[m] = half[m]`` for ``m >= 0`` and
    ``w[-m] = parity * half[m]``. ``index`` (length ``N + 2r``) maps the
    extended line onto rows of ``src``: the identity for a "valid" pass over a
    slab with halo, or a reflection for scipy's ``mode="reflect"``.

    The inner loops run over 1-D contiguous views with non-negative indices,
    which is what lets LLVM vectorise them.
    """
    n_outer, n, n_inner = dst.shape
    r = half.shape[0] - 1
    if n_inner == 1:  # contiguous lines: gather one extended line, then shifted sums
        line = np.empty(n + 2 * r, dst.dtype)
        acc = np.empty(n, dst.dtype)
        for a in range(n_outer):
            for k in range(n + 2 * r):
                line[k] = src[a, index[k], 0]
            centre = line[r : r + n]
            for i in range(n):
                acc[i] = half[0] * centre[i]
            for m in range(1, r + 1):
                w = half[m]
                above = line[r + m : r + m + n]
                below = line[r - m : r - m + n]
                if parity > 0:
                    for i in range(n):
                        acc[i] += w * (above[i] + below[i])
                else:
                    for i in range(n):
                        acc[i] += w * (above[i] - below[i])
            out = dst[a, :, 0]
            for i in range(n):
                out[i] = acc[i]
        return
    # rows of a middle axis: vectorise along the inner axis, in chunks that keep
    # the output row in L1 cache while the 2r + 1 input rows stream through
    chunk = _CORRELATE_CHUNK
    for a in range(n_outer):
        for b0 in range(0, n_inner, chunk):
            b1 = min(b0 + chunk, n_inner)
            width = b1 - b0
            for i in range(n):
                out = dst[a, i, b0:b1]
                centre = src[a, index[i + r], b0:b1]
                for b in range(width):
                    out[b] = half[0] * centre[b]
                for m in range(1, r + 1):
                    w = half[m]
                    above = src[a, index[i + r + m], b0:b1]
                    below = src[a, index[i + r - m], b0:b1]
                    if parity > 0:
                        for b in range(width):
                            out[b] += w * (above[b] + below[b])
                    else:
                        for b in range(width):
                            out[b] += w * (above[b] - below[b])


@njit(inline="always", **_JIT)
def _difference(up, down, weight):
    """``(up - down) * weight / 2`` without overflow in ``up - down``; NaN if either is not finite.

    Halving first keeps ``x - (-x)`` near the largest float finite (halving is exact
    above the subnormals); ``(v - v)`` is 0 for a finite ``v`` and NaN for inf or NaN.
    """
    a = np.float64(up)
    b = np.float64(down)
    return (0.5 * a - 0.5 * b) * weight + ((a - a) + (b - b))


@njit(**_JIT)
def difference_lines(src, lo, scale, dst):
    """Finite-difference derivative along axis 1 of ``src`` (outer, n, inner), as np.gradient.

    ``dst[a, i, b]`` is the derivative at row ``lo + i`` of ``src``: central,
    ``(src[k + 1] - src[k - 1]) * scale / 2``, inside, one-sided
    (``(src[1] - src[0]) * scale``, and likewise at ``n - 1``) at the first and last
    rows, with ``scale`` the inverse sample spacing. Computed in float64, so a
    float32 difference cannot overflow; a derivative next to an inf or NaN sample is
    NaN (never inf). ``n >= 2``; both arrays C-contiguous; the rows of ``dst`` must
    lie inside ``src`` and have their neighbours there (or be its first or last row).
    """
    n_outer, rows, n_inner = dst.shape
    n = src.shape[1]
    edge = 2.0 * scale
    first, last = max(lo, 1), min(lo + rows, n - 1)  # the rows with central differences
    if n_inner == 1:  # along the last axis: flat indices, so that LLVM sees unit strides
        flat_src = src.reshape(src.shape[0] * n)
        flat_dst = dst.reshape(n_outer * rows)
        for a in range(n_outer):
            line = flat_src[a * n : (a + 1) * n]
            out = flat_dst[a * rows : (a + 1) * rows]
            if lo == 0:
                out[0] = _difference(line[1], line[0], edge)
            if lo + rows == n:
                out[rows - 1] = _difference(line[n - 1], line[n - 2], edge)
            # shifted views: indices from 0 up, which LLVM vectorises
            above = line[first + 1 : last + 1]
            below = line[first - 1 : last - 1]
            centre = out[first - lo : last - lo]
            for i in range(last - first):
                centre[i] = _difference(above[i], below[i], scale)
        return
    for a in range(n_outer):
        for i in range(rows):
            k = lo + i
            if k == 0:
                up, down, weight = 1, 0, edge
            elif k == n - 1:
                up, down, weight = n - 1, n - 2, edge
            else:
                up, down, weight = k + 1, k - 1, scale
            above = src[a, up]
            below = src[a, down]
            out = dst[a, i]
            for b in range(n_inner):
                out[b] = _difference(above[b], below[b], weight)


@njit(**_JIT)
def interleave(parts, out):
    """``out[j, c] = parts[c][j]``: 1-D components (a tuple of equal arrays) side by side.

    Writes a slab of gradient vectors or Hessian matrices into the result, whose
    components are its last axis (or two), where NumPy's strided copy per
    component took 4x longer.
    """
    m = len(parts)
    for j in range(out.shape[0]):  # row by row: 1.5x (3 parts) to 4x (9) faster than by part
        for c in range(m):
            out[j, c] = parts[c][j]


@njit(**_JIT)
def vector_norms(parts, out):
    """``out[j] = sqrt(sum_c parts[c][j] ** 2)`` in float64: the length of each vector."""
    m = len(parts)
    for j in range(out.shape[0]):  # one pass (2x faster than a pass per part, then sqrt)
        squares = 0.0
        for c in range(m):
            value = np.float64(parts[c][j])
            squares += value * value
        out[j] = np.sqrt(squares)
