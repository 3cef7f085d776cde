"""Counts of values above a threshold: ``group_sums``, ``window_sums``, ``block_density``.

The counting modes ``COUNT_*`` are in :mod:`napari_voxelwise._kernels`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import COUNT_ABOVE, COUNT_ALL, COUNT_VALUE
from ._intrinsics import _JIT


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
