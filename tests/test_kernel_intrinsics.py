"""The low-level helpers of `napari_voxelwise._kernels._intrinsics`, checked on their own.

`_prefetch_line`, `_borrowed` and `_is_float32` rest on Numba's extension API
(``intrinsic``, ``overload``, ``cgutils``, the array data model's ``meminfo`` and
``parent``) and on llvmlite's IR builder (``declare_intrinsic``, LLVM's ``prefetch``),
which are not stable public APIs. Each test compiles a tiny function around one helper
(``cache=False``: nothing is written to disk) and compares it with the plain
computation, so that an upgrade that changes that API fails here, naming the helper,
rather than as a crash, a leak or a wrong result deep inside a statistics test.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import sys

import numpy as np
import pytest
from numba import njit

from napari_voxelwise import _kernels, axis_statistic

pytestmark = pytest.mark.kernels  # the kernels and their intrinsics themselves

#: The family modules of `napari_voxelwise._kernels` (those not named with an underscore).
FAMILIES = sorted(
    module.name for module in pkgutil.iter_modules(_kernels.__path__) if module.name[0] != "_"
)


def _hint(name: str) -> str:
    import llvmlite
    import numba

    return (
        f"{name} (napari_voxelwise._kernels._intrinsics) is broken: a numba/llvmlite upgrade "
        f"(now numba {numba.__version__}, llvmlite {llvmlite.__version__}) probably changed "
        f"the API it relies on; see the docstrings there"
    )


def _run(name: str, function, *args):
    """``function(*args)``, compiling it on this first call: a typing or lowering error
    fails the test with `_hint` instead of a traceback from inside numba."""
    try:
        return function(*args)
    except Exception as error:  # numba's TypingError, LoweringError, llvmlite's errors...
        pytest.fail(f"{_hint(name)}. Compiling a function that uses it raised {error!r}")


@pytest.fixture(scope="module")
def intrinsics():
    try:
        return importlib.import_module("napari_voxelwise._kernels._intrinsics")
    except Exception as error:  # e.g. numba.extending or numba.core.cgutils moved
        pytest.fail(f"{_hint('the module')}. Importing it raised {error!r}")


@contextlib.contextmanager
def _allocation_stats():
    """Numba's runtime allocation counters, switched on for the block: yields a function
    returning (alloc, free, mi_alloc, mi_free) since the block began."""
    from numba.core.runtime import _nrt_python, rtsys

    was_enabled = _nrt_python.memsys_stats_enabled()
    _nrt_python.memsys_enable_stats()
    before = rtsys.get_allocation_stats()

    def since():
        now = rtsys.get_allocation_stats()
        return (
            now.alloc - before.alloc,
            now.free - before.free,
            now.mi_alloc - before.mi_alloc,
            now.mi_free - before.mi_free,
        )

    try:
        yield since
    finally:
        if not was_enabled:
            _nrt_python.memsys_disable_stats()


def test_prefetch_line_emits_llvms_prefetch_and_changes_nothing(intrinsics):
    prefetch_line = intrinsics._prefetch_line

    @njit(cache=False)
    def total_after_prefetching(values):
        base = values.ctypes.data
        size = np.uintp(values.itemsize)
        total = 0.0
        for i in range(values.shape[0]):
            prefetch_line(base + np.uintp(i) * size)
            total += values[i]
        return total

    values = np.arange(1000, dtype=np.float64)
    copy = values.copy()
    result = _run("_prefetch_line", total_after_prefetching, values)
    assert result == copy.sum(), _hint("_prefetch_line") + ": the result changed"
    np.testing.assert_array_equal(values, copy, err_msg=_hint("_prefetch_line"))
    llvm = "".join(total_after_prefetching.inspect_llvm().values())
    assert "@llvm.prefetch" in llvm, _hint("_prefetch_line") + ": no call of llvm.prefetch"


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.float64])
def test_prefetch_of_any_range_changes_nothing(intrinsics, dtype):
    """`_prefetch` clamps its range to the array: ranges before, across and past it."""
    prefetch = intrinsics._prefetch

    @njit(cache=False)
    def total_after_prefetching(flat, start, stop):
        prefetch(flat, start, stop)
        total = 0.0
        for i in range(flat.shape[0]):
            total += flat[i]
        return total

    flat = (np.arange(3000) % 251).astype(dtype)
    copy = flat.copy()
    for start, stop in [(0, 3000), (-500, 100), (2900, 10**6), (5000, 9000), (40, 30)]:
        result = _run("_prefetch", total_after_prefetching, flat, start, stop)
        assert result == copy.sum(dtype=np.float64), (_hint("_prefetch"), start, stop)
    np.testing.assert_array_equal(flat, copy, err_msg=_hint("_prefetch"))


@pytest.mark.parametrize("n", [1, 3, 8, 16])
def test_prefetched_lines_are_the_tiles_views(intrinsics, n):
    """`_line_step` and `_prefetched_lines`: the short-line kernels' tiles, as views."""
    line_step, prefetched_lines = intrinsics._line_step, intrinsics._prefetched_lines

    @njit(cache=False)
    def line_sums(flat, n, out):
        step = line_step(n, flat.itemsize)
        for a in range(0, out.shape[0], step):
            lines, target = prefetched_lines(flat, out, a, min(a + step, out.shape[0]), n)
            for j in range(target.shape[0]):
                total = 0.0
                for i in range(n):
                    total += lines[j * n + i]
                target[j] = total
        return step

    x = np.random.default_rng(n).random((1001, n)).astype(np.float32)
    copy = x.copy()
    out = np.full(1001, np.nan)
    step = _run("_prefetched_lines", line_sums, x.reshape(-1), n, out)
    assert step % 8 == 0 and step >= 8, (_hint("_line_step"), step)
    np.testing.assert_allclose(
        out, copy.sum(axis=1, dtype=np.float64), rtol=1e-12, err_msg=_hint("_prefetched_lines")
    )
    np.testing.assert_array_equal(x, copy, err_msg=_hint("_prefetched_lines"))


def test_borrowed_arrays_give_the_same_results_and_keep_memory_balanced(intrinsics):
    """Views of `_borrowed` arrays (reshapes, slices, rows) read and write the caller's
    arrays, whose reference counts and numba's allocation counts come out balanced."""
    borrowed = intrinsics._borrowed

    @njit(cache=False)
    def doubled_through_views(x, out):
        x, out = borrowed(x), borrowed(out)
        n = x.shape[1]
        flat = x.reshape(x.shape[0] * n)
        total = 0.0
        for o in range(x.shape[0]):
            line = flat[o * n : (o + 1) * n]
            row = out[o]
            for i in range(n):
                row[i] = 2.0 * line[i]
                total += line[i]
        return total

    x = np.random.default_rng(1).random((257, 7))
    copy = x.copy()
    out = np.zeros_like(x)
    first = _run("_borrowed", doubled_through_views, x, out)  # compiles
    references = sys.getrefcount(x), sys.getrefcount(out)
    out[...] = 0.0
    with _allocation_stats() as since:
        again = doubled_through_views(x, out)
        alloc, free, mi_alloc, mi_free = since()
    hint = _hint("_borrowed")
    np.testing.assert_array_equal(out, 2.0 * copy, err_msg=hint)
    np.testing.assert_array_equal(x, copy, err_msg=hint + ": the input changed")
    assert first == again == pytest.approx(copy.sum(), rel=1e-12), hint
    assert (sys.getrefcount(x), sys.getrefcount(out)) == references, hint + ": reference leak"
    assert mi_alloc > 0, "numba's allocation statistics are off: nothing to compare"
    assert alloc == free, f"{hint}: {alloc} allocations, {free} frees"
    assert mi_alloc == mi_free, f"{hint}: {mi_alloc} meminfos made, {mi_free} freed"


def test_is_float32_is_known_when_compiling(intrinsics):
    is_float32 = intrinsics._is_float32

    @njit(cache=False)
    def answer(values):
        return is_float32(values)

    for dtype in (np.float32, np.float64, np.uint16, np.int16):
        result = _run("_is_float32", answer, np.zeros(3, dtype))
        assert result == (dtype == np.float32), (_hint("_is_float32"), np.dtype(dtype).name)


def test_every_kernel_keeps_the_shared_jit_options():
    """Every kernel and helper of the families is compiled with `_JIT`'s options: without
    the GIL, cached on disk, IEEE division."""
    from numba.core.caching import FunctionCache
    from numba.core.registry import CPUDispatcher

    count = 0
    for family in FAMILIES:
        module = importlib.import_module(f"napari_voxelwise._kernels.{family}")
        for name, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.__module__ == module.__name__:
                options = value.targetoptions
                assert options.get("nogil") is True, (family, name, options)
                assert options.get("error_model") == "numpy", (family, name, options)
                assert isinstance(value._cache, FunctionCache), (family, name, "not cached")
                count += 1
    assert len(FAMILIES) >= 10 and count > 60, (FAMILIES, count)


def test_kernels_on_borrowed_arrays_leave_numba_memory_balanced():
    """The short-line kernels take their arrays without reference counts (`_borrowed`):
    every array numba's runtime allocates during the calls is freed again, and the input
    and the results stay intact."""
    rng = np.random.default_rng(7)
    stacks = [
        rng.random((3000, 8), dtype=np.float32),
        rng.integers(0, 65536, (3000, 6), dtype=np.uint16),  # word pairs
        rng.integers(-9, 9, (3000, 5)).astype(np.int16),  # odd lengths
        rng.random((3000, 20)),  # the kernel of longer lines
    ]
    copies = [stack.copy() for stack in stacks]

    def run():
        return [
            axis_statistic(stack, statistic, axis=-1, workers=2)
            for stack in stacks
            for statistic in ("mean", "var", "std", "cv", "min", "max")
        ]

    first = run()  # compiles
    with _allocation_stats() as since:
        again = run()
        alloc, free, mi_alloc, mi_free = since()
    hint = _hint("_borrowed")
    assert mi_alloc > 0  # counting is on (numba wraps every array passed in)
    assert alloc == free, f"{hint}: {alloc} allocations, {free} frees"
    assert mi_alloc == mi_free, f"{hint}: {mi_alloc} meminfos made, {mi_free} freed"
    for stack, copy in zip(stacks, copies, strict=True):
        np.testing.assert_array_equal(stack, copy)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(first[1], np.var(stacks[0].astype(np.float64), axis=-1), rtol=2e-6)
