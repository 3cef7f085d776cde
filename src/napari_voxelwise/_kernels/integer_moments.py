"""Exact variance, std and cv of integers of at most 16 bits.

``integer_moment_statistic`` along other axes (``n <= EXACT_INTEGER_LINES``),
``integer_moment_statistic_short_lines`` for lines of up to 16 values and
``integer_moment_statistic_paired_lines`` for 16-bit lines of even length read as
uint32 words (``SIGNED_HALVES``). The limits and codes are in
:mod:`napari_voxelwise._kernels`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import EXACT_FLOAT_LINES, STAT_CV, STAT_STD, STAT_VAR
from ._intrinsics import (
    _JIT,
    _JIT_CONTRACT,
    _MOMENT_TILE,
    _borrowed,
    _eight_last_rows,
    _four_rows,
    _line_step,
    _prefetched_lines,
)
from .moments import _eight_values


@njit(**_JIT_CONTRACT)
def _add_integer_rows(x, o, n, t0, m, sums):
    """Add rows ``0 <= i < n`` of ``x[o, :, t0:t0 + m]`` (integers of at most 16 bits) to
    ``sums[:m]`` and their squares to ``sums[T:T + m]`` (``T = _MOMENT_TILE``), exactly.

    In float64, whose integers are exact below 2**53 (see `EXACT_INTEGER_LINES`);
    no shift is needed, since exact sums do not cancel. One written array, as in
    `_add_rows`. (Summing the values in int32 as well was 12-15% slower: its
    conversions compete with the float64 ones for the same execution port.)
    """
    i = 0
    while i + 8 <= n:
        r0, r1, r2, r3 = _four_rows(x, o, i, t0, m)
        r4, r5, r6, r7 = _four_rows(x, o, i + 4, t0, m)
        for j in range(m):
            total, squares = _eight_values(r0, r1, r2, r3, r4, r5, r6, r7, j)
            sums[j] += total
            sums[_MOMENT_TILE + j] += squares
        i += 8
    while i < n:
        r0 = x[o, i, t0 : t0 + m]
        for j in range(m):
            a = np.float64(r0[j])
            sums[j] += a
            sums[_MOMENT_TILE + j] += a * a
        i += 1


@njit(**_JIT_CONTRACT)
def _add_last_integer_rows(x, o, i, t0, m, sums, first, std, n, scale, out):
    """`_add_last_rows` for `integer_moment_statistic` (``n <= EXACT_FLOAT_LINES``): the
    exact variance ``(n * sum(x**2) - sum(x)**2) * scale`` (see `_finish_exact`), or
    if `std` its square root, from the sums and rows ``i..n - 1`` kept in registers
    (256 MiB uint16 stacks of eight, kernel alone: var 23% faster; of five and
    seven, 2x). Fewer than eight rows (`first` only) are made up with row ``i``,
    taken out again (exactly) after."""
    r0, r1, r2, r3, r4, r5, r6, r7 = _eight_last_rows(x, o, i, t0, m, i)
    extra = np.float64(max(0, i + 8 - n))  # copies of row i beyond the first
    if first:
        for j in range(m):
            total, squares = _eight_values(r0, r1, r2, r3, r4, r5, r6, r7, j)
            a = np.float64(r0[j])
            total -= extra * a
            squares -= extra * (a * a)
            var = (squares * n - total * total) * scale
            out[j] = math.sqrt(var) if std else var
    else:
        for j in range(m):
            total, squares = _eight_values(r0, r1, r2, r3, r4, r5, r6, r7, j)
            total += sums[j]
            squares += sums[_MOMENT_TILE + j]
            var = (squares * n - total * total) * scale
            out[j] = math.sqrt(var) if std else var


@njit(**_JIT)
def _finish_exact(stat, totals, squares, shift, m, n, ddof, out):
    """Variance, std or cv of ``m`` voxels from exact sums of values and squares.

    The numerator ``n * sum(x**2) - sum(x)**2`` is exact: in float64 up to
    `EXACT_FLOAT_LINES` values (every product and difference is an integer below
    2**53; 15% faster than converting to int64), in int64 beyond (computed first,
    into ``squares``). So the variance is the exact ratio rounded (within an ulp
    of float64). ``shift``: what the values were shifted by, for the cv's mean.
    One branch-free (vectorised) loop per statistic.
    """
    scale = 1.0 / (n * (n - ddof))
    times, minus = np.float64(n), 1.0  # numerator = squares * times - totals**2 * minus
    if n > EXACT_FLOAT_LINES:
        for j in range(m):
            t = np.int64(totals[j])
            squares[j] = np.int64(squares[j]) * n - t * t
        times, minus = 1.0, 0.0
    if stat == STAT_VAR:
        for j in range(m):
            t = totals[j]
            out[j] = (squares[j] * times - t * t * minus) * scale
    elif stat == STAT_STD:
        for j in range(m):
            t = totals[j]
            out[j] = math.sqrt((squares[j] * times - t * t * minus) * scale)
    else:
        for j in range(m):
            t = totals[j]
            var = (squares[j] * times - t * t * minus) * scale
            out[j] = math.sqrt(var) / (shift[j] + t / n)


@njit(**_JIT)
def integer_moment_statistic(x, o0, o1, j0, j1, ddof, stat, out):
    """The variance, std or cv along axis 1 of ``x`` for integers of at most 16 bits, exactly.

    ``x`` is (outer, n, inner) with ``n <= EXACT_INTEGER_LINES``. The variance
    and the std of up to `EXACT_FLOAT_LINES` rows finish in the loop over the
    last eight rows, or all when fewer (`_add_last_integer_rows`); with eight
    rows or fewer, in steps of eight tiles (10% faster on uint16 than tile by tile).
    """
    n = x.shape[1]
    fused = stat != STAT_CV and n <= EXACT_FLOAT_LINES
    rows = max(n - 8, 0) if fused else n  # those that `_add_integer_rows` adds
    scale = 1.0 / (n * (n - ddof))
    tile = _MOMENT_TILE
    sums = np.empty(2 * tile)
    zeros = np.zeros(tile)
    step = tile if rows > 0 else 8 * tile
    for o in range(o0, o1):
        for t0 in range(j0, j1, step):
            m = min(step, j1 - t0)
            into = out[o, t0 : t0 + m]
            if rows > 0:
                sums[:m] = 0.0
                sums[tile : tile + m] = 0.0
                _add_integer_rows(x, o, rows, t0, m, sums)
            if fused:
                _add_last_integer_rows(
                    x, o, rows, t0, m, sums, rows == 0, stat == STAT_STD, n, scale, into
                )
            else:
                _finish_exact(stat, sums[:tile], sums[tile:], zeros, m, n, ddof, into)


@njit(inline="always", **_JIT)
def _integer_line_sums(lines, j, n):
    """Exact sums of the values and of their squares of line ``j`` of `lines` (flat,
    lines of ``n`` integers of at most 16 bits), both as float64."""
    t = np.int32(0)
    q = 0.0
    for i in range(n):
        v = np.int32(lines[j * n + i])
        t += v
        q += np.float64(v) * v
    return np.float64(t), q


@njit(inline="always", **_JIT)
def _paired_line_sums(words, j, n, flip):
    """`_integer_line_sums` of line ``j`` of 16-bit values read as ``n`` uint32 words
    (each split with a mask and a shift; `flip` as in `integer_moment_statistic_paired_lines`)."""
    t = np.uint32(0)
    q = 0.0
    for i in range(n):
        v = words[j * n + i] ^ flip
        low = v & np.uint32(0xFFFF)
        high = v >> np.uint32(16)
        t += low + high
        a, b = np.float64(low), np.float64(high)
        q += a * a + b * b
    return np.float64(t), q


@njit(inline="always", **_JIT)
def _exact_short_variance(t, q, n, scale):
    """The variance from exact sums of at most 16 values of 16 bits: ``n * q - t**2`` is
    an integer below 2**53, exact in float64 (see `_finish_exact`)."""
    return (q * n - t * t) * scale


@njit(**_JIT)
def integer_moment_statistic_short_lines(x, lanes, o0, o1, ddof, stat, out):
    """`integer_moment_statistic` for a C-contiguous ``x`` of shape (outer, n), n <= 16.

    One compiled kernel per line length, read from the flat array, each line's
    statistic written as soon as its sums are (one loop per statistic), as in
    `moment_statistic_short_lines`.
    """
    x, out = _borrowed(x), _borrowed(out)
    n = len(lanes)
    flat = x.reshape(x.shape[0] * n)
    scale = 1.0 / (n * (n - ddof))
    step = _line_step(n, flat.itemsize)
    for t0 in range(o0, o1, step):
        lines, target = _prefetched_lines(flat, out, t0, min(t0 + step, o1), n)
        m = target.shape[0]
        if stat == STAT_VAR:
            for j in range(m):
                t, q = _integer_line_sums(lines, j, n)
                target[j] = _exact_short_variance(t, q, n, scale)
        elif stat == STAT_STD:
            for j in range(m):
                t, q = _integer_line_sums(lines, j, n)
                target[j] = math.sqrt(_exact_short_variance(t, q, n, scale))
        else:
            for j in range(m):
                t, q = _integer_line_sums(lines, j, n)
                target[j] = math.sqrt(_exact_short_variance(t, q, n, scale)) / (t / n)


@njit(**_JIT)
def integer_moment_statistic_paired_lines(words, lanes, flip, o0, o1, ddof, stat, out):
    """`integer_moment_statistic_short_lines` for 16-bit lines of even length, read as
    uint32 words (``words`` of shape (outer, n / 2), ``lanes`` of length n / 2).

    LLVM gathers interleaved 16-bit values with costly shuffles (that kernel is
    1.3-1.8x slower); a word is split with a mask and a shift instead. Signed
    values come with their sign bits flipped (``flip = SIGNED_HALVES``, else 0): the
    values plus 32768, which have the same variance; the cv's mean is shifted back.
    """
    words, out = _borrowed(words), _borrowed(out)
    n = len(lanes)
    values = 2 * n
    shift = -32768.0 if flip else 0.0
    flat = words.reshape(words.shape[0] * n)
    scale = 1.0 / (values * (values - ddof))
    step = _line_step(n, flat.itemsize)
    for t0 in range(o0, o1, step):
        lines, target = _prefetched_lines(flat, out, t0, min(t0 + step, o1), n)
        m = target.shape[0]
        if stat == STAT_VAR:
            for j in range(m):
                t, q = _paired_line_sums(lines, j, n, flip)
                target[j] = _exact_short_variance(t, q, values, scale)
        elif stat == STAT_STD:
            for j in range(m):
                t, q = _paired_line_sums(lines, j, n, flip)
                target[j] = math.sqrt(_exact_short_variance(t, q, values, scale))
        else:
            for j in range(m):
                t, q = _paired_line_sums(lines, j, n, flip)
                var = _exact_short_variance(t, q, values, scale)
                target[j] = math.sqrt(var) / (shift + t / values)
