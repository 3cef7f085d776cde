"""Per-frame norm partial sums: ``frame_norm_partials`` and ``frame_norm_partials_flat``.

The codes ``NORM_*`` and `by_squaring` are in :mod:`napari_voxelwise._kernels`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import INTERLEAVED_WIDTH, NORM_ABS, NORM_MAX, NORM_SQUARES, SQUARED_POWERS
from ._intrinsics import _JIT_REASSOC


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
