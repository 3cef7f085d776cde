"""Mean, variance, std, cv and sum of each line of a C-contiguous (outer, n) array.

The layout of a stack reduced along its last axis: ``moment_statistic_lines`` for any
length, ``moment_statistic_short_lines`` for lines of up to `SHORT_LINES` values (one
compiled kernel per length). Exact integer lines are in `integer_moments`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import STAT_MEAN, STAT_STD, STAT_SUM, STAT_VAR
from ._intrinsics import (
    _JIT_CONTRACT,
    _JIT_REASSOC,
    _borrowed,
    _is_float32,
    _line_step,
    _prefetched_lines,
)
from .moments import _careful_moment, _finish_moment, _suspect, _tile_variance


@njit(**_JIT_REASSOC)
def moment_statistic_lines(x, o0, o1, ddof, stat, out):
    """A moment statistic (``stat``) of each line of a C-contiguous ``x`` of shape (outer, n).

    Each line is read from the flat array (a unit stride LLVM can see) and its
    shifted sums are reassociated, so that LLVM vectorises them over several
    accumulators: 4x to 5x faster than one serial float64 sum, to within 2e-15
    of it. The deviation ``d`` has two uses (the sum and the sum of squares), so
    reassociation cannot merge ``x - shift`` into the running sum and lose the shift.
    """
    x, out = _borrowed(x), _borrowed(out)
    n = x.shape[1]
    shifted = stat != STAT_MEAN and stat != STAT_SUM
    flat = x.reshape(x.shape[0] * n)
    for o in range(o0, o1):
        line = flat[o * n : (o + 1) * n]
        total = 0.0
        if not shifted:  # the mean and the sum: no squares (22% faster on lines of 256)
            for i in range(n):
                total += line[i]
            out[o] = _finish_moment(stat, 0.0, total, 0.0, n, ddof)
            continue
        shift = np.float64(line[0])
        squares = 0.0
        for i in range(n):  # the first sample adds 0 (NaN if inf)
            d = line[i] - shift
            total += d
            squares += d * d
        result = _finish_moment(stat, shift, total, squares, n, ddof)
        if not abs(result) < np.inf and abs(shift) < np.inf:
            result = _careful_moment(line, stat, ddof)
        out[o] = result


@njit(inline="always", **_JIT_CONTRACT)
def _shifted_line_sums(lines, j, n):
    """(first sample, sum and sum of squares of the deviations from it) of line ``j`` of
    `lines` (flat, lines of ``n``) in float64; the first sample adds 0 (NaN if inf)."""
    k = np.float64(lines[j * n])
    t = 0.0
    q = 0.0
    for i in range(n):
        d = lines[j * n + i] - k
        t += d
        q += d * d
    return k, t, q


_INF32 = np.float32(np.inf)


@njit(inline="always", **_JIT_CONTRACT)
def _float32_line_variance(lines, j, n, inverse_n, inverse_dof):
    """The variance of line ``j`` of float32 `lines` (flat, lines of ``n``), in float32
    arithmetic (`inverse_n` and `inverse_dof` float32 too): no conversions, eight lines
    per 256-bit vector, 2x faster than the float64 sums in cache.

    Two passes over the deviations from the first sample, their mean first, so that
    nothing cancels: within about ``n + 2`` float32 rounding errors (the deviations
    are exact where a sample lies within a factor of 2 of the first), the precision
    of the float32 result. The first sample adds 0 (NaN if inf).
    """
    k = lines[j * n]
    zero = k - k  # the first sample's deviation (NaN if inf), without a load to transpose
    t = zero
    for i in range(1, n):
        t += lines[j * n + i] - k
    mean = t * inverse_n
    e = zero - mean
    q = e * e
    for i in range(1, n):
        e = (lines[j * n + i] - k) - mean
        q += e * e
    return q * inverse_dof


@njit(**_JIT_CONTRACT)
def moment_statistic_short_lines(x, lanes, o0, o1, ddof, stat, out):
    """As `moment_statistic_lines` for a C-contiguous ``x`` of shape (outer, n), n <= 16.

    ``lanes`` is any tuple of length ``n``: its length is part of the compiled
    type, so each line length gets its own kernel, where the loop along a line
    is unrolled and LLVM vectorises across lines (interleaved loads). The lines
    are read from the flat array, so that their stride is that constant: with a
    2D array's run-time stride LLVM vectorised only for a stride of 1 and ran
    the scalar loop (1.5x slower for float32, 1.7x for uint16). Each line's
    statistic is written as soon as its sums are: storing a tile of sums for a
    finishing loop to read back had cost 6% to 17% on 512 MiB of lines of 5 and 8
    float32 values. The variance of float32 lines comes from `_float32_line_variance`;
    every other statistic and dtype from float64 sums (shifted by the first sample but
    for the mean and the sum; the std too, whose float32 result is normal where the
    variance's is not: values spread by 1e-20 have a subnormal float32 variance). The
    lines are read in tiles of about 1 KiB (`_prefetched_lines`); per tile, those whose
    variance is not finite although their first sample is are redone in float64 by
    `_careful_moment` (see `_suspect`).
    """
    x, out = _borrowed(x), _borrowed(out)
    n = len(lanes)
    flat = x.reshape(x.shape[0] * n)
    shifted = stat != STAT_MEAN and stat != STAT_SUM
    inverse_dof = 1.0 / (n - ddof) if shifted else 1.0
    inverse_n32 = np.float32(1.0 / n)
    inverse_dof32 = np.float32(inverse_dof)
    in_float32 = _is_float32(x) and stat == STAT_VAR
    step = _line_step(n, x.itemsize)
    for t0 in range(o0, o1, step):
        lines, target = _prefetched_lines(flat, out, t0, min(t0 + step, o1), n)
        m = target.shape[0]
        if not shifted:
            for j in range(m):
                t = 0.0
                for i in range(n):
                    t += np.float64(lines[j * n + i])
                target[j] = t if stat == STAT_SUM else t / n
            continue
        suspects = 0
        if in_float32:  # a loop per statistic: LLVM would not split one by `stat`
            for j in range(m):
                target[j] = _float32_line_variance(lines, j, n, inverse_n32, inverse_dof32)
            flags = np.int32(0)  # any variance not finite? (each line's `_suspect` tested
            for j in range(m):  # in the loop above cost 40%)
                flags |= np.int32(not target[j] < _INF32)
            suspects = flags
        elif stat == STAT_VAR:
            for j in range(m):
                k, t, q = _shifted_line_sums(lines, j, n)
                var = _tile_variance(k, t, q, n, inverse_dof)
                suspects += _suspect(var, k)
                target[j] = var
        elif stat == STAT_STD:
            for j in range(m):
                k, t, q = _shifted_line_sums(lines, j, n)
                var = _tile_variance(k, t, q, n, inverse_dof)
                suspects += _suspect(var, k)
                target[j] = math.sqrt(var)
        else:
            for j in range(m):
                k, t, q = _shifted_line_sums(lines, j, n)
                var = _tile_variance(k, t, q, n, inverse_dof)
                suspects += _suspect(var, k)
                target[j] = math.sqrt(var) / (k + t / n)
        if suspects:
            for j in range(m):
                if _suspect(np.float64(target[j]), np.float64(lines[j * n])):
                    target[j] = _careful_moment(x[t0 + j], stat, ddof)
