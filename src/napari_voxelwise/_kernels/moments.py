"""Mean, variance, std, cv and sum along an axis other than the last, and NaN-skipping.

``sum_statistic``, ``variance_statistic`` and ``cv_statistic`` read ``x`` (outer, n,
inner) in tiles of the inner axis, in float64 sums shifted by the first sample;
``moment_statistic_skipna`` leaves NaNs out. The finishing helpers here
(`_finish_moment`, `_careful_moment`, `_tile_variance`, `_suspect`, `_eight_values`)
serve `line_moments` and `integer_moments` too. The codes ``STAT_*`` are in
:mod:`napari_voxelwise._kernels`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import STAT_CV, STAT_MEAN, STAT_STD, STAT_SUM, STAT_VAR
from ._intrinsics import _JIT, _JIT_CONTRACT, _MOMENT_TILE, _eight_last_rows, _four_rows


@njit(**_JIT)
def _finish_moment(stat, shift, total, squares, count, ddof):
    """One statistic from ``total = sum(d)`` and ``squares = sum(d**2)``, ``d = x - shift``.

    With a shift close to the mean (the first sample, or the mean itself) the
    variance formula ``(squares - total**2 / count) / (count - ddof)`` loses
    no precision to cancellation.
    """
    if stat == STAT_SUM:
        return count * shift + total
    mean = shift + total / count
    if stat == STAT_MEAN:
        return mean
    total += shift - shift  # NaN if the shift (a sample) is inf or NaN, even for one sample
    dof = count - ddof
    var = (squares - total * total / count) / dof if dof > 0 else np.nan
    if var < 0.0:  # rounding of a zero variance; NaN compares False and stays
        var = 0.0
    if stat == STAT_VAR:
        return var
    std = math.sqrt(var)
    if stat == STAT_STD:
        return std
    return std / mean


@njit(**_JIT)
def _careful_moment(line, stat, ddof):
    """Mean, var, std or cv of one line scaled by its largest magnitude, in two passes.

    The fallback for the rare float64 lines whose squared deviations overflow
    (values beyond ~1e154): the result is then finite where NumPy's is.
    NaN or inf in the line gives NaN, as NumPy does.
    """
    n = line.shape[0]
    scale = 0.0
    for i in range(n):
        magnitude = abs(np.float64(line[i]))
        if not magnitude < np.inf:
            return np.nan
        scale = max(scale, magnitude)
    if scale == 0.0:
        scale = 1.0
    mean = 0.0
    for i in range(n):
        mean += np.float64(line[i]) / scale
    mean /= n
    squares = 0.0
    for i in range(n):
        d = np.float64(line[i]) / scale - mean
        squares += d * d
    var = squares / (n - ddof) * scale * scale
    if stat == STAT_VAR:
        return var
    if stat == STAT_STD:
        return math.sqrt(squares / (n - ddof)) * scale
    return math.sqrt(squares / (n - ddof)) / mean  # cv: the scale cancels


@njit(**_JIT_CONTRACT)
def _add_rows(x, o, i0, i1, t0, m, shift, sums, with_squares):
    """Add rows ``i0 <= i < i1`` of ``x[o, :, t0:t0 + m]`` (minus ``shift``) to the sums.

    ``sums[:m]`` accumulates the values and, if `with_squares`, ``sums[T:T + m]``
    their squares (``T = _MOMENT_TILE``, a compile-time constant): one written array,
    so LLVM's aliasing checks stay few and the loops vectorise. Eight rows per
    pass load and store the float64 sums once. Row views indexed from 0 let LLVM
    vectorise.
    """
    i = i0
    if with_squares:
        while i + 8 <= i1:
            r0, r1, r2, r3 = _four_rows(x, o, i, t0, m)
            r4, r5, r6, r7 = _four_rows(x, o, i + 4, t0, m)
            for j in range(m):
                total, squares = _eight_deviations(r0, r1, r2, r3, r4, r5, r6, r7, j, shift[j])
                sums[j] += total
                sums[_MOMENT_TILE + j] += squares
            i += 8
        while i + 4 <= i1:
            r0, r1, r2, r3 = _four_rows(x, o, i, t0, m)
            for j in range(m):
                k = shift[j]
                a = r0[j] - k
                b = r1[j] - k
                c = r2[j] - k
                d = r3[j] - k
                sums[j] += (a + b) + (c + d)
                sums[_MOMENT_TILE + j] += (a * a + b * b) + (c * c + d * d)
            i += 4
        while i < i1:
            r0 = x[o, i, t0 : t0 + m]
            for j in range(m):
                a = r0[j] - shift[j]
                sums[j] += a
                sums[_MOMENT_TILE + j] += a * a
            i += 1
        return
    while i + 8 <= i1:
        r0, r1, r2, r3 = _four_rows(x, o, i, t0, m)
        r4, r5, r6, r7 = _four_rows(x, o, i + 4, t0, m)
        for j in range(m):
            sums[j] += (
                (np.float64(r0[j]) + np.float64(r1[j])) + (np.float64(r2[j]) + np.float64(r3[j]))
            ) + ((np.float64(r4[j]) + np.float64(r5[j])) + (np.float64(r6[j]) + np.float64(r7[j])))
        i += 8
    while i + 4 <= i1:
        r0, r1, r2, r3 = _four_rows(x, o, i, t0, m)
        for j in range(m):
            sums[j] += (np.float64(r0[j]) + np.float64(r1[j])) + (
                np.float64(r2[j]) + np.float64(r3[j])
            )
        i += 4
    while i < i1:
        r0 = x[o, i, t0 : t0 + m]
        for j in range(m):
            sums[j] += np.float64(r0[j])
        i += 1


@njit(**_JIT)
def cv_statistic(x, o0, o1, j0, j1, ddof, out):
    """Coefficient of variation (std / mean) along axis 1 of ``x`` (outer, n, inner) into
    ``out[o, j]``; the other moments have kernels of their own (`sum_statistic`,
    `variance_statistic`, `integer_moment_statistic`).

    Computes ``out[o, j]`` for ``o0 <= o < o1`` and ``j0 <= j < j1`` in one
    read of the data: float64 sums of ``x - x[o, 0, j]`` (shifted by the first
    sample, so the variance formula does not cancel) over cache-sized tiles of
    the inner axis, up to eight rows at a time (`_add_rows`; the first sample
    adds 0 but keeps the groups of eight whole), finished by `_finish_cv`.
    NaN and inf propagate as in NumPy.
    """
    n = x.shape[1]
    tile = _MOMENT_TILE
    shift = np.zeros(tile)
    sums = np.empty(2 * tile)
    total = sums[:tile]
    squares = sums[tile:]
    for o in range(o0, o1):
        for t0 in range(j0, j1, tile):
            m = min(tile, j1 - t0)
            row = x[o, 0, t0 : t0 + m]
            for j in range(m):
                shift[j] = row[j]
            total[:m] = 0.0
            squares[:m] = 0.0
            _add_rows(x, o, 0, n, t0, m, shift, sums, True)
            if _finish_cv(shift, total, squares, m, n, ddof, out[o, t0 : t0 + m]):
                for j in range(m):
                    if _overflowed(shift[j], total[j], squares[j], n, ddof):
                        out[o, t0 + j] = _careful_moment(x[o, :, t0 + j], STAT_CV, ddof)


@njit(**_JIT)
def variance_statistic(x, o0, o1, j0, j1, ddof, std, out):
    """The variance, or if `std` the standard deviation, along axis 1 of ``x`` (outer, n,
    inner) into ``out[o, j]``, from float64 sums shifted by the first sample (as in
    `cv_statistic`).

    The last eight rows (all of them when fewer) are added and each voxel's result
    written in one loop (`_add_last_rows`); the rows before go through `_add_rows`,
    but for row 0 where leaving it out saves a pass: its deviations from the shift
    are 0 (NaN if inf or NaN, as the rest then are). Stacks of 9 to 11 rows: 3% to
    15% faster on 512 MiB of float32.
    With eight rows or fewer no sums are stored, and the kernel takes steps of
    eight tiles (fewer calls: 3% to 7% faster). A kernel of its own, so that the
    mean and the sum (of integers too) do not compile these loops.
    """
    n = x.shape[1]
    stat = STAT_STD if std else STAT_VAR
    rows = max(n - 8, 0)  # rows start..rows - 1 go through `_add_rows`
    start = 1 if rows % 4 else 0  # row 0 adds 0: left out where that saves a pass
    tile = _MOMENT_TILE
    step = tile if rows > start else 8 * tile
    shift = np.zeros(step)
    sums = np.empty(2 * tile)
    for o in range(o0, o1):
        for t0 in range(j0, j1, step):
            m = min(step, j1 - t0)
            into = out[o, t0 : t0 + m]
            row = x[o, 0, t0 : t0 + m]
            for j in range(m):
                shift[j] = row[j]
            if rows > start:
                sums[:m] = 0.0
                sums[tile : tile + m] = 0.0
                _add_rows(x, o, start, rows, t0, m, shift, sums, True)
            if _add_last_rows(x, o, rows, t0, m, shift, sums, rows <= start, std, n, ddof, into):
                for j in range(m):
                    if _suspect(np.float64(into[j]), shift[j]):  # not finite: overflow or inf
                        into[j] = _careful_moment(x[o, :, t0 + j], stat, ddof)


@njit(**_JIT)
def sum_statistic(x, o0, o1, j0, j1, mean, out):
    """The sum, or if `mean` the mean, along axis 1 of ``x`` (outer, n, inner) into
    ``out[o, j]``, in float64 sums.

    As `variance_statistic`: the rows before the last eight go through `_add_rows`,
    the last eight (all when fewer, the missing ones read from a row of zeros) are
    added and each voxel's result written in one loop (`_add_last_values`); with
    eight rows or fewer, in steps of eight tiles.
    """
    n = x.shape[1]
    rows = max(n - 8, 0)  # those that `_add_rows` adds
    tile = _MOMENT_TILE
    step = tile if rows > 0 else 8 * tile
    zeros = np.zeros(step, x.dtype)
    unused = np.zeros(0)  # `_add_rows`'s shift: not read without squares
    sums = np.empty(2 * tile)
    divisor = np.float64(n) if mean else 1.0
    for o in range(o0, o1):
        for t0 in range(j0, j1, step):
            m = min(step, j1 - t0)
            if rows > 0:
                sums[:m] = 0.0
                _add_rows(x, o, 0, rows, t0, m, unused, sums, False)
            _add_last_values(
                x, o, rows, t0, m, sums, rows == 0, zeros[:m], divisor, out[o, t0 : t0 + m]
            )


@njit(**_JIT)
def _add_last_values(x, o, i, t0, m, sums, first, zeros, divisor, out):
    """Add rows ``i..n - 1`` of ``x[o, :, t0:t0 + m]`` (the last eight, or all when fewer,
    made up with `zeros`) to ``sums[:m]`` (not read if `first`) and write ``sum / divisor``."""
    n = x.shape[1]
    r0 = x[o, i, t0 : t0 + m]
    r1 = x[o, i + 1, t0 : t0 + m] if i + 1 < n else zeros
    r2 = x[o, i + 2, t0 : t0 + m] if i + 2 < n else zeros
    r3 = x[o, i + 3, t0 : t0 + m] if i + 3 < n else zeros
    r4 = x[o, i + 4, t0 : t0 + m] if i + 4 < n else zeros
    r5 = x[o, i + 5, t0 : t0 + m] if i + 5 < n else zeros
    r6 = x[o, i + 6, t0 : t0 + m] if i + 6 < n else zeros
    r7 = x[o, i + 7, t0 : t0 + m] if i + 7 < n else zeros
    if first:
        for j in range(m):
            total, _ = _eight_values(r0, r1, r2, r3, r4, r5, r6, r7, j)
            out[j] = total / divisor
    else:
        for j in range(m):
            total, _ = _eight_values(r0, r1, r2, r3, r4, r5, r6, r7, j)
            out[j] = (sums[j] + total) / divisor


@njit(inline="always", **_JIT)
def _eight_deviations(r0, r1, r2, r3, r4, r5, r6, r7, j, k):
    """Sum and sum of squares of ``r[j] - k`` over eight rows."""
    a, b, c, d = r0[j] - k, r1[j] - k, r2[j] - k, r3[j] - k
    e, f, g, h = r4[j] - k, r5[j] - k, r6[j] - k, r7[j] - k
    return ((a + b) + (c + d)) + ((e + f) + (g + h)), ((a * a + b * b) + (c * c + d * d)) + (
        (e * e + f * f) + (g * g + h * h)
    )


@njit(inline="always", **_JIT)
def _eight_values(r0, r1, r2, r3, r4, r5, r6, r7, j):
    """Sum and sum of squares of ``r[j]`` over eight rows, in float64."""
    a, b, c, d = np.float64(r0[j]), np.float64(r1[j]), np.float64(r2[j]), np.float64(r3[j])
    e, f, g, h = np.float64(r4[j]), np.float64(r5[j]), np.float64(r6[j]), np.float64(r7[j])
    return ((a + b) + (c + d)) + ((e + f) + (g + h)), ((a * a + b * b) + (c * c + d * d)) + (
        (e * e + f * f) + (g * g + h * h)
    )


@njit(**_JIT_CONTRACT)
def _add_last_rows(x, o, i, t0, m, shift, sums, first, std, n, ddof, out):
    """Add rows ``i..n - 1`` of ``x[o, :, t0:t0 + m]`` (the last eight, or all when fewer)
    to the sums of `_add_rows` and write each voxel's variance, or if `std` its square
    root, to ``out``.

    The sums of these rows stay in registers instead of being stored for a
    finishing loop such as `_finish_cv` (512 MiB float32 stacks of eight, kernel
    alone: var 15%, std 29% faster; stacks of five and seven 25% to 35%). Fewer
    than eight rows are made up with the first row, whose deviations from the
    shift are 0 (NaN if inf, as they are anyway). If `first`, there are no other
    rows and ``sums`` is not read. Only for ``n > ddof``. Returns whether some
    voxel is `_suspect`.
    """
    r0, r1, r2, r3, r4, r5, r6, r7 = _eight_last_rows(x, o, i, t0, m, 0)
    inverse_dof = 1.0 / (n - ddof)
    suspects = 0
    if first:
        for j in range(m):
            k = shift[j]
            total, squares = _eight_deviations(r0, r1, r2, r3, r4, r5, r6, r7, j, k)
            var = _tile_variance(k, total, squares, n, inverse_dof)
            suspects += _suspect(var, k)
            out[j] = math.sqrt(var) if std else var
    else:
        for j in range(m):
            k = shift[j]
            total, squares = _eight_deviations(r0, r1, r2, r3, r4, r5, r6, r7, j, k)
            var = _tile_variance(
                k, sums[j] + total, sums[_MOMENT_TILE + j] + squares, n, inverse_dof
            )
            suspects += _suspect(var, k)
            out[j] = math.sqrt(var) if std else var
    return suspects > 0


@njit(inline="always", **_JIT)
def _tile_variance(shift, total, squares, n, inverse_dof):
    """`_finish_moment`'s variance without its branches; a rounded-negative zero gives 0."""
    deviation = total + (shift - shift)  # NaN if the first sample is inf or NaN
    var = (squares - deviation * deviation / n) * inverse_dof
    return 0.0 if var < 0.0 else var  # NaN compares False and stays


@njit(inline="always", **_JIT)
def _suspect(var, shift):
    """Whether a variance is not finite although its first sample is: either its sums
    overflowed (`_careful_moment` redoes it) or a later sample is inf or NaN."""
    return (not var < np.inf) & (abs(shift) < np.inf)


@njit(inline="always", **_JIT)
def _overflowed(shift, total, squares, n, ddof):
    """`_suspect` for one voxel's sums."""
    return _suspect(_tile_variance(shift, total, squares, n, 1.0 / (n - ddof)), shift)


@njit(**_JIT)
def _finish_cv(shift, total, squares, m, n, ddof, out):
    """`_finish_moment`'s cv for a tile of ``m`` voxels, in one branch-free (vectorised)
    loop (the variance and the std finish in `_add_last_rows`, the mean and the sum
    in `_add_last_values`).

    Only for ``n > ddof`` (checked by the caller's argument validation). Returns
    whether some variance is `_suspect` (counted in the same loop: a separate
    check, calling a function per voxel, cost the float32 variance 20%).
    """
    inverse_dof = 1.0 / (n - ddof)
    suspects = 0
    for j in range(m):
        var = _tile_variance(shift[j], total[j], squares[j], n, inverse_dof)
        suspects += _suspect(var, shift[j])
        out[j] = math.sqrt(var) / (shift[j] + total[j] / n)
    return suspects > 0


#: Longest lines whose NaN-skipping statistics `moment_statistic_skipna` transposes into
#: tiles (``n`` rows of `_MOMENT_TILE` float64 values: 512 KiB at most); longer ones go
#: line by line.
_SKIPNA_TILED_LINES = 64


@njit(**_JIT)
def moment_statistic_skipna(x, o0, o1, j0, j1, ddof, stat, out):
    """A moment statistic (``stat``) along axis 1 of ``x`` (outer, n, inner), leaving NaNs
    out; a line without a valid value gives NaN (0 for the sum).

    Two passes over tiles of voxels (`_skipna_tile`): along other axes a tile is a
    view of the rows, lines (``inner == 1``) of up to `_SKIPNA_TILED_LINES` values are
    copied into one transposed, longer lines go line by line. On 256 MiB of float32
    with 5% NaN, against the voxel-by-voxel loop before: along axis 0 the mean 3.8x to
    5.5x and the variance 2.5x to 3.4x faster, along the last axis (lines of 8) the
    mean 130 -> 40 ms.
    """
    n = x.shape[1]
    tile = _MOMENT_TILE
    scratch = np.empty((4, tile))
    if x.shape[2] > 1:
        for o in range(o0, o1):
            for t0 in range(j0, j1, tile):
                m = min(tile, j1 - t0)
                _skipna_tile(x, o, t0, m, ddof, stat, scratch, out[o, t0 : t0 + m])
        return
    if n <= _SKIPNA_TILED_LINES:
        lines = np.empty((1, n, tile))
        for t0 in range(o0, o1, tile):
            m = min(tile, o1 - t0)
            for i in range(n):
                values = x[t0 : t0 + m, i, 0]
                row = lines[0, i]
                for j in range(m):
                    row[j] = values[j]
            _skipna_tile(lines, 0, 0, m, ddof, stat, scratch, out[t0 : t0 + m, 0])
        return
    for o in range(o0, o1):
        _skipna_tile(x, o, 0, 1, ddof, stat, scratch, out[o, 0:1])


@njit(**_JIT)
def _skipna_tile(x, o, t0, m, ddof, stat, scratch, target):
    """``target[j]``, ``j < m``: `moment_statistic_skipna`'s statistic of ``x[o, :, t0 + j]``
    (x: (outer, n, inner)), in two passes of vectorised loops over the tile (each row
    indexed from the 3D array, whose last-axis slices LLVM sees contiguous):
    the sum and the count of the valid values, then (not for the mean and the sum)
    the sums of their deviations from that mean and of their squares, which
    `_finish_moment` turns into the variance without cancellation. ``scratch``:
    (4, m or more) float64."""
    n = x.shape[1]
    total, count = scratch[0, :m], scratch[1, :m]
    deviation, squares = scratch[2, :m], scratch[3, :m]
    total[:] = 0.0
    count[:] = 0.0
    for i in range(n):
        row = x[o, i, t0 : t0 + m]
        for j in range(m):
            v = np.float64(row[j])
            valid = v == v
            total[j] += v if valid else 0.0
            count[j] += 1.0 if valid else 0.0
    if stat == STAT_SUM:
        for j in range(m):
            target[j] = total[j]
        return
    for j in range(m):
        total[j] /= count[j]  # the mean (NaN if no value is valid)
    if stat == STAT_MEAN:
        for j in range(m):
            target[j] = total[j]
        return
    deviation[:] = 0.0
    squares[:] = 0.0
    for i in range(n):
        row = x[o, i, t0 : t0 + m]
        for j in range(m):
            v = np.float64(row[j])
            d = v - total[j]
            valid = v == v
            deviation[j] += d if valid else 0.0
            squares[j] += d * d if valid else 0.0
    for j in range(m):
        target[j] = _finish_moment(stat, total[j], deviation[j], squares[j], count[j], ddof)
