"""voxel_variance, axis_statistic and frame_norms against NumPy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import DTYPES, checksum, random_data
from napari_voxelwise import axis_statistic, frame_norms, voxel_variance
from napari_voxelwise._kernels import INTERLEAVED_WIDTH
from napari_voxelwise.statistics import STATISTICS


def float_rtol(array):
    return 1e-12 if array.dtype == np.float64 else 2e-6


# ----------------------------------------------------------------------- voxel_variance


def test_seed_example_10x10x10x5():
    """The user's question: variance of each voxel of a 10x10x10x5 stack along k."""
    stack = np.random.default_rng(0).random((10, 10, 10, 5))
    variance = voxel_variance(stack, axis=3)
    assert variance.shape == (10, 10, 10)
    np.testing.assert_allclose(variance, stack.var(axis=3), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.bool_, np.int32, np.float16, *DTYPES])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("ddof", [0, 1])
def test_variance_matches_numpy(dtype, axis, ddof, workers):
    stack = random_data((6, 7, 33), dtype)
    before = checksum(stack)
    result = voxel_variance(stack, axis=axis, ddof=ddof, workers=workers)
    expected = np.var(stack.astype(np.float64), axis=axis, ddof=ddof)
    assert result.dtype == (np.float64 if dtype == np.float64 else np.float32)
    np.testing.assert_allclose(result, expected, rtol=float_rtol(result), atol=1e-30)
    assert checksum(stack) == before


@pytest.mark.parametrize(
    "make_view",
    [
        lambda a: a.transpose(2, 0, 1),
        lambda a: a[::2, :, ::3],
        lambda a: a[::-1, 1:, :],
        lambda a: np.asfortranarray(a),
        lambda a: a.transpose(1, 2, 0)[:, ::2],
    ],
    ids=["transposed", "stepped", "reversed", "fortran", "transposed-stepped"],
)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_variance_of_non_contiguous_views(make_view, axis, workers):
    view = make_view(random_data((9, 10, 11), np.float32))
    result = voxel_variance(view, axis=axis, workers=workers)
    np.testing.assert_allclose(result, np.var(view.astype(np.float64), axis=axis), rtol=2e-6)


@pytest.mark.parametrize("shape", [(1,), (7,), (1, 5), (5, 1), (1, 1, 1), (3, 1, 4, 1)])
def test_variance_of_small_and_size_one_axes(shape):
    stack = random_data(shape, np.float64)
    for axis in range(len(shape)):
        expected = np.var(stack, axis=axis)
        np.testing.assert_allclose(voxel_variance(stack, axis=axis), expected, atol=1e-12)


def test_variance_of_large_task_split_equals_single_thread():
    """Several tasks (chunks) give the same result as one (chunk boundaries)."""
    stack = random_data((3, 257, 1031), np.uint16, seed=3)
    one = voxel_variance(stack, axis=0, workers=1)
    many = voxel_variance(stack, axis=0, workers=4)
    np.testing.assert_array_equal(one, many)


def test_variance_keeps_precision_with_a_large_offset():
    """Two-pass in float64: a small spread on a huge mean is not lost."""
    rng = np.random.default_rng(1)
    stack = (1e6 + rng.standard_normal((4, 5, 50))).astype(np.float64)
    np.testing.assert_allclose(voxel_variance(stack), stack.var(axis=-1), rtol=1e-9)


def test_variance_of_integer_extremes():
    stack = np.array([[0, 65535, 0, 65535]], dtype=np.uint16)
    np.testing.assert_allclose(voxel_variance(stack), [65535.0**2 / 4], rtol=1e-7)
    big = (2**62 + np.array([[0, 2**40, 2 * 2**40]])).astype(np.int64)
    np.testing.assert_allclose(voxel_variance(big), np.var(big.astype(np.float64), axis=-1))


def _exact_moments(lines, statistic, ddof):
    """var/std/cv of each integer line in exact rational arithmetic (Python's `statistics`)."""
    import statistics as stats

    out = []
    for line in lines.tolist():
        var = stats.pvariance(line) if ddof == 0 else stats.variance(line)
        if statistic == "var":
            out.append(float(var))
        elif statistic == "std":
            out.append(float(var) ** 0.5)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):  # a zero mean: inf or NaN
                out.append(np.float64(float(var) ** 0.5) / np.float64(stats.fmean(line)))
    return np.array(out)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8, np.int8, np.bool_])
@pytest.mark.parametrize("length", [5, 8, 16, 21])
@pytest.mark.parametrize("statistic", ["var", "std", "cv"])
@pytest.mark.parametrize("ddof", [0, 1])
def test_small_integer_moments_are_exact(dtype, length, statistic, ddof):
    """Integers of up to 16 bits: exact sums, so the result is the exact value rounded,
    along a first axis (inner tiles) and a last axis (short lines: one kernel per length)."""
    rng = np.random.default_rng(length)
    if dtype == np.bool_:
        stack = rng.random((length, 5, 150)) < 0.5
    else:
        info = np.iinfo(dtype)  # extremes included: the largest sums and squares
        stack = rng.choice([info.min, info.max, info.min + 1, 0, info.max // 3], (length, 5, 150))
        stack = stack.astype(dtype)
    expected = _exact_moments(stack.reshape(length, -1).T, statistic, ddof).reshape(5, 150)
    first = axis_statistic(stack, statistic, axis=0, ddof=ddof)
    last = axis_statistic(np.moveaxis(stack, 0, -1).copy(), statistic, axis=-1, ddof=ddof)
    for result in (first, last):
        assert result.dtype == np.float32
        np.testing.assert_allclose(result, expected, rtol=2e-7, equal_nan=True)


def test_integer_variance_at_the_exact_length_limit():
    """The longest axis summed exactly, and one more (the float64 kernel), both right."""
    from napari_voxelwise._kernels import EXACT_INTEGER_LINES

    for length in (EXACT_INTEGER_LINES, EXACT_INTEGER_LINES + 1):
        stack = np.zeros((length, 3), np.uint16)
        stack[::2, :2] = 65535
        stack[::3, 1] = 1
        stack[:, 2] = 65535  # sums and squares at their largest: the int64 numerator's limit
        expected = _exact_moments(stack.T, "var", 1)
        np.testing.assert_allclose(voxel_variance(stack, axis=0, ddof=1), expected, rtol=2e-7)


def test_integer_variance_at_the_float_numerator_limit():
    """Up to EXACT_FLOAT_LINES values the numerator is formed in float64, beyond in int64:
    a variance of 1 - 1/n**2 from values near 65535 (n * sum(x**2) ~ 2**53) is right in both."""
    from napari_voxelwise._kernels import EXACT_FLOAT_LINES

    for length in (EXACT_FLOAT_LINES, EXACT_FLOAT_LINES + 1):
        stack = np.full((length, 2), 65535, np.uint16)
        stack[0, 0] = 65534  # a tiny numerator (n - 1) next to products near 2**53
        stack[::2, 1] = 0
        expected = _exact_moments(stack.T, "var", 0)
        np.testing.assert_allclose(voxel_variance(stack, axis=0), expected, rtol=2e-7)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16])
def test_16bit_short_lines_in_any_layout(dtype):
    """Even 16-bit lines are read as uint32 word pairs: C-contiguous, strided (copied) and
    unaligned (words not on a 4-byte boundary) stacks give the exact result."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(7)
    values = rng.integers(info.min, info.max, (60, 2, 17), endpoint=True).astype(dtype)
    for length in (2, 8, 14):
        unaligned = np.empty(60 * 2 * length + 1, dtype)[1:].reshape(60, 2, length)
        unaligned[...] = values[..., :length]  # C-contiguous, 2 bytes past a 4-byte boundary
        assert unaligned.flags.c_contiguous and unaligned.ctypes.data % 4 == 2
        for stack in (values[..., :length].copy(), values[..., 1 : length + 1], unaligned):
            expected = _exact_moments(stack.reshape(-1, length), "var", 1).reshape(60, 2)
            result = axis_statistic(stack, "var", axis=-1, ddof=1)
            np.testing.assert_allclose(result, expected, rtol=2e-7)
            mean = stack.astype(np.float64).mean(axis=-1)
            cv = axis_statistic(stack, "cv", axis=-1)
            np.testing.assert_allclose(cv, np.std(stack, axis=-1) / mean, rtol=1e-6)


def test_variance_nan_propagates_unless_skipna():
    stack = random_data((4, 6, 5), np.float32)
    stack[1, 2, 3] = np.nan
    plain = voxel_variance(stack, axis=-1)
    assert np.isnan(plain[1, 2])
    assert np.isfinite(np.delete(plain.ravel(), 1 * 6 + 2)).all()
    skipped = voxel_variance(stack, axis=-1, skipna=True, ddof=1)
    np.testing.assert_allclose(
        skipped, np.nanvar(stack.astype(np.float64), axis=-1, ddof=1), rtol=2e-6
    )


def test_variance_skipna_with_too_few_values_is_nan():
    stack = np.array([[np.nan, np.nan, 1.0], [np.nan, np.nan, np.nan], [1.0, 2.0, 4.0]])
    result = voxel_variance(stack, ddof=1, skipna=True)
    assert np.isnan(result[0]) and np.isnan(result[1])
    assert result[2] == pytest.approx(np.var([1, 2, 4], ddof=1))


def test_variance_of_inf_is_nan():
    stack = np.array([[1.0, np.inf, 2.0]])
    assert np.isnan(voxel_variance(stack))[0]


# ----------------------------------------------------------------------- axis_statistic


@np.errstate(all="ignore")
def _reference(stack, statistic, axis, ddof=0, skipna=False):
    data = stack.astype(np.float64)
    if statistic in ("min", "max"):
        func = {"min": np.nanmin if skipna else np.min, "max": np.nanmax if skipna else np.max}
        return func[statistic](stack, axis=axis)
    nan = "nan" if skipna else ""
    if statistic == "cv":
        return getattr(np, nan + "std")(data, axis=axis, ddof=ddof) / getattr(np, nan + "mean")(
            data, axis=axis
        )
    if statistic in ("var", "std"):
        return getattr(np, nan + statistic)(data, axis=axis, ddof=ddof)
    return getattr(np, nan + statistic)(data, axis=axis)


@pytest.mark.parametrize("statistic", STATISTICS)
@pytest.mark.parametrize("dtype", [np.bool_, *DTYPES])
@pytest.mark.parametrize("axis", [0, -1])
def test_statistic_matches_numpy(statistic, dtype, axis, workers):
    stack = random_data((5, 8, 9), dtype, seed=2)
    result = axis_statistic(stack, statistic, axis=axis, ddof=1, workers=workers)
    expected = _reference(stack, statistic, axis, ddof=1)
    if statistic in ("min", "max"):
        assert result.dtype == stack.dtype
        np.testing.assert_array_equal(result, expected)
    else:
        assert result.dtype == (np.float64 if dtype == np.float64 else np.float32)
        np.testing.assert_allclose(result, expected, rtol=float_rtol(result) * 3)


@pytest.mark.parametrize("statistic", STATISTICS)
def test_statistic_skipna_matches_nan_functions(statistic):
    stack = random_data((4, 5, 7), np.float64, seed=5)
    stack[0, 0, :3] = np.nan
    stack[1, 2, 4] = np.nan
    result = axis_statistic(stack, statistic, axis=-1, skipna=True)
    expected = _reference(stack, statistic, -1, skipna=True)
    np.testing.assert_allclose(result, expected, rtol=1e-12)


@pytest.mark.parametrize("statistic", ["mean", "sum", "var", "std", "cv"])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_skipna_moments_along_other_axes(statistic, axis, dtype, workers):
    """Along a first and a middle axis (tiles of voxels, two passes each): NaN anywhere,
    voxels with no valid value or one (ddof=1), inf and -inf, across the 1024-voxel tile,
    a large offset (no cancellation), non-contiguous views."""
    stack = random_data((9, 5, 2050), dtype, seed=13) + 1000  # cv: no zero mean
    rng = np.random.default_rng(13)
    stack[rng.random(stack.shape) < 0.2] = np.nan
    stack[:, :, 7] = np.nan  # no valid value along either axis
    stack[1:, 0, 8] = np.nan  # one valid value along axis 0: NaN with ddof=1
    stack[2, 3, 1024] = np.inf  # the second tile
    stack[4, 1, 1500] = -np.inf
    for view in (stack, stack[::-1, :, ::2]):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NumPy's "Degrees of freedom <= 0" and others
            expected = _reference(view, statistic, axis, ddof=1, skipna=True)
        result = axis_statistic(view, statistic, axis=axis, ddof=1, skipna=True, workers=workers)
        np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(result), np.isinf(expected))
        finite = np.isfinite(expected)
        np.testing.assert_allclose(result[finite], expected[finite], rtol=float_rtol(result) * 3)


@pytest.mark.parametrize("statistic", ["mean", "sum", "var", "std", "cv"])
@pytest.mark.parametrize("length", [1, 9, 64, 65])
def test_skipna_moments_along_the_last_axis(statistic, length):
    """Lines of up to 64 values copied into tiles of 1024 transposed (2200 lines: three
    tiles), longer lines one by one: NaN anywhere, lines with no or one valid value."""
    stack = random_data((1100, 2, length), np.float32, seed=length) + 1000
    rng = np.random.default_rng(length)
    stack[rng.random(stack.shape) < 0.2] = np.nan
    stack[3, 0, :] = np.nan  # no valid value
    stack[1050, 1, 1:] = np.nan  # one valid value: NaN with ddof=1
    ddof = 1 if length > 1 else 0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = _reference(stack, statistic, -1, ddof=ddof, skipna=True)
    result = axis_statistic(stack, statistic, axis=-1, ddof=ddof, skipna=True, workers=2)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(result[finite], expected[finite], rtol=float_rtol(result) * 3)


@pytest.mark.parametrize("statistic", STATISTICS)
def test_statistic_nan_propagates(statistic):
    stack = random_data((3, 4, 6), np.float32, seed=6)
    stack[2, 1, 3] = np.nan
    result = axis_statistic(stack, statistic, axis=-1)
    assert np.isnan(result[2, 1])
    assert np.isfinite(result[0]).all()


def test_statistic_all_nan_lines_with_skipna_give_nan_without_warning():
    stack = np.full((2, 4), np.nan)
    stack[1] = [1.0, 2.0, 3.0, 4.0]
    for statistic in ("mean", "median", "min", "max", "var"):
        result = axis_statistic(stack, statistic, skipna=True)
        assert np.isnan(result[0])
        assert np.isfinite(result[1])
    assert axis_statistic(stack, "sum", skipna=True)[0] == 0


def test_statistic_on_a_one_dimensional_stack_gives_a_scalar_array():
    values = np.array([1.0, 2.0, 3.0, 6.0])
    assert axis_statistic(values, "median").shape == ()
    assert float(axis_statistic(values, "median")) == 2.5
    assert float(axis_statistic(values, "mean")) == 3.0


def test_cv_of_zero_mean_is_inf_or_nan():
    stack = np.array([[0.0, 0.0], [-1.0, 1.0]])
    result = axis_statistic(stack, "cv")
    assert np.isnan(result[0]) and np.isinf(result[1])


# ----------------------------------------------------------------------- frame_norms


def test_seed_frame_norms():
    """The user's question: one L2 norm per (a, b, c) sub-array, without a loop."""
    mat = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    expected = [np.linalg.norm(m) for m in np.moveaxis(mat, -1, 0)]
    result = frame_norms(mat)
    assert result.shape == (5,)
    np.testing.assert_allclose(result, expected, rtol=1e-14)


@pytest.mark.parametrize("ord", [1, 2, 3, 0.5, np.inf])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.bool_, np.float16, *DTYPES])
def test_frame_norms_match_numpy(ord, axis, dtype, workers):
    stack = random_data((4, 6, 35), dtype, seed=7)
    before = checksum(stack)
    expected = [
        np.linalg.norm(m.ravel().astype(np.float64), ord) for m in np.moveaxis(stack, axis, 0)
    ]
    result = frame_norms(stack, axis=axis, ord=ord, workers=workers)
    assert result.dtype == np.float64
    np.testing.assert_allclose(result, expected, rtol=1e-10)
    assert checksum(stack) == before


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_frame_norms_of_non_contiguous_views(axis, workers):
    view = random_data((8, 9, 10), np.float32, seed=8).transpose(2, 0, 1)[::2, :, 1::3]
    expected = [np.linalg.norm(m.astype(np.float64)) for m in np.moveaxis(view, axis, 0)]
    np.testing.assert_allclose(frame_norms(view, axis=axis, workers=workers), expected, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.int64])
def test_frame_norms_max_sees_every_value(dtype, workers):
    """ord=inf keeps the largest |x| and NaN wherever they fall: in the vectorised lanes
    (rows of 1000 values: 31 groups of 32) or in the scalar tail; int8's -128 is 128."""
    stack = random_data((5, 1000), np.float64, seed=9) * 100 - 50
    stack[1, 100] = -3e3  # inside the lanes
    stack[2, 999] = 4e3  # in the tail
    if np.dtype(dtype).kind == "f":
        stack[3, 37] = np.nan
        stack[4, 998] = -np.inf
    else:
        stack = np.clip(stack, -128, 127)
        stack[3, 37] = -128
    stack = stack.astype(dtype)
    expected = [np.max(np.abs(row.astype(np.float64))) for row in stack]
    result = frame_norms(stack, axis=0, ord=np.inf, workers=workers)
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((7, 5, 100), -1),
        ((7, 5, 128), -1),
        ((7, 5, 300), -1),
        ((2, 5, 130, 130), 1),
        ((2, 11, 40, 50), 1),
        ((2, 17, 30, 40), 1),
    ],
)
@pytest.mark.parametrize("statistic", ["min", "max"])
@pytest.mark.parametrize("skipna", [False, True])
def test_extrema_on_numpy_and_kernel_paths(shape, axis, statistic, skipna, workers):
    """Float lines from 128 on go to NumPy's reductions, the rest to our kernels (rows:
    eight at a time, the last group made up with its first row; eight or fewer in steps
    of 8192 voxels): the same NaN rules either way (NaN wins, or only where all is NaN)."""
    stack = random_data(shape, np.float32, seed=12)
    if len(shape) == 3:  # lines along the last axis: one NaN, one line all NaN
        stack[1, 2, 50] = np.nan
        stack[1, 4, :] = np.nan
    else:  # rows: one NaN (in the last group), one voxel all NaN along axis 1
        stack[1, -2, 20, 25] = np.nan
        stack[1, :, 3, 4] = np.nan
    reference = getattr(np, ("nan" if skipna else "") + statistic)
    for view in (stack, np.flip(stack, axis=-1)):  # contiguous and strided
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's all-NaN slice warning
            expected = reference(view, axis=axis)
        result = axis_statistic(view, statistic, axis=axis, skipna=skipna, workers=workers)
        np.testing.assert_array_equal(result, expected)
    assert np.isnan(expected).any() and np.isfinite(expected).any()


@pytest.mark.parametrize("ord", [3, 0.5, 4, 2.5, 2.7, 64])
@pytest.mark.parametrize("axis", [0, -1])
def test_frame_norms_of_other_orders_on_long_frames(ord, axis, workers):
    """Orders other than 1, 2 and inf on frames long enough for the blocked powers (integer
    and half-integer orders by repeated squaring, others by pow) and, along the last axis,
    for the interleaved passes; NaN in one frame."""
    stack = (np.random.default_rng(11).random((6, 50, 700)) * 2 - 1).astype(np.float32)
    stack[2, 7, 9] = np.nan
    frames = np.moveaxis(stack.astype(np.float64), axis, 0)
    expected = [np.linalg.norm(frame.ravel(), ord) for frame in frames]
    result = frame_norms(stack, axis=axis, ord=ord, workers=workers)
    np.testing.assert_allclose(result, expected, rtol=1e-10)
    assert np.isnan(result).sum() == 1


@pytest.mark.parametrize("ord", [2.7, 0.3, 65])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_frame_norms_of_orders_raised_by_numpy(monkeypatch, ord, axis):
    """Orders that are not (half-)integers up to 64 take NumPy's float64 power per chunk:
    int8 with -128 (no wrap-around of abs), a strided view, inf in one frame, chunks
    along the inner axis and over outer rows, many tasks."""
    from napari_voxelwise import _plan, statistics

    monkeypatch.setattr(_plan, "TASK_BYTES", 4096)
    monkeypatch.setattr(statistics, "_POWER_CHUNK", 256)  # both kinds of chunks
    values = np.random.default_rng(12).integers(-128, 128, (5, 30, 41)).astype(np.int8)
    values[1, 2, 3] = -128
    strided = (values.astype(np.float64) / 50)[:, ::2, ::-3]
    strided[3, 0, 0] = np.inf
    for stack in (values, strided):
        frames = np.moveaxis(stack.astype(np.float64), axis, 0)
        expected = [np.linalg.norm(frame.ravel(), ord) for frame in frames]
        result = frame_norms(stack, axis=axis, ord=ord, workers=2)
        np.testing.assert_allclose(result, expected, rtol=1e-10)


def test_frame_norms_nan_propagates():
    stack = np.ones((3, 4))
    stack[1, 2] = np.nan
    for ord in (1, 2, np.inf):
        result = frame_norms(stack, axis=-1, ord=ord)
        assert np.isnan(result[2]) and np.isfinite(result[[0, 1, 3]]).all()


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "error", "names"),
    [
        (lambda: voxel_variance(np.ones((3, 4)), axis=2), ValueError, "axis"),
        (lambda: voxel_variance(np.ones((3, 4)), axis=-3), ValueError, "axis"),
        (lambda: voxel_variance(np.ones((3, 4)), axis=1.0), TypeError, "axis"),
        (lambda: voxel_variance(np.ones((3, 4)), ddof=4), ValueError, "ddof"),
        (lambda: voxel_variance(np.ones((3, 4)), ddof=-1), ValueError, "ddof"),
        (lambda: voxel_variance(np.ones((3, 4)), ddof=0.5), TypeError, "ddof"),
        (lambda: voxel_variance(np.ones((3, 4)), skipna="yes"), TypeError, "skipna"),
        (lambda: voxel_variance(np.float64(3.0)), ValueError, "stack"),
        (lambda: voxel_variance(np.ones((3, 0))), ValueError, "stack"),
        (lambda: voxel_variance(np.array([["a", "b"]])), TypeError, "stack"),
        (lambda: voxel_variance(np.ones((2, 2), complex)), TypeError, "stack"),
        (lambda: voxel_variance(np.array([None, 1])), TypeError, "stack"),
        (lambda: voxel_variance(np.ones((3, 4)), workers=0), ValueError, "workers"),
        (lambda: axis_statistic(np.ones((3, 4)), "mode"), ValueError, "statistic"),
        (lambda: axis_statistic(np.ones((3, 4)), None), TypeError, "statistic"),
        (lambda: axis_statistic(np.ones((3, 4)), "std", ddof=4), ValueError, "ddof"),
        (lambda: frame_norms(np.ones((3, 4)), ord="fro"), TypeError, "ord"),
        (lambda: frame_norms(np.ones((3, 4)), ord=0), ValueError, "ord"),
        (lambda: frame_norms(np.ones((3, 4)), ord=-2), ValueError, "ord"),
        (lambda: frame_norms(np.ones((3, 4)), axis=5), ValueError, "axis"),
        (lambda: frame_norms(np.zeros((0, 4))), ValueError, "stack"),
    ],
)
def test_bad_input_is_refused_naming_the_parameter(call, error, names):
    with pytest.raises(error, match=names):
        call()


# ------------------------------------------------- kernel paths (row groups, tiles, tasks)


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 8, 9, 10, 12, 13, 17])
@pytest.mark.parametrize("statistic", ["mean", "sum", "var", "std", "cv"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_moments_for_every_row_grouping_and_tile_edge(length, statistic, dtype):
    """Lengths hitting the 8-, 4- and 1-row passes; inner sizes across the 1024-voxel tile
    (and the steps of 8192 voxels of stacks of eight)."""
    inner = 8200 if length == 8 else 2050
    stack = random_data((2, length, inner), dtype, seed=length) + 1  # cv: no zero mean
    expected = _reference(stack, statistic, 1, ddof=0)
    result = axis_statistic(stack, statistic, axis=1, workers=1)
    np.testing.assert_allclose(result, expected, rtol=float_rtol(result) * 3)


@pytest.mark.parametrize("statistic", ["mean", "sum", "var", "std"])
def test_moments_nan_and_inf_in_any_row(statistic):
    stack = random_data((11, 3, 1030), np.float32, seed=2)
    stack[0, 0, 5] = np.nan  # the first row (the shift)
    stack[9, 1, 1029] = np.nan  # a row of the 1-row pass, last voxel of a tile edge
    stack[5, 2, 1024] = np.inf  # a row of the 8-row pass, first voxel of the second tile
    stack[10, 0, 7] = -np.inf
    with np.errstate(all="ignore"):
        expected = _reference(stack, statistic, 0)
    result = axis_statistic(stack, statistic, axis=0, workers=1)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(result), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(result[finite], expected[finite], rtol=2e-6)


@pytest.mark.parametrize("length", [5, 8, 9, 10, 11])
@pytest.mark.parametrize("statistic", ["var", "std"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moments_of_the_last_eight_rows_with_nan_inf_and_huge_values(length, statistic, dtype):
    """The variance and the std add the last eight rows (all, made up with the first, when
    fewer) and finish in one loop (eight rows or fewer: in steps of 8192 voxels): NaN and
    inf there, squares overflowing float64 (redone in two careful passes) and a variance
    beyond float32 still come out as NumPy's (or, where NumPy's squares overflow, as the
    scaled std). Lengths 9 to 11 leave the first row (the shift) out of the sums: an inf
    there must still give NaN."""
    rng = np.random.default_rng(length)
    stack = rng.standard_normal((length, 8300)).astype(dtype)
    stack[-1, 3] = np.nan  # the last row
    stack[max(length - 8, 1), 1024] = np.inf  # the first of the last eight (or row 1), tile 2
    stack[-2, 8191] = -np.inf  # the end of the first step of 8192
    stack[0, 8192] = np.nan  # the shift, the second step
    stack[0, 100] = np.inf  # the shift: inf - inf in NumPy's variance
    huge = [17, 8299]
    if dtype == np.float64:
        stack[:, 17] = rng.standard_normal(length) * 1e200  # squares overflow
        stack[1:, 8299] = 1e300  # first sample small, the others huge
    else:
        stack[:, huge] = rng.standard_normal((length, 2)) * 1e30  # a variance beyond float32
    with np.errstate(all="ignore"):
        expected = _reference(stack, statistic, 0)
        if statistic == "std" and dtype == np.float64:
            expected[huge] = np.std(stack[:, huge] / 1e200, axis=0) * 1e200
        expected = expected.astype(dtype)
    result = axis_statistic(stack, statistic, axis=0, workers=1)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(result), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(result[finite], expected[finite], rtol=float_rtol(result))


@pytest.mark.parametrize("length", [3, 8, 11])
@pytest.mark.parametrize("statistic", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_mean_and_sum_of_the_last_eight_rows(length, statistic, dtype):
    """The mean and the sum add the last eight rows (all, made up with zeros, when fewer)
    and finish in one loop: NaN, inf and inf - inf there and in the rows before, across
    the 1024-voxel tile and the 8192 step; as NumPy's float64 result, rounded."""
    stack = random_data((length, 8300), dtype, seed=length)
    if stack.dtype.kind == "f":
        stack[-1, 3] = np.nan  # the last row
        stack[0, 1024] = np.inf  # the first row, tile 2
        stack[-2, 8191] = -np.inf  # the end of the first step of 8192
        stack[0, 8192] = -np.inf
        stack[-1, 8192] = np.inf  # inf - inf: NaN
    with np.errstate(all="ignore"):
        expected = getattr(np, statistic)(stack.astype(np.float64), axis=0)
    result = axis_statistic(stack, statistic, axis=0, workers=1)
    assert result.dtype == (np.float64 if dtype == np.float64 else np.float32)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(result[np.isinf(expected)], expected[np.isinf(expected)])
    finite = np.isfinite(expected)
    np.testing.assert_allclose(result[finite], expected[finite], rtol=float_rtol(result))


@pytest.mark.parametrize("statistic", ["mean", "var", "min", "max"])
def test_statistics_split_into_tasks_equal_one_task(statistic):
    """A stack big enough for several tasks: the tasks' boundaries do not show."""
    stack = random_data((3, 700, 1031), np.float32, seed=4)
    one = axis_statistic(stack, statistic, axis=0, workers=1)
    many = axis_statistic(stack, statistic, axis=0, workers=4)
    np.testing.assert_array_equal(one, many)
    np.testing.assert_allclose(many, _reference(stack, statistic, 0), rtol=2e-6)


@pytest.mark.parametrize("frames", [1, 3, 8, 255, 300])
@pytest.mark.parametrize("ord", [1, 2, 3, np.inf])
def test_frame_norms_of_interleaved_frames(frames, ord):
    """Frames along the last axis of a contiguous stack: four blocks per pass plus a rest."""
    width = max(1, INTERLEAVED_WIDTH // frames)  # voxels per block
    voxels = 4 * width * 3 + 5  # whole four-block passes and a remainder
    stack = random_data((voxels, frames), np.float32, seed=frames) - 0.5
    expected = [np.linalg.norm(stack[:, i].astype(np.float64), ord) for i in range(frames)]
    rtol = 2e-6 if ord in (1, 2) else 1e-12  # float32 partial sums (see the next test)
    np.testing.assert_allclose(
        frame_norms(stack, axis=-1, ord=ord, workers=1), expected, rtol=rtol
    )
    stack[voxels - 1, frames - 1] = np.nan  # in the remainder
    stack[0, 0] = np.nan  # in the four-block part
    result = frame_norms(stack, axis=-1, ord=ord, workers=1)
    assert np.isnan(result[0]) and np.isnan(result[-1])
    if frames > 2:
        np.testing.assert_allclose(result[1:-1], expected[1:-1], rtol=rtol)


@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("ord", [1, 2])
def test_float32_norm_sums_fall_back_to_float64(axis, ord):
    """float32 sums of squares and of |x| are summed in float32 blocks, except where float32
    would overflow, underflow or meet NaN/inf: those blocks are summed again in float64."""
    frames, voxels = 6, 100_003  # interleaved: more than one flush of the float32 sums
    stack = np.random.default_rng(11).random((voxels, frames), np.float32) - np.float32(0.5)
    big, tiny = (1e20, 1e-25) if ord == 2 else (1e38, 1e-35)
    stack[:, 0] *= np.float32(big)  # the float32 sums overflow
    stack[:, 1] *= np.float32(tiny)  # the float32 sums underflow (or are too small to trust)
    stack[:, 2] = 0
    stack[voxels // 2, 3] = np.nan
    stack[7, 4] = -np.inf
    if axis == 0:
        stack = np.ascontiguousarray(stack.T)  # frames as rows
    moved = np.moveaxis(stack, axis, 0).astype(np.float64)
    expected = np.array([np.linalg.norm(m, ord) for m in moved])
    for workers in (1, 2):
        result = frame_norms(stack, axis=axis, ord=ord, workers=workers)
        np.testing.assert_allclose(result[:2], expected[:2], rtol=1e-12)  # all in float64
        assert result[2] == 0 and np.isnan(result[3]) and result[4] == np.inf
        np.testing.assert_allclose(result[5], expected[5], rtol=2e-6)


@pytest.mark.parametrize("axis", [0, -1])
def test_frame_norms_split_into_tasks_equal_numpy(axis):
    stack = random_data((8, 300, 1031), np.float32, seed=5)
    moved = np.moveaxis(stack, axis, 0)
    expected = [np.linalg.norm(m.astype(np.float64)) for m in moved]
    for workers in (1, 4):
        np.testing.assert_allclose(
            frame_norms(stack, axis=axis, workers=workers), expected, rtol=2e-6
        )


# ------------------------------------------- short lines (last axis) and min/max kernels


#: (line length, dtype): every length for the usual microscopy dtypes, a few for the rest
#: (each pair compiles its own kernel, which is what takes the time here)
SHORT_LINE_CASES = [
    *[(n, dtype) for dtype in (np.uint16, np.float32) for n in (1, 2, 3, 5, 8, 13, 16, 17)],
    *[(n, dtype) for dtype in (np.bool_, np.uint8, np.int64, np.float64) for n in (2, 16)],
]


@pytest.mark.parametrize(("length", "dtype"), SHORT_LINE_CASES)
@pytest.mark.parametrize("statistic", ["mean", "sum", "var", "std", "cv"])
def test_moments_of_short_lines_along_the_last_axis(length, statistic, dtype):
    """One kernel per line length up to 16 (17 takes the general path); 2050 lines span
    three 1024-line tiles; C-contiguous, stepped (copied) and transposed views."""
    stack = random_data((2050, length), dtype, seed=length)
    if dtype != np.bool_:
        stack = stack + 1  # cv: no zero mean
    ddof = 1 if length > 1 and statistic != "cv" else 0
    for view in (stack, stack[::3], stack[:, ::-1], np.asfortranarray(stack)):
        expected = _reference(view, statistic, -1, ddof=ddof)
        result = axis_statistic(view, statistic, axis=-1, ddof=ddof, workers=1)
        assert result.dtype == (np.float64 if dtype == np.float64 else np.float32)
        rtol = float_rtol(result) * 3
        if statistic == "cv":  # the mean may cancel: allow for its conditioning
            data = view.astype(np.float64)
            with np.errstate(all="ignore"):  # a zero mean: cv is inf or NaN, checked below
                condition = np.abs(data).max(axis=-1) / np.abs(data.mean(axis=-1))
            rtol = rtol + 4 * np.finfo(result.dtype).eps * condition
        np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
        with np.errstate(invalid="ignore"):
            close = np.abs(result - expected) <= rtol * np.abs(expected)
        assert (close | np.isnan(expected)).all()


def test_moments_of_many_strided_short_lines_copied_in_parts():
    """More strided lines than one copied part (8192): the parts' boundaries do not show."""
    stack = random_data((2, 9000, 7), np.float32, seed=9)[:, :, ::2]
    for statistic in ("mean", "var"):
        expected = _reference(stack, statistic, -1)
        for workers in (1, 2):
            result = axis_statistic(stack, statistic, axis=-1, workers=workers)
            np.testing.assert_allclose(result, expected, rtol=2e-6)


@pytest.mark.parametrize("statistic", ["mean", "sum", "var", "std"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_lines_with_nan_inf_and_huge_values(statistic, dtype):
    """NaN and inf anywhere, and squares that overflow the arithmetic (float64; float32
    for the variance of float32 lines) redone in float64."""
    stack = random_data((3000, 8), dtype, seed=3)
    stack[0, 0] = np.nan  # the first sample (the shift)
    stack[5, 7] = np.nan  # the last sample
    stack[1024, 3] = np.inf  # the first line of a tile (of 32 or 16 lines, or 1024 before)
    stack[2047, 0] = -np.inf  # first sample, the last line of a tile
    stack[2048, 0] = np.inf  # inf first, finite values after it
    stack[2999, 2] = np.inf
    stack[2999, 4] = -np.inf
    if dtype == np.float64:
        stack[100] = [1e200, -1e200, 3e199, 0, 1, 2, 3, 4]  # squares overflow: the careful path
        stack[101, 1:] = 1e300  # first sample small, the others huge
    else:
        stack[100] = [1e30, -1e30, 3e29, 0, 1, 2, 3, 4]  # float32 var overflows, the std not
        stack[101, 1:] = 4e37
        stack[102] = [1e19, -1e19] * 4  # float32 squares overflow, the variance (1e38) not
    with np.errstate(all="ignore"):
        expected = _reference(stack, statistic, -1)
        if statistic == "std" and dtype == np.float64:  # NumPy's squares overflow: scale
            expected[100:102] = np.std(stack[100:102] / 1e200, axis=-1) * 1e200
        expected = expected.astype(dtype)  # inf where the result overflows float32
    result = axis_statistic(stack, statistic, axis=-1, workers=1)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(result), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(result[finite], expected[finite], rtol=float_rtol(result))


@pytest.mark.parametrize("length", [1, 2, 5, 8, 16])
def test_float32_short_line_variance_keeps_float32_precision(length):
    """The variance of float32 lines (computed in float32) against float64 NumPy: a tiny
    spread on a huge mean, mixed signs, an outlying first sample, subnormal variances."""
    rng = np.random.default_rng(length)
    lines = [
        1e6 + rng.standard_normal((300, length)),  # spread 1e-6 of the mean
        3e7 + rng.integers(-8, 8, (300, length)) * 4.0,  # values 4 apart near 2**25
        rng.standard_normal((300, length)) * 1e3,  # mixed signs
        rng.random((300, length)) * 1e-20,  # squares near float32's smallest normal
    ]
    outlier = rng.random((300, length))
    outlier[:, 0] = 1e4  # the first sample (the shift) far from the others
    stack = np.concatenate([*lines, outlier]).astype(np.float32)
    tiny = np.finfo(np.float32).smallest_normal  # subnormal results: absolute steps
    for ddof in {0, length - 1}:
        expected = np.var(stack.astype(np.float64), axis=-1, ddof=ddof)
        result = voxel_variance(stack, axis=-1, ddof=ddof, workers=1)
        assert result.dtype == np.float32
        np.testing.assert_allclose(result, expected, rtol=2e-6, atol=tiny)


@pytest.mark.parametrize("statistic", ["mean", "var", "std"])
@pytest.mark.parametrize("length", [3, 8])
def test_short_lines_split_into_tasks_equal_one_task(statistic, length):
    stack = random_data((700, 1031, length), np.uint16, seed=length)
    one = axis_statistic(stack, statistic, axis=-1, workers=1)
    many = axis_statistic(stack, statistic, axis=-1, workers=4)
    np.testing.assert_array_equal(one, many)
    np.testing.assert_allclose(many, _reference(stack, statistic, -1), rtol=2e-6)


def test_short_line_variance_of_integer_extremes():
    stack = np.tile(np.array([0, 65535], dtype=np.uint16), (5, 4))
    np.testing.assert_allclose(voxel_variance(stack), np.full(5, 65535.0**2 / 4), rtol=1e-7)
    big = (2**62 + np.array([[0, 2**40, 2 * 2**40]] * 3)).astype(np.int64)
    np.testing.assert_allclose(voxel_variance(big), np.var(big.astype(np.float64), axis=-1))


EXTREMUM_DTYPES = [
    np.bool_,
    np.uint8,
    np.int8,
    np.uint16,
    np.int32,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
]


@pytest.mark.parametrize("dtype", EXTREMUM_DTYPES)
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("statistic", ["min", "max"])
@pytest.mark.parametrize("skipna", [False, True])
def test_min_max_kernel_matches_numpy(dtype, axis, statistic, skipna):
    """Along the first and a middle axis: tile edges (inner 2050), NaN and inf anywhere,
    all-NaN lines, non-contiguous views; the dtype is kept."""
    stack = random_data((5, 7, 2050), dtype, seed=11)
    if stack.dtype.kind == "f":
        stack[1, 3, 5] = np.nan
        stack[0, 0, 1023] = np.nan  # first row (the start), last voxel of a tile
        stack[:, 2, 7] = np.nan  # an all-NaN line along axis 0
        stack[2, :, 9] = np.nan  # an all-NaN line along axis 1
        stack[4, 6, 1024] = np.nan  # last row, first voxel of the second tile
        stack[0, 1, 1025] = np.inf
        stack[3, 2, 3] = -np.inf
    if stack.dtype.kind == "f" and skipna:
        reference = np.nanmax if statistic == "max" else np.nanmin
    else:
        reference = np.max if statistic == "max" else np.min
    for view in (stack, stack[:, ::2, 1:], stack[::-1], stack.transpose(1, 0, 2)):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # np.nanmin's "All-NaN slice" warning
            expected = reference(view, axis=axis)
        result = axis_statistic(view, statistic, axis=axis, skipna=skipna, workers=1)
        assert result.dtype == view.dtype
        np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("statistic", ["min", "max"])
def test_min_max_split_into_tasks_equal_one_task(statistic):
    stack = random_data((5, 700, 1031), np.uint16, seed=12)
    one = axis_statistic(stack, statistic, axis=1, workers=1)
    many = axis_statistic(stack, statistic, axis=1, workers=4)
    np.testing.assert_array_equal(one, many)
    np.testing.assert_array_equal(many, getattr(np, statistic)(stack, axis=1))


@pytest.mark.parametrize(("length", "dtype"), [*SHORT_LINE_CASES, (3, np.float16), (8, np.int8)])
def test_min_max_of_short_lines_along_the_last_axis(length, dtype):
    """One kernel per line length up to 16 (17 takes the general loop), across lines:
    NaN first, last and in the middle of a line, all-NaN lines, inf; C-contiguous,
    stepped (copied), reversed and Fortran-ordered views; the dtype is kept."""
    stack = random_data((2050, length), dtype, seed=length)
    if stack.dtype.kind == "f":
        stack[3, 0] = np.nan  # the first value (the start)
        stack[4, -1] = np.nan
        stack[5, length // 2] = np.nan
        stack[6] = np.nan  # all NaN
        stack[1024, length // 2] = np.inf
        stack[2049, -1] = -np.inf
    for skipna in (False, True):
        for statistic in ("min", "max"):
            name = ("nan" if skipna and stack.dtype.kind == "f" else "") + statistic
            for view in (stack, stack[::3], stack[:, ::-1], np.asfortranarray(stack)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # np.nanmin's "All-NaN slice" warning
                    expected = getattr(np, name)(view, axis=-1)
                result = axis_statistic(view, statistic, axis=-1, skipna=skipna, workers=1)
                assert result.dtype == view.dtype
                np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize(
    "length", [1, 2, 3, 4, 5, 8, 9, 16, 17, 33, 64, 65, 100, 1500, 4096, 4097]
)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_median_matches_numpy(length, axis):
    """Up to 4096 values a sorting network across a tile of voxels (lines along the last
    axis transposed into it; tiles of 256, 128 (1500 float32 rows) and 64 voxels (4096);
    4097 takes NumPy's median): NaN propagates, inf and -inf sort, even lengths average
    the two middle values; C-contiguous and strided views."""
    shape = [3, 4, 300]
    shape[axis] = length
    stack = random_data(tuple(shape), np.float32, seed=length)
    moved = np.moveaxis(stack, axis, 0)  # a view: writes land in `stack`
    moved[length // 2, 0, 0] = np.nan
    moved[:, 1, 1] = np.inf
    moved[0, 1, 2] = -np.inf
    moved[length - 1, 2, 3] = np.inf
    moved[:, 2, 0] = 3e38  # the two middle values' sum overflows float32, not float64
    for view in (stack, np.flip(stack, axis=axis)):
        with np.errstate(invalid="ignore"):
            expected = np.median(view.astype(np.float64), axis=axis)
        result = axis_statistic(view, "median", axis=axis, workers=1)
        assert result.dtype == np.float32
        np.testing.assert_array_equal(result, expected.astype(np.float32))


@pytest.mark.parametrize("length", [1, 2, 5, 8, 13, 64, 65, 700, 4097])
@pytest.mark.parametrize("axis", [0, -1])
def test_nan_median_matches_numpy(length, axis):
    """`skipna`: the median of the valid values (the full network, the middle of each
    voxel's count picked row by row); NaN where none is valid, no warning. Values that
    are small integers too (which a row index must not be mistaken for)."""
    shape = [length, 5, 260] if axis == 0 else [5, 260, length]
    rng = np.random.default_rng(length)
    for stack in (
        random_data(tuple(shape), np.float64, seed=length),
        rng.integers(0, length + 1, shape).astype(np.float64),
    ):
        moved = np.moveaxis(stack, axis, 0)
        moved[rng.random(moved.shape) < 0.3] = np.nan
        moved[:, 0, 0] = np.nan  # none valid
        moved[1:, 0, 1] = np.nan  # one valid
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # np.nanmedian's "All-NaN slice"
            expected = np.nanmedian(stack, axis=axis)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # ours warns not
            result = axis_statistic(stack, "median", axis=axis, skipna=True, workers=1)
        np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("length", [2, 3, 8, 9, 100, 101])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_median_for_every_count_of_nans(length, dtype):
    """Voxel ``j`` holds ``j % (length + 1)`` NaNs at random rows (each count, odd and even,
    from none to all), next to values of -inf and +inf, which sort with the NaNs'
    stand-ins (+inf, -inf, ... in turn): the median of the valid values all the same."""
    rng = np.random.default_rng(length)
    voxels = 3 * (length + 1) + 7
    stack = random_data((length, voxels), dtype, seed=length)
    stack[rng.random(stack.shape) < 0.1] = -np.inf
    stack[rng.random(stack.shape) < 0.1] = np.inf
    for j in range(voxels):
        stack[rng.permutation(length)[: j % (length + 1)], j] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # np.nanmedian's "All-NaN slice"
        expected = np.nanmedian(stack.astype(np.float64), axis=0).astype(dtype)
    for view, axis in ((stack, 0), (np.ascontiguousarray(stack.T), -1)):
        result = axis_statistic(view, "median", axis=axis, skipna=True, workers=1)
        np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.uint16, np.int32, np.int64])
def test_median_of_integers(dtype):
    """Integers as float64 values (the median of an even count halfway between two)."""
    stack = random_data((6, 7, 300), dtype, seed=3)
    for axis in (0, -1):
        expected = np.median(stack, axis=axis)
        result = axis_statistic(stack, "median", axis=axis, workers=2)
        np.testing.assert_array_equal(result, expected.astype(np.float32))
