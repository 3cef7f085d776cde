"""The JIT options and the low-level helpers the kernel families share.

Why each exists (figures measured on this project's machine, see the docstrings):

- `_JIT`: every kernel releases the GIL (``nogil``: `napari_voxelwise._plan` runs
  several at once), is cached on disk (``cache``: compiled once per install, not per
  run) and keeps IEEE division (``error_model="numpy"``: no ZeroDivisionError).
  `_JIT_REASSOC` adds reassociation, which lets LLVM vectorise float sums over
  several accumulators (`line_moments.moment_statistic_lines`: 4x to 5x faster than
  one serial float64 sum, to within 2e-15 of it); `_JIT_CONTRACT` only fused
  multiply-adds (slightly more accurate, and faster).
- `_prefetch_line` (an LLVM intrinsic) and `_prefetch`: the kernels that compute
  between their loads ask for the values `PREFETCH_AHEAD` bytes ahead; the hardware's
  own prefetching left them waiting for memory (variance of float32 lines of eight,
  512 MiB on two threads: 43.5 -> 31 ms, against a read-once floor of 20.6 ms).
- `_line_step` and `_prefetched_lines`: the short-line kernels read their lines in
  tiles of about 1 KiB, each prefetched ahead, as views indexed from 0, which LLVM
  vectorises (a loop indexed from the tile's first line ran 2x slower).
- `_borrowed` (an intrinsic): an array without its reference count, so that the
  views a tile loop takes do not update a count both threads share (in cache on one
  thread, lines of eight: uint16 variance 14.4 -> 11.9 ms, float32 27.9 -> 22.2;
  float32 variance of lines of 17, two threads: 58.4 -> 45.8 ms).
- `_is_float32` (an ``overload``): a dtype test settled when a kernel is compiled, so
  that LLVM drops the branch not taken (the float32 variance of short lines in
  float32 arithmetic, 2x faster in cache, compiled only for float32).
- `_MOMENT_TILE`, `_four_rows`, `_eight_last_rows`: tiles of voxels whose float64
  sums stay in the L1 cache, and their rows as views indexed from 0, which LLVM
  vectorises (the moment, exact integer and extremum kernels along other axes).

`_prefetch_line`, `_borrowed` and `_is_float32` use Numba's extension API
(``intrinsic``, ``overload``, ``cgutils``) and llvmlite's IR builder:
``tests/test_kernel_intrinsics.py`` checks them, so that an upgrade of numba or
llvmlite that changes that API fails there, by name.
"""

from __future__ import annotations

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


def _is_float32(values):
    """Whether `values` (an array) holds float32, known when a kernel is compiled (so
    LLVM drops the branch not taken); only callable from compiled code."""
    raise NotImplementedError


@overload(_is_float32)
def _is_float32_overload(values):
    answer = values.dtype == types.float32
    return lambda values: answer


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
