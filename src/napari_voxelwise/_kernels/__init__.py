"""Numba kernels of the numeric core (CPU), one module per family.

The family modules are imported lazily, by the computations that need them, so
that importing the plugin never loads Numba; this package's ``__init__`` itself
is Numba-free (plain codes, constants and NumPy helpers that the core modules
read before any kernel runs). The kernels are serial and release the GIL
(``nogil``); parallelism comes from :mod:`napari_voxelwise._plan`, which runs
several of them at once on slabs of the data. Each kernel is compiled on first
use for the dtypes it meets and cached on disk.

Every kernel uses IEEE float semantics (``error_model="numpy"``): a division by
zero gives inf or NaN instead of raising.

Modules:

- ``_intrinsics``: the JIT options and the low-level helpers shared by the
  families (prefetching, arrays without reference counts, row views, a
  compile-time dtype test), each with what it buys.
- ``moments``: mean, variance, std, cv and sum along an axis other than the last
  (float64 sums shifted by the first sample), their shared finishing helpers,
  and the NaN-skipping moments (``moment_statistic_skipna``).
- ``line_moments``: the same statistics of lines (a stack reduced along its
  last axis): ``moment_statistic_lines`` and, for lines of up to
  `SHORT_LINES`, ``moment_statistic_short_lines``.
- ``integer_moments``: exact variance, std and cv of integers of at most 16 bits
  (along other axes, short lines, 16-bit lines read as uint32 word pairs).
- ``extrema``: minimum and maximum.
- ``median``: the median by a sorting network (`median_network`).
- ``norms``: per-frame norm partial sums (``frame_norm_partials``, ``_flat``).
- ``filters``: derivative filters: ``correlate_lines``, ``difference_lines``,
  ``interleave``, ``vector_norms``.
- ``density``: ``group_sums``, ``window_sums``, ``block_density``.
- ``masks``: ``pack_selected``, ``masked_copy``.
- ``eigenvalues``: closed-form eigenvalues of symmetric 2x2 and 3x3 matrices.

Numba checks a cached kernel against its own source file only: after editing
``_intrinsics.py`` (or a module whose helpers another imports, such as
``moments``), kernels cached from the other modules are stale; delete the
``*.nbi`` and ``*.nbc`` files in ``_kernels/__pycache__`` (a new install
rewrites every file, so users are not affected).
"""

from __future__ import annotations

import functools
import math

import numpy as np

# Codes of the moment statistics (`moments._finish_moment`, the line kernels' ``stat``).
STAT_MEAN, STAT_VAR, STAT_STD, STAT_CV, STAT_SUM = 0, 1, 2, 3, 4
# Codes of the eigenvalue orders.
ORDER_DESCENDING, ORDER_ASCENDING, ORDER_ABS = 0, 1, 2
# Codes of the norms computed by `norms.frame_norm_partials`.
NORM_POWER, NORM_SQUARES, NORM_ABS, NORM_MAX = 0, 1, 2, 3


# How `density.group_sums` and `density.window_sums` count an element: compare it with the
# threshold, count everything, count nothing, or add the value (a count).
COUNT_ABOVE, COUNT_ALL, COUNT_NONE, COUNT_VALUE = 0, 1, 2, 3


#: Longest line of `line_moments.moment_statistic_short_lines` (one compiled kernel per length).
SHORT_LINES = 16


#: Longest axis of the exact integer kernels: ``n * sum(x**2) - sum(x)**2`` of 16-bit
#: integers stays below 2**63 (exact in int64), and ``sum(x**2)`` below 2**53 (exact in float64).
EXACT_INTEGER_LINES = 46340
#: Longest axis for which that numerator stays below 2**53 too (exact in float64 arithmetic).
EXACT_FLOAT_LINES = 1448


#: XOR of a uint32 word that turns its two int16 halves ``s`` into uint16 ``s + 32768``.
SIGNED_HALVES = np.uint32(0x80008000)


#: Longest axis whose median `median.median_statistic` takes; NumPy's beyond. Batcher's network
#: grows as n log² n (445 compare-exchanges for the median of 64 values, 19978 of 1000,
#: 117894 of 4000), NumPy's selection as n, but each compare-exchange here is a vectorised
#: loop across a tile: one thread, float32, 4.6x to 6.5x faster than ``np.median`` from 300
#: to 4000 values, 2.5x still at 16000, where building the network takes a second.
MEDIAN_NETWORK_ROWS = 4096
#: Voxels per tile of `median.median_statistic` at most, and the bytes its rows may take (1 MiB,
#: in the L2 cache: 1000 float32 rows of 256 voxels, 4000 of 64; fewer voxels per tile
#: for longer lines, see `median_tile`).
MEDIAN_TILE = 256
MEDIAN_ROWS_BYTES = 2**20


def median_tile(n: int, itemsize: int) -> int:
    """Voxels per tile of `median.median_statistic` for rows of ``n`` values of ``itemsize`` bytes:
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


#: Largest order `norms._powers` raises by repeated squaring (integer and half-integer orders).
SQUARED_POWERS = 64.0


def by_squaring(power: float) -> bool:
    """Whether `norms._powers` raises to `power` by repeated squaring (else by ``pow`` per value,
    which the callers avoid: see `napari_voxelwise.statistics.frame_norms_plan`)."""
    return 2.0 * power == math.floor(2.0 * power) and power <= SQUARED_POWERS


#: Values per block of `norms.frame_norm_partials_flat` (rounded down to whole groups of frames).
INTERLEAVED_WIDTH = 1024
