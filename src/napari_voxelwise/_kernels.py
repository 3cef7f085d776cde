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

import functools
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}
# Reassociation lets LLVM vectorise float sums; NaN and inf keep IEEE behaviour.
_JIT_REASSOC = {**_JIT, "fastmath": {"reassoc", "contract"}}
# Fused multiply-adds only (slightly more accurate, and faster).
_JIT_CONTRACT = {**_JIT, "fastmath": {"contract"}}

# Codes of the moment statistics (`_finish_moment`, the line kernels' ``stat``).
STAT_MEAN, STAT_VAR, STAT_STD, STAT_CV, STAT_SUM = 0, 1, 2, 3, 4
# Codes of the eigenvalue orders.
ORDER_DESCENDING, ORDER_ASCENDING, ORDER_ABS = 0, 1, 2
# Codes of the norms computed by `frame_norm_partials`.
NORM_POWER, NORM_SQUARES, NORM_ABS, NORM_MAX = 0, 1, 2, 3


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


@intrinsic
def _prefetch_line(typingctx, address):
    """Ask the CPU to start loading the cache line at `address` (an integer), LLVM's
    ``prefetch`` for a read into every cache level: a hint, which never faults and has no
    effect on results. See `_prefetch`."""

    def codegen(context, builder, signature, args):
        byte_pointer = ir.IntType(8).as_pointer()
        int32 = ir.IntType(32)
        function_type = ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32])
        function = builder.module.declare_intrinsic("llvm.prefetch", [byte_pointer], function_type)
        pointer = builder.inttoptr(args[0], byte_pointer)
        # read (0), keep in every cache level (3), data (1)
        builder.call(function, [pointer, int32(0), int32(3), int32(1)])
        return context.get_dummy_value()

    return types.void(types.uintp), codegen


@intrinsic
def _borrowed(typingctx, array):
    """`array` without its reference count: the same array, whose views (slices, rows,
    reshapes) numba then creates and drops without updating a count.

    Numba's pass that removes those updates gave up on the tile loops of the short-line
    kernels (loops with several exits): every tile of about 1 KiB of lines took and
    dropped references to the input and the result, atomic updates of counts that both
    threads share. Without them, in cache on one thread (256 MiB of lines of eight):
    uint16 variance 14.4 -> 11.9 ms, float32 variance 27.9 -> 22.2, float32 mean
    18.3 -> 14.5, uint16 max 9.5 -> 8.5; in `moment_statistic_lines` (a view per line)
    the float32 variance of lines of 17 58.4 -> 45.8 ms on two threads. The kernels along
    other axes, with far more work per view, did not change and keep their counts. For
    use inside a kernel only, on arrays its caller keeps alive: a borrowed array must
    never be returned or stored.
    """
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        view = context.make_array(signature.args[0])(context, builder, value=args[0])
        view.meminfo = cgutils.get_null_value(view.meminfo.type)
        view.parent = cgutils.get_null_value(view.parent.type)
        return view._getvalue()

    return array(array), codegen


#: Bytes ahead of the values being read that the kernels prefetch (`_prefetch`).
PREFETCH_AHEAD = 4096


@njit(inline="always", **_JIT)
def _prefetch(flat, start, stop):
    """Prefetch (`_prefetch_line`) the cache lines of ``flat[start:stop]`` (a contiguous 1D
    array), those within the array: a loop over 64-byte steps, before a vectorised loop.

    The kernels that compute between their loads ask for the values `PREFETCH_AHEAD`
    bytes ahead of those they read: on this project's machine the hardware's own
    prefetching left them waiting for memory (the variance of float32 lines of eight,
    512 MiB on two threads: 43.5 -> 31 ms, against a read-once floor of 20.6 ms).
    """
    base = flat.ctypes.data  # a uintp; the offsets too (uint64 + int64 would be float64)
    size = np.uintp(flat.itemsize)
    for index in range(max(start, 0), min(stop, flat.shape[0]), 64 // flat.itemsize):
        _prefetch_line(base + np.uintp(index) * size)


#: Bytes of lines the short-line kernels read between two calls of `_prefetch`.
_LINE_STEP_BYTES = 1024


@njit(inline="always", **_JIT)
def _line_step(n, itemsize):
    """Lines of ``n`` values of `itemsize` bytes read between two calls of `_prefetch`:
    about `_LINE_STEP_BYTES`, a multiple of 8 (whole vectors of lines)."""
    return max(8, _LINE_STEP_BYTES // (n * itemsize) // 8 * 8)


@njit(inline="always", **_JIT)
def _prefetched_lines(flat, out, a, b, n):
    """Lines ``a <= j < b`` of `flat` (lines of ``n``) and their results ``out[a:b]``, as
    views indexed from 0 (which LLVM vectorises; a loop from ``a`` over the whole tile ran
    2x slower), once the values `PREFETCH_AHEAD` bytes ahead are prefetched (`_prefetch`)."""
    ahead = PREFETCH_AHEAD // flat.itemsize
    _prefetch(flat, a * n + ahead, b * n + ahead)
    return flat[a * n : b * n], out[a:b]


#: Voxels per tile of the moment kernels (their float64 sums stay in the L1 cache).
_MOMENT_TILE = 1024


@njit(**_JIT)
def _four_rows(x, o, i, t0, m):
    """Rows ``i..i + 3`` of ``x[o, :, t0:t0 + m]``: views indexed from 0, which LLVM vectorises."""
    return (
        x[o, i, t0 : t0 + m],
        x[o, i + 1, t0 : t0 + m],
        x[o, i + 2, t0 : t0 + m],
        x[o, i + 3, t0 : t0 + m],
    )


@njit(**_JIT)
def _eight_last_rows(x, o, i, t0, m, filler):
    """Rows ``i..i + 7`` of ``x[o, :, t0:t0 + m]``, those past the last replaced by row
    `filler` (views indexed from 0, which LLVM vectorises)."""
    n = x.shape[1]
    return (
        x[o, i, t0 : t0 + m],
        x[o, i + 1 if i + 1 < n else filler, t0 : t0 + m],
        x[o, i + 2 if i + 2 < n else filler, t0 : t0 + m],
        x[o, i + 3 if i + 3 < n else filler, t0 : t0 + m],
        x[o, i + 4 if i + 4 < n else filler, t0 : t0 + m],
        x[o, i + 5 if i + 5 < n else filler, t0 : t0 + m],
        x[o, i + 6 if i + 6 < n else filler, t0 : t0 + m],
        x[o, i + 7 if i + 7 < n else filler, t0 : t0 + m],
    )


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


#: Longest line of `moment_statistic_short_lines` (one compiled kernel per length).
SHORT_LINES = 16


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


def _is_float32(values):
    """Whether `values` (an array) holds float32, known when a kernel is compiled (so
    LLVM drops the branch not taken); only callable from compiled code."""
    raise NotImplementedError


@overload(_is_float32)
def _is_float32_overload(values):
    answer = values.dtype == types.float32
    return lambda values: answer


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


#: Longest axis of the exact integer kernels: ``n * sum(x**2) - sum(x)**2`` of 16-bit
#: integers stays below 2**63 (exact in int64), and ``sum(x**2)`` below 2**53 (exact in float64).
EXACT_INTEGER_LINES = 46340
#: Longest axis for which that numerator stays below 2**53 too (exact in float64 arithmetic).
EXACT_FLOAT_LINES = 1448


@njit(inline="always", **_JIT)
def _eight_values(r0, r1, r2, r3, r4, r5, r6, r7, j):
    """Sum and sum of squares of ``r[j]`` over eight rows, in float64."""
    a, b, c, d = np.float64(r0[j]), np.float64(r1[j]), np.float64(r2[j]), np.float64(r3[j])
    e, f, g, h = np.float64(r4[j]), np.float64(r5[j]), np.float64(r6[j]), np.float64(r7[j])
    return ((a + b) + (c + d)) + ((e + f) + (g + h)), ((a * a + b * b) + (c * c + d * d)) + (
        (e * e + f * f) + (g * g + h * h)
    )


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


#: XOR of a uint32 word that turns its two int16 halves ``s`` into uint16 ``s + 32768``.
SIGNED_HALVES = np.uint32(0x80008000)


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


@njit(inline="always", **_JIT)
def _pick(v, b, want_max, skipna):
    """``v`` if it beats ``b`` for the minimum (or if `want_max` the maximum), else ``b``:
    NaN wins (``np.minimum``) unless `skipna`, where any value beats NaN (``np.fmin``)."""
    better = v > b if want_max else v < b
    return v if (better or (b != b if skipna else v != v)) else b


@njit(inline="always", **_JIT)
def _merge_eight_rows(r0, r1, r2, r3, r4, r5, r6, r7, best, first, want_max, skipna):
    """``best[j]`` = the min or max (`_pick`) of ``r[j]`` over eight rows and, unless
    `first`, of ``best[j]``; called with constant flags: one branch-free loop each."""
    for j in range(best.shape[0]):
        b = _pick(r1[j], r0[j], want_max, skipna)
        b = _pick(r2[j], b, want_max, skipna)
        b = _pick(r3[j], b, want_max, skipna)
        b = _pick(r4[j], b, want_max, skipna)
        b = _pick(r5[j], b, want_max, skipna)
        b = _pick(r6[j], b, want_max, skipna)
        b = _pick(r7[j], b, want_max, skipna)
        best[j] = b if first else _pick(b, best[j], want_max, skipna)


@njit(inline="always", **_JIT)
def _merge_four_rows(r0, r1, r2, r3, best, first, want_max, skipna):
    """`_merge_eight_rows` of four rows (a last group of four rows or fewer)."""
    for j in range(best.shape[0]):
        b = _pick(r1[j], r0[j], want_max, skipna)
        b = _pick(r2[j], b, want_max, skipna)
        b = _pick(r3[j], b, want_max, skipna)
        best[j] = b if first else _pick(b, best[j], want_max, skipna)


@njit(**_JIT)
def _merge_rows(x, o, i, t0, m, best, want_max, skipna):
    """Merge rows ``i..i + 7`` of ``x[o, :, t0:t0 + m]`` (those that exist) into ``best``
    (set if ``i == 0``): eight at a time, or four when four or fewer are left, a group
    made up with its first row again (min(a, a) = a). One call per constant variant."""
    first = i == 0
    if i + 4 < x.shape[1]:
        r0, r1, r2, r3, r4, r5, r6, r7 = _eight_last_rows(x, o, i, t0, m, i)
        _merge_eight_rows(r0, r1, r2, r3, r4, r5, r6, r7, best, first, want_max, skipna)
    else:
        r0, r1, r2, r3, _, _, _, _ = _eight_last_rows(x, o, i, t0, m, i)
        _merge_four_rows(r0, r1, r2, r3, best, first, want_max, skipna)


@njit(**_JIT)
def extremum_statistic(x, o0, o1, j0, j1, want_max, skipna, out):
    """Minimum or maximum along axis 1 of ``x`` (outer, n, inner) into ``out[o, j]``.

    Over tiles of `_MOMENT_TILE` voxels of the inner axis (eight tiles when n <= 8),
    eight rows at a time merged into the output row in the cache (`_merge_rows`);
    the result keeps the input dtype. NaN as in ``np.min`` / ``np.max`` (or
    ``np.nanmin`` / ``np.nanmax`` with `skipna`). `want_max` and `skipna` are True or
    None (not False; see `extremum_flags`): numba then compiles only the variant
    asked for, a fourth of the loops (float32, empty cache: 3.1 to 4.2 s of CPU on
    first use instead of 5.3 to 6.3 s).
    """
    n = x.shape[1]
    step = 8 * _MOMENT_TILE if n <= 8 else _MOMENT_TILE
    for o in range(o0, o1):
        for t0 in range(j0, j1, step):
            m = min(step, j1 - t0)
            best = out[o, t0 : t0 + m]
            for i in range(0, n, 8):
                if want_max is not None:
                    if skipna is not None:
                        _merge_rows(x, o, i, t0, m, best, True, True)
                    else:
                        _merge_rows(x, o, i, t0, m, best, True, False)
                elif skipna is not None:
                    _merge_rows(x, o, i, t0, m, best, False, True)
                else:
                    _merge_rows(x, o, i, t0, m, best, False, False)


def extremum_flags(want_max: bool, skipna: bool) -> tuple[bool | None, bool | None]:
    """`want_max` and `skipna` as the extremum kernels take them: True or None, whose
    types numba tells apart when it compiles, so that each variant is compiled alone."""
    return (True if want_max else None), (True if skipna else None)


@njit(inline="always", **_JIT)
def _extrema_of_short_lines(lines, n, out, want_max, skipna):
    """``out[j]`` = min or max of line ``j`` of `lines` (flat, lines of ``n``), NaN as in
    `_pick`; called with constant flags, so each variant is one branch-free loop."""
    for j in range(out.shape[0]):
        best = lines[j * n]
        for i in range(1, n):
            best = _pick(lines[j * n + i], best, want_max, skipna)
        out[j] = best


@njit(**_JIT)
def extremum_short_lines(x, lanes, o0, o1, want_max, skipna, out):
    """`extremum_lines` for a C-contiguous ``x`` of shape (outer, n), n <= `SHORT_LINES`,
    into ``out[o]``.

    As in `moment_statistic_short_lines`, ``lanes`` (any tuple of length ``n``) makes
    the line length a compile-time constant and the lines are read from the flat
    array, so that LLVM unrolls each line and vectorises across lines: 2x to 6x
    faster than `extremum_lines` on 128 MiB of lines of 3 and 8 (float32, uint16).
    Tiles of about 1 KiB of lines, each prefetched ahead (`_prefetched_lines`).
    """
    x, out = _borrowed(x), _borrowed(out)
    n = len(lanes)
    flat = x.reshape(x.shape[0] * n)
    step = _line_step(n, x.itemsize)
    for a in range(o0, o1, step):
        lines, target = _prefetched_lines(flat, out, a, min(a + step, o1), n)
        if want_max is not None:  # flags True or None, as in `extremum_statistic`
            if skipna is not None:
                _extrema_of_short_lines(lines, n, target, True, True)
            else:
                _extrema_of_short_lines(lines, n, target, True, False)
        elif skipna is not None:
            _extrema_of_short_lines(lines, n, target, False, True)
        else:
            _extrema_of_short_lines(lines, n, target, False, False)


@njit(**_JIT)
def extremum_lines(x, o0, o1, want_max, skipna, out):
    """Minimum or maximum of each line of ``x`` (outer, n, 1) into ``out[o, 0]``.

    NaN wins unless ``skipna`` (then NaN only where a line is all NaN). Along
    other axes `extremum_statistic` runs across voxels instead; lines of up to
    `SHORT_LINES` go to `extremum_short_lines`.
    """
    n = x.shape[1]
    for o in range(o0, o1):
        line = x[o, :, 0]
        best = line[0]
        for i in range(1, n):
            v = line[i]
            if want_max:
                better = v > best
            else:
                better = v < best
            if better or (best != best if skipna else v != v):
                best = v
        out[o, 0] = best


#: Longest axis whose median `median_statistic` takes; NumPy's beyond. Batcher's network
#: grows as n log² n (445 compare-exchanges for the median of 64 values, 19978 of 1000,
#: 117894 of 4000), NumPy's selection as n, but each compare-exchange here is a vectorised
#: loop across a tile: one thread, float32, 4.6x to 6.5x faster than ``np.median`` from 300
#: to 4000 values, 2.5x still at 16000, where building the network takes a second.
MEDIAN_NETWORK_ROWS = 4096
#: Voxels per tile of `median_statistic` at most, and the bytes its rows may take (1 MiB,
#: in the L2 cache: 1000 float32 rows of 256 voxels, 4000 of 64; fewer voxels per tile
#: for longer lines, see `median_tile`).
MEDIAN_TILE = 256
MEDIAN_ROWS_BYTES = 2**20


def median_tile(n: int, itemsize: int) -> int:
    """Voxels per tile of `median_statistic` for rows of ``n`` values of ``itemsize`` bytes:
    `MEDIAN_TILE`, halved (down to 32) while the rows take more than `MEDIAN_ROWS_BYTES`.
    One thread, float32, 4000 rows: tiles of 64 voxels 107 ms, of 32 127 ms, of 128 to
    512 129 to 198 ms; 2000 rows: tiles of 128 85 ms, of 256 103 ms."""
    tile = MEDIAN_TILE
    while tile > 32 and n * itemsize * tile > MEDIAN_ROWS_BYTES:
        tile //= 2
    return tile


@functools.lru_cache(maxsize=16)  # a network of 4096 values takes 2 MiB (and 0.15 s to build)
def median_network(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Compare-exchanges ``(first[c], second[c])`` of Batcher's odd-even merge sort of ``n``
    values (any ``n``): those the three middle positions depend on.

    After them, positions ``(n - 2) // 2``, ``(n - 1) // 2`` and ``n // 2`` hold their
    sorted values (the third costs no compare-exchange more: 445 of the full network's 543
    for 64 values, as for the two). Read-only arrays, one pair per `n`.
    """
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    needed = {max(0, (n - 2) // 2), (n - 1) // 2, n // 2}  # walking back from them
    kept = []
    for a, b in reversed(pairs):
        if a in needed or b in needed:
            kept.append((a, b))
            needed |= {a, b}
    first = np.array([a for a, _ in kept[::-1]], dtype=np.int64).reshape(-1)
    second = np.array([b for _, b in kept[::-1]], dtype=np.int64).reshape(-1)
    first.flags.writeable = second.flags.writeable = False
    return first, second


@njit(**_JIT)
def _median_of_rows(rows, m, first, second, skipna, out):
    """``out[j]`` = the median of ``rows[:, j]`` (copies of a tile's values, which this
    overwrites) for ``j < m``: NaN where a value is NaN, or with `skipna` the median
    of the others (NaN where none is left). Every step a loop over the tile's voxels.

    Each voxel's NaNs become +inf, -inf, +inf, ... in turn, so that its valid values
    keep the middle of the sorted line: with an even number of NaNs their median is
    that of positions ``(n - 1) // 2`` and ``n // 2``, with an odd number that of
    ``(n - 2) // 2`` and ``(n - 1) // 2``. So the NaN-skipping median needs no more of
    the network than the plain one, nor a pass to find each voxel's middle.
    """
    n = rows.shape[0]
    count = np.zeros(m)
    fill = np.empty_like(rows[0, :m])  # the next NaN's stand-in: +inf, then -inf, ...
    fill[:] = np.inf
    for i in range(n):
        row = rows[i, :m]
        for j in range(m):
            v = row[j]
            f = fill[j]
            valid = v == v
            count[j] += 1.0 if valid else 0.0
            row[j] = v if valid else f
            fill[j] = f if valid else -f
    for c in range(first.shape[0]):  # the sorting network, across voxels
        a = rows[first[c], :m]
        b = rows[second[c], :m]
        for j in range(m):
            u = a[j]
            v = b[j]
            a[j] = u if u < v else v
            b[j] = v if u < v else u
    below = rows[max(0, (n - 2) // 2), :m]
    low = rows[(n - 1) // 2, :m]
    high = rows[n // 2, :m]
    if not skipna:
        for j in range(m):
            middle = (np.float64(low[j]) + np.float64(high[j])) * 0.5  # as NumPy's float64
            out[j] = middle if count[j] == n else np.nan
        return
    for j in range(m):
        odd = fill[j] < 0.0  # an odd number of NaNs
        a = np.float64(below[j] if odd else low[j])
        b = np.float64(low[j] if odd else high[j])
        out[j] = (a + b) * 0.5 if count[j] > 0.0 else np.nan


@njit(**_JIT)
def median_statistic(x, o0, o1, j0, j1, first, second, skipna, rows, out):
    """Median along axis 1 of ``x`` (outer, n, inner), ``n <= MEDIAN_NETWORK_ROWS``, into
    ``out[o, j]`` (``j0 <= j < j1``; lines, ``inner == 1``, are taken ``o0 <= o < o1``
    at a time), as ``np.median`` (or ``np.nanmedian`` with `skipna`) of float64 values.

    Tiles of voxels are copied to ``rows`` (n, tile; `median_tile` voxels), float32
    where every value is exact in it (16-bit integers, float32: twice the lanes; the
    NaN-skipping median 2x faster than in float64), else float64, and sorted by the
    network of `median_network` (``first``, ``second``: the part the median needs,
    with `skipna` too), one vectorised loop over the tile
    per compare-exchange (`_median_of_rows`). Against ``np.median`` of the same boxes
    (the code before), on 256 MiB: float32 along axis 0 / the last axis 14x to 21x /
    12x to 15x faster (8 rows: 804 -> 38 to 58 ms, 746 -> 47 to 63 ms), uint16 17x,
    40 rows 7x to 13x; the NaN-skipping median 7x (466 -> 63 ms; ``np.nanmedian`` 2.5
    to 3.2 s). Longer axes (65 to 4096 values, tiles of fewer voxels from 1025 float32
    rows): float32 along axis 0, 100 values 125 -> 20 ms, 1000 values 214 -> 38 to 78 ms.
    """
    n = x.shape[1]
    tile = rows.shape[1]
    if x.shape[2] == 1:  # lines: a tile of lines, transposed into the rows
        for t0 in range(o0, o1, tile):
            m = min(tile, o1 - t0)
            for i in range(n):
                line = x[t0 : t0 + m, i, 0]
                row = rows[i]
                for j in range(m):
                    row[j] = line[j]
            _median_of_rows(rows, m, first, second, skipna, out[t0 : t0 + m, 0])
        return
    for o in range(o0, o1):
        for t0 in range(j0, j1, tile):
            m = min(tile, j1 - t0)
            for i in range(n):
                source = x[o, i, t0 : t0 + m]
                row = rows[i]
                for j in range(m):
                    row[j] = source[j]
            _median_of_rows(rows, m, first, second, skipna, out[o, t0 : t0 + m])


@njit(**_JIT_REASSOC)
def _row_norm_term(row, kind, power, acc):
    """Norm term of one contiguous row (sum of squares, of ``|x|``, of ``|x|**power``,
    or the maximum of ``|x|`` and ``acc``, NaN winning) added to (or merged with) ``acc``.

    Indices run from 0 over a 1-D view so that LLVM vectorises the loops.
    """
    if kind == NORM_MAX:
        return _max_abs(row, 0.0, acc)
    total = 0.0
    if kind == NORM_SQUARES:
        for j in range(row.shape[0]):
            v = np.float64(row[j])
            total += v * v
    elif kind == NORM_ABS:
        for j in range(row.shape[0]):
            total += abs(np.float64(row[j]))
    elif row.shape[0] < _POWER_BLOCK:
        for j in range(row.shape[0]):
            total += abs(np.float64(row[j])) ** power
    else:
        base = np.empty(_POWER_BLOCK)
        terms = np.empty(_POWER_BLOCK)
        for b0 in range(0, row.shape[0], _POWER_BLOCK):
            block = row[b0 : b0 + _POWER_BLOCK]
            m = block.shape[0]
            _powers(block, power, base[:m], terms[:m])
            for j in range(m):
                total += terms[j]
    return acc + total


#: Values per block of `_powers` in `_row_norm_term`.
_POWER_BLOCK = 256
#: Largest order `_powers` raises by repeated squaring (integer and half-integer orders).
SQUARED_POWERS = 64.0


def by_squaring(power: float) -> bool:
    """Whether `_powers` raises to `power` by repeated squaring (else by ``pow`` per value,
    which the callers avoid: see `napari_voxelwise.statistics.frame_norms_plan`)."""
    return 2.0 * power == math.floor(2.0 * power) and power <= SQUARED_POWERS


@njit(**_JIT_REASSOC)
def _powers(values, power, base, out):
    """``out[j] = |values[j]| ** power`` in float64; ``base`` is scratch of the same length.

    Integer and half-integer powers up to 64 by repeated squaring, each step a loop
    over the block that LLVM vectorises: ord=3 norms 10x to 13x faster than with
    ``pow`` value by value, which the seed's loop (NumPy's vectorised float32 power)
    had beaten 1.5x to 4x. Other powers call ``pow`` for every value (a correct
    fallback: `frame_norms_plan` sends those orders to NumPy's power, see `by_squaring`).
    """
    m = values.shape[0]
    twice = 2.0 * power
    if twice != math.floor(twice) or power > SQUARED_POWERS:
        for j in range(m):
            out[j] = abs(np.float64(values[j])) ** power
        return
    half = twice % 2.0 == 1.0  # power = k + 1/2
    for j in range(m):
        a = abs(np.float64(values[j]))
        base[j] = a
        out[j] = math.sqrt(a) if half else 1.0
    k = int(power)
    while k:
        if k & 1:
            for j in range(m):
                out[j] *= base[j]
        k >>= 1
        if k:
            for j in range(m):
                base[j] *= base[j]


#: Lanes of `_max_abs` (32 float32 values: four 256-bit vectors).
_MAX_LANES = 32


@njit(**_JIT_REASSOC)
def _max_abs(row, zero, acc):
    """The larger of ``acc`` and the largest ``|x|`` of a row, NaN winning (as ``np.max``).

    Element-wise maxima in `_MAX_LANES` lanes, which LLVM vectorises (the scalar
    reduction with its NaN test it does not: 5x to 10x slower), in the type of
    ``x + zero``: ``np.float32(0)`` keeps float32 rows in float32, ``0.0`` takes
    other dtypes to float64 (where an integer's ``abs`` cannot overflow).
    """
    n = row.shape[0]
    whole = n - n % _MAX_LANES
    if whole:
        lanes = np.full(_MAX_LANES, zero)
        for j0 in range(0, whole, _MAX_LANES):
            chunk = row[j0 : j0 + _MAX_LANES]
            for k in range(_MAX_LANES):
                a = abs(chunk[k] + zero)
                b = lanes[k]
                lanes[k] = a if (a > b or a != a) else b
        for k in range(_MAX_LANES):
            a = np.float64(lanes[k])
            if a > acc or a != a:
                acc = a
    for j in range(whole, n):
        a = abs(np.float64(row[j]))
        if a > acc or a != a:
            acc = a
    return acc


#: Values per float32 partial sum of `_single_sums` (at most 2**-24 relative error a term).
_SINGLE_BLOCK = 256
#: Smallest float32 partial sum trusted: below it squares may have lost bits to underflow.
_SINGLE_TINY = 2.0**-100


@njit(**_JIT_REASSOC)
def _single_sums(row, squares):
    """Sum of the squares (or of the absolute values) of a float32 row, in float64.

    Blocks of `_SINGLE_BLOCK` values are summed in float32, vectorised eight lanes
    wide (the conversion of every value to float64 made the float64 loop 20% slower
    out of cache), then added in float64. Every term is non-negative, so a block's
    relative error stays below ``256 * 2**-24`` (1.5e-5; 3e-10 measured on 2**22
    uniform values, where NumPy's float32 ``np.linalg.norm`` erred by 4e-6). A block
    whose float32 sum overflowed, may have underflowed (below `_SINGLE_TINY`, zero
    included) or is NaN is summed again in float64.
    """
    total = 0.0
    n = row.shape[0]
    whole = n - n % _SINGLE_BLOCK
    for b in range(0, whole, _SINGLE_BLOCK):
        block = row[b : b + _SINGLE_BLOCK]
        part = np.float32(0.0)
        if squares:
            for j in range(_SINGLE_BLOCK):
                part += block[j] * block[j]
        else:
            for j in range(_SINGLE_BLOCK):
                part += abs(block[j])
        if _SINGLE_TINY <= part < np.inf:
            total += part
        else:
            total = _row_norm_term(block, NORM_SQUARES if squares else NORM_ABS, 2.0, total)
    return _row_norm_term(row[whole:], NORM_SQUARES if squares else NORM_ABS, 2.0, total)


@njit(**_JIT_REASSOC)
def frame_norm_partials(x, o0, o1, j0, j1, kind, power, single, partial):
    """Accumulate per-frame norm terms of ``x`` (outer, n, inner) into ``partial`` (n,).

    The frame index is axis 1. ``kind`` selects sum of ``|x|**power``, of
    squares, of ``|x|``, or the maximum of ``|x|`` (NaN wins). ``single`` is
    True for float32 ``x``, whose sums of squares and of ``|x|`` go through
    `_single_sums` (and whose maxima stay float32), and None otherwise (Numba
    then drops those branches, which other dtypes never take, before compiling).
    """
    n = x.shape[1]
    if single is not None:
        if kind == NORM_SQUARES or kind == NORM_ABS:
            for o in range(o0, o1):
                for i in range(n):
                    partial[i] += _single_sums(x[o, i, j0:j1], kind == NORM_SQUARES)
            return
        if kind == NORM_MAX:  # |x| of float32 is exact in float32
            for o in range(o0, o1):
                for i in range(n):
                    partial[i] = _max_abs(x[o, i, j0:j1], np.float32(0.0), partial[i])
            return
    for o in range(o0, o1):
        for i in range(n):
            partial[i] = _row_norm_term(x[o, i, j0:j1], kind, power, partial[i])


@njit(**_JIT_REASSOC)
def _interleaved_terms(a, b, c, d, kind, power, acc):
    """``acc[k]`` += the norm terms of ``a[k]``, ``b[k]``, ``c[k]`` and ``d[k]`` (see below)."""
    if kind == NORM_SQUARES:
        for k in range(acc.shape[0]):
            va = np.float64(a[k])
            vb = np.float64(b[k])
            vc = np.float64(c[k])
            vd = np.float64(d[k])
            acc[k] += (va * va + vb * vb) + (vc * vc + vd * vd)
    elif kind == NORM_ABS:
        for k in range(acc.shape[0]):
            va = abs(np.float64(a[k]))
            vb = abs(np.float64(b[k]))
            vc = abs(np.float64(c[k]))
            vd = abs(np.float64(d[k]))
            acc[k] += (va + vb) + (vc + vd)
    elif kind == NORM_MAX:
        for k in range(acc.shape[0]):
            best = acc[k]
            for v in (a[k], b[k], c[k], d[k]):
                m = abs(np.float64(v))
                if m > best or m != m:
                    best = m
            acc[k] = best
    else:
        base = np.empty(acc.shape[0])
        terms = np.empty(acc.shape[0])
        for values in (a, b, c, d):
            _powers(values, power, base, terms)
            for k in range(acc.shape[0]):
                acc[k] += terms[k]


@njit(**_JIT_REASSOC)
def _interleaved_single(a, b, c, d, squares, acc32):
    """`_interleaved_terms` of float32 blocks into float32 sums (see `_single_sums`)."""
    if squares:
        for k in range(acc32.shape[0]):
            acc32[k] += (a[k] * a[k] + b[k] * b[k]) + (c[k] * c[k] + d[k] * d[k])
    else:
        for k in range(acc32.shape[0]):
            acc32[k] += (abs(a[k]) + abs(b[k])) + (abs(c[k]) + abs(d[k]))


@njit(**_JIT_REASSOC)
def _flush_single(flat, start, stop, width, kind, acc32, acc):
    """Add the float32 sums ``acc32`` of ``flat[start:stop]`` to ``acc`` and zero them;
    a sum `_single_sums` would not trust is summed again in float64 from the data."""
    for k in range(width):
        part = acc32[k]
        if _SINGLE_TINY <= part < np.inf:
            acc[k] += part
        else:
            acc[k] = _row_norm_term(flat[start + k : stop : width], kind, 2.0, acc[k])
        acc32[k] = 0.0


#: Values per block of `frame_norm_partials_flat` (rounded down to whole groups of frames).
INTERLEAVED_WIDTH = 1024


@njit(**_JIT_REASSOC)
def frame_norm_partials_flat(flat, start, stop, n, kind, power, single, partial):
    """`frame_norm_partials` for frames interleaved in a contiguous array.

    ``flat[start:stop]`` holds whole groups of ``n`` values, one per frame
    (``start`` a multiple of ``n``): the layout of a C-contiguous stack reduced
    along its last axis. Accumulates ``acc[k]`` over blocks of ``width`` (a
    multiple of ``n``) elements, four blocks per pass, so that the inner loop
    is long, vectorised and touches ``acc`` once per four blocks. For float32
    (``single``) sums of squares or of ``|x|``, the passes add into float32 sums,
    moved to ``acc`` every `_SINGLE_BLOCK` terms (as `_single_sums`; ``single``
    is True or None as there).
    """
    width = n * max(1, INTERLEAVED_WIDTH // n)
    acc = np.zeros(width)
    acc32 = np.zeros(width, np.float32)
    passes = 0
    since = start  # where the terms in acc32 begin
    block = start
    while block + 4 * width <= stop:
        a = flat[block : block + width]
        b = flat[block + width : block + 2 * width]
        c = flat[block + 2 * width : block + 3 * width]
        d = flat[block + 3 * width : block + 4 * width]
        block += 4 * width
        if single is not None:
            if kind == NORM_SQUARES or kind == NORM_ABS:
                _interleaved_single(a, b, c, d, kind == NORM_SQUARES, acc32)
                passes += 1
                if passes * 4 == _SINGLE_BLOCK:
                    _flush_single(flat, since, block, width, kind, acc32, acc)
                    passes = 0
                    since = block
                continue
        _interleaved_terms(a, b, c, d, kind, power, acc)
    if single is not None:
        if passes:
            _flush_single(flat, since, block, width, kind, acc32, acc)
    while block < stop:
        count = min(width, stop - block)
        row = flat[block : block + count]
        for k in range(count):
            acc[k] = _row_norm_term(row[k : k + 1], kind, power, acc[k])
        block += width
    for k in range(width):
        i = k % n
        if kind == NORM_MAX:
            if acc[k] > partial[i] or acc[k] != acc[k]:
                partial[i] = acc[k]
        else:
            partial[i] += acc[k]


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


# How `group_sums` and `window_sums` count an element: compare it with the
# threshold, count everything, count nothing, or add the value (a count).
COUNT_ABOVE, COUNT_ALL, COUNT_NONE, COUNT_VALUE = 0, 1, 2, 3


@njit(inline="always", **_JIT)
def _count(value, threshold, mode):
    if mode == COUNT_ABOVE:
        return 1 if value > threshold else 0
    if mode == COUNT_VALUE:
        return value
    return 1 if mode == COUNT_ALL else 0


@njit(**_JIT)
def group_sums(src, size, threshold, mode, dst):
    """Counts over consecutive groups of `size` along axis 1 of ``src`` (outer, n, inner).

    ``dst[o, g, j] = sum(count(src[o, i, j]))`` for ``g * size <= i <
    min((g + 1) * size, n)`` (the last group may be short), where `count`
    follows `mode` (see COUNT_*). Vectorised along the inner axis.
    """
    n_outer, n_groups, n_inner = dst.shape
    n = src.shape[1]
    full_groups = n // size
    for o in range(n_outer):
        if n_inner == 1:  # groups of a contiguous line: add strided views, g innermost
            line = src[o, :, 0]
            out = dst[o, :, 0]
            for g in range(n_groups):
                out[g] = 0
            for k in range(size):
                offset = line[k:]
                for g in range(full_groups):
                    out[g] += _count(offset[g * size], threshold, mode)
            for g in range(full_groups, n_groups):  # a short last group (edge="pad")
                for i in range(g * size, n):
                    out[g] += _count(line[i], threshold, mode)
            continue
        for g in range(n_groups):
            start = g * size
            stop = min(start + size, n)
            out = dst[o, g]
            row = src[o, start]
            for j in range(n_inner):
                out[j] = _count(row[j], threshold, mode)
            for i in range(start + 1, stop):
                row = src[o, i]
                for j in range(n_inner):
                    out[j] += _count(row[j], threshold, mode)


@njit(inline="always", **_JIT)
def _stored(count, divisor):
    """`count`, or the float32 fraction ``count / divisor`` (a `divisor` of None, a branch
    settled at compile time, keeps counts): the same float32 division as ``np.divide``."""
    if divisor is None:
        return count
    return np.float32(count) / divisor


@njit(**_JIT)
def window_sums(src, size, threshold, mode, dst, divisor=None):
    """Counts over every run of `size` consecutive entries along axis 1 (running sums).

    ``dst[o, g, j] = sum(count(src[o, i, j]))`` for ``g <= i < g + size``; the
    cost does not depend on `size`: each step adds the entering row and takes
    away the leaving one. With a float32 `divisor` (lines only: ``src`` of shape
    (outer, n, 1)) ``dst`` receives the fractions ``count / divisor`` instead,
    so that the last pass of a sliding density needs no array of counts.
    """
    n_outer, n_out, n_inner = dst.shape
    if divisor is not None and n_inner != 1:
        raise ValueError("window_sums: fractions only along lines")
    for o in range(n_outer):
        if n_inner == 1:
            line = src[o, :, 0]
            out = dst[o, :, 0]
            total = 0
            for i in range(size):
                total += _count(line[i], threshold, mode)
            out[0] = _stored(total, divisor)
            for g in range(1, n_out):
                total += _count(line[g + size - 1], threshold, mode)
                total -= _count(line[g - 1], threshold, mode)
                out[g] = _stored(total, divisor)
            continue
        first = dst[o, 0]
        row = src[o, 0]
        for j in range(n_inner):
            first[j] = _count(row[j], threshold, mode)
        for i in range(1, size):
            row = src[o, i]
            for j in range(n_inner):
                first[j] += _count(row[j], threshold, mode)
        for g in range(1, n_out):
            previous = dst[o, g - 1]
            out = dst[o, g]
            entering = src[o, g + size - 1]
            leaving = src[o, g - 1]
            for j in range(n_inner):
                out[j] = (
                    previous[j]
                    + _count(entering[j], threshold, mode)
                    - _count(leaving[j], threshold, mode)
                )


@njit(inline="always", **_JIT)
def _four_block_rows(src, t, z0, y0, planes, rows, k):
    """Input rows ``k..k + 3`` of a block row, whose row ``k`` is at plane
    ``z0 + planes[k]``, row ``y0 + rows[k]`` (a table: no division per row)."""
    return (
        src[t, z0 + planes[k], y0 + rows[k]],
        src[t, z0 + planes[k + 1], y0 + rows[k + 1]],
        src[t, z0 + planes[k + 2], y0 + rows[k + 2]],
        src[t, z0 + planes[k + 3], y0 + rows[k + 3]],
    )


@njit(inline="always", **_JIT)
def _above(value, threshold):
    """Whether `value` is above `threshold`. A `threshold` of None (a branch settled at
    compile time) is 0 for unsigned values, tested as ``value != 0``: an equality
    AVX2 computes into a vector, where LLVM compiles the unsigned ``>`` to an AVX-512
    comparison into a mask register and a move back (one execution port for both);
    `block_density` on a bool image in cache: 1.8x to 2.2x faster with rows of 2048
    to 8192 values."""
    if threshold is None:
        return value != 0
    return value > threshold


@njit(inline="always", **_JIT)
def _four_counts(a, b, c, d, j, threshold):
    """How many of ``a[j]``, ``b[j]``, ``c[j]`` and ``d[j]`` are above `threshold`."""
    return (_above(a[j], threshold) + _above(b[j], threshold)) + (
        _above(c[j], threshold) + _above(d[j], threshold)
    )


@njit(**_JIT)
def block_density(src, wz, wy, wx, threshold, pad, volume, acc, out, r0, r1):
    """Block densities of rows ``r0:r1`` of ``out`` in one pass over their input.

    ``src`` is (T, Z, Y, X), ``out`` (T, Zo, Yo, Xo) float32 with ``Zo =
    Z // wz`` (or ``ceil`` when `pad`), the same along Y and X; output row
    ``r`` is ``out[t, zo, yo]`` with ``r = (t * Zo + zo) * Yo + yo``. The
    ``wz * wy`` input rows of a block row are counted (values above `threshold`,
    None for nonzero unsigned values; the caller handles the thresholds that
    count all or none) into
    ``acc`` (length X or more, an unsigned dtype that holds ``wz * wy * wx``;
    a multiple of 8 lets byte counts be read as words), which stays in cache,
    and its groups of ``wx`` become fractions: ``count /
    volume``, or over the elements that exist when `pad` (the product of the
    existing sizes in float32, as the reference does).
    """
    n_z, n_y, n_x = src.shape[1], src.shape[2], src.shape[3]
    zo_n, yo_n, xo_n = out.shape[1], out.shape[2], out.shape[3]
    full = n_x // wx
    # uint8 counts (block volume < 256) of groups of 2, 4 or 8 are summed as one word:
    # shifted copies add its bytes into the lowest one, without carries (8-bit lanes
    # would need shuffles; this is 1.5x faster for the whole kernel).
    bytewise = acc.itemsize == 1 and acc.shape[0] % 8 == 0
    plane = zo_n * yo_n
    one = np.float32(1.0)
    planes = np.empty(wz * wy, np.intp)  # where the rows of a block row are
    rows_at = np.empty(wz * wy, np.intp)
    table_height = 0
    for r in range(r0, r1):
        t = r // plane
        zo = (r % plane) // yo_n
        yo = r % yo_n
        z0 = zo * wz
        z1 = min(z0 + wz, n_z)
        y0 = yo * wy
        y1 = min(y0 + wy, n_y)
        # the block row's input rows, eight or four per pass over acc
        height = y1 - y0
        rows = (z1 - z0) * height
        if height != table_height:  # a partial last block along Y (pad) has fewer rows
            for k in range(wz * height):
                planes[k] = k // height
                rows_at[k] = k % height
            table_height = height
        for j in range(n_x):
            acc[j] = 0
        k = 0
        while k + 8 <= rows:
            a, b, c, d = _four_block_rows(src, t, z0, y0, planes, rows_at, k)
            e, f, g, h = _four_block_rows(src, t, z0, y0, planes, rows_at, k + 4)
            for j in range(n_x):
                acc[j] += _four_counts(a, b, c, d, j, threshold) + _four_counts(
                    e, f, g, h, j, threshold
                )
            k += 8
        if k + 4 <= rows:
            a, b, c, d = _four_block_rows(src, t, z0, y0, planes, rows_at, k)
            for j in range(n_x):
                acc[j] += _four_counts(a, b, c, d, j, threshold)
            k += 4
        while k < rows:
            a = src[t, z0 + planes[k], y0 + rows_at[k]]
            for j in range(n_x):
                acc[j] += _above(a[j], threshold)
            k += 1
        target = out[t, zo, yo]
        if pad:
            den = one * np.float32(z1 - z0) * np.float32(y1 - y0)
            den_full = den * np.float32(wx)
        else:
            den = volume
            den_full = volume
        if wx == 1:
            for g in range(full):
                target[g] = np.float32(acc[g]) / den_full
        elif bytewise and wx == 4:  # one uint32 word per group
            words = acc.view(np.uint32)
            for g in range(full):
                w = words[g]
                w += w >> np.uint32(8)
                w += w >> np.uint32(16)
                target[g] = np.float32(w & np.uint32(0xFF)) / den_full
        elif bytewise and wx == 8:
            longs = acc.view(np.uint64)
            for g in range(full):
                w = longs[g]
                w += w >> np.uint64(8)
                w += w >> np.uint64(16)
                w += w >> np.uint64(32)
                target[g] = np.float32(w & np.uint64(0xFF)) / den_full
        elif bytewise and wx == 2:
            halves = acc.view(np.uint16)
            for g in range(full):
                w = halves[g]
                target[g] = np.float32((w + (w >> np.uint16(8))) & np.uint16(0xFF)) / den_full
        elif wx == 2:
            for g in range(full):
                target[g] = np.float32(acc[2 * g] + acc[2 * g + 1]) / den_full
        elif wx == 4:
            for g in range(full):
                k = 4 * g
                total = (acc[k] + acc[k + 1]) + (acc[k + 2] + acc[k + 3])
                target[g] = np.float32(total) / den_full
        else:
            for g in range(full):
                total = 0
                for k in range(g * wx, g * wx + wx):
                    total += acc[k]
                target[g] = np.float32(total) / den_full
        if full < xo_n:  # a partial last block (pad)
            total = 0
            for k in range(full * wx, n_x):
                total += acc[k]
            target[full] = np.float32(total) / (den * np.float32(n_x - full * wx))


@njit(**_JIT)
def pack_selected(points, mask, f0, f1, fill, packed):
    """Copy the selected rows of frames ``f0:f1`` to the front of `packed`, then fill.

    ``points`` (F, P, K), ``mask`` (F, P) bool, ``packed`` (F, M, K): one read
    of the selected rows and one write of the output, no temporaries.
    """
    n_points = points.shape[1]
    n_features = points.shape[2]
    slots = packed.shape[1]
    for f in range(f0, f1):
        selected = mask[f]
        rank = 0
        for p in range(n_points):
            if selected[p]:
                source = points[f, p]
                target = packed[f, rank]
                for k in range(n_features):
                    target[k] = source[k]
                rank += 1
        for r in range(rank, slots):
            target = packed[f, r]
            for k in range(n_features):
                target[k] = fill


@njit(**_JIT)
def masked_copy(image, inside, fill, r0, r1, c0, c1, out):
    """``out[r, c] = image[r, c] if inside[c] else fill`` for a box of rows and columns.

    ``image`` and ``out`` are (R, C): the leading axes merged into rows, the
    mask's axes into columns; ``inside`` (C,) is the flattened mask.
    """
    mask = inside[c0:c1]
    for r in range(r0, r1):
        source = image[r, c0:c1]
        target = out[r, c0:c1]
        for c in range(c1 - c0):
            target[c] = source[c] if mask[c] else fill


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
