"""The portable (array-namespace) path against NumPy, SciPy and the compiled path.

Every test checks `_portable` against an independent reference (NumPy, SciPy,
scikit-image or a hand-checked case) and, where the package has one, against
the public function (the compiled path) with the same arguments.
"""

from __future__ import annotations

import ast
import inspect
import math
import sys
import types
import warnings

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
from skimage.feature import hessian_matrix_eigvals

import napari_voxelwise as vw
from conftest import DTYPES, checksum, random_data
from napari_voxelwise import _portable as portable
from napari_voxelwise.density import normalize_window


def result_dtype(dtype) -> np.dtype:
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def rtol_for(dtype) -> float:
    """Rounding of a float64 computation to the result dtype (a few units in the last place)."""
    return 1e-12 if np.dtype(dtype) == np.float64 else 1e-6


def assert_close_to_scale(actual, expected, rtol):
    """|actual - expected| <= rtol * max|expected|, NaN where expected is NaN."""
    expected = np.asarray(expected, dtype=np.float64)
    scale = np.nanmax(np.abs(expected)) if np.isfinite(expected).any() else 1.0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


def smooth_volume(shape, dtype=np.float32, seed=0):
    """Random data smoothed a little (derivatives with structure), in `dtype`."""
    data = scipy.ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 1.0) * 100
    return data.astype(dtype) if np.dtype(dtype).kind == "f" else data.round().astype(dtype)


def random_symmetric(count, ndim, eigenvalues, seed=0):
    """Symmetric matrices Q diag(eigenvalues) Q^T with random rotations Q, shape (count, n, n)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((count, ndim, ndim)))
    matrices = q @ (np.asarray(eigenvalues, dtype=float)[..., None] * np.swapaxes(q, -1, -2))
    return (matrices + np.swapaxes(matrices, -1, -2)) / 2


def upper_triangle(matrices):
    """The components (h00, h01, [h02,] h11, ...) of (..., n, n) matrices, row-major."""
    ndim = matrices.shape[-1]
    return [np.ascontiguousarray(matrices[..., i, j]) for i in range(ndim) for j in range(i, ndim)]


# --------------------------------------------------------------------------- namespaces


def test_namespace_of_numpy_arrays_is_numpy_and_scipy_ndimage():
    xp, ndi = portable.namespace(np.ones(3))
    assert xp is np
    assert ndi is scipy.ndimage


def test_namespace_of_an_array_from_the_cupy_module_is_cupy(monkeypatch):
    """CuPy cannot run here: a stand-in array type from a module named ``cupy...``."""
    fake_cupy = types.ModuleType("cupy")
    fake_cupyx = types.ModuleType("cupyx")
    fake_scipy = types.ModuleType("cupyx.scipy")
    fake_ndimage = types.ModuleType("cupyx.scipy.ndimage")
    fake_cupyx.scipy = fake_scipy
    fake_scipy.ndimage = fake_ndimage
    for module in (fake_cupy, fake_cupyx, fake_scipy, fake_ndimage):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    device_array = type("ndarray", (), {"__module__": "cupy._core.core"})
    xp, ndi = portable.namespace(device_array())
    assert xp is fake_cupy
    assert ndi is fake_ndimage


def test_computations_use_numpy_only_for_scalars_and_errstate():
    """No ``np.`` call on data: the module names NumPy only for errstate, iinfo and namespace."""
    tree = ast.parse(inspect.getsource(portable))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "np"
    }
    assert used <= {"errstate", "iinfo"}
    imported = {
        alias.name
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {
        "annotations",
        "contextlib",
        "math",
        "threading",
        "combinations_with_replacement",
        "numpy",
    }


# --------------------------------------------------------------------------- statistics


def numpy_statistic(stack, statistic, axis, ddof):
    """The statistic in float64 with NumPy's own reductions."""
    values = stack.astype(np.float64)
    if statistic in ("min", "max"):
        return getattr(stack, statistic)(axis=axis)
    if statistic == "cv":
        return np.std(values, axis=axis, ddof=ddof) / np.mean(values, axis=axis)
    function = getattr(np, statistic)
    if statistic in ("var", "std"):
        return function(values, axis=axis, ddof=ddof)
    return function(values, axis=axis)


@pytest.mark.parametrize("statistic", portable.STATISTICS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_axis_statistic_matches_numpy_and_the_compiled_path(statistic, dtype):
    stack = random_data((3, 4, 5, 6), dtype, seed=1)
    for axis in (0, 2, 3):  # first, middle, last
        result = portable.axis_statistic(stack, statistic, axis, ddof=1)
        expected_dtype = stack.dtype if statistic in ("min", "max") else result_dtype(dtype)
        assert result.dtype == expected_dtype
        assert result.shape == stack.shape[:axis] + stack.shape[axis + 1 :]
        rtol = rtol_for(expected_dtype) if expected_dtype.kind == "f" else 0
        expected = numpy_statistic(stack, statistic, axis, ddof=1)
        np.testing.assert_allclose(result, expected, rtol=rtol)
        compiled = vw.axis_statistic(stack, statistic, axis=axis, ddof=1)
        assert compiled.dtype == result.dtype
        np.testing.assert_allclose(result, compiled, rtol=rtol)


@pytest.mark.parametrize("statistic", portable.STATISTICS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_skipna_leaves_nans_out_like_numpy_nan_functions(statistic, dtype):
    stack = random_data((4, 3, 5), dtype, seed=2)
    stack[0, 0, :] = np.nan  # a line with no valid value along axis 2
    stack[1, 2, [0, 3]] = np.nan
    stack[2, 1, 1:] = np.nan  # one valid value: at most ddof=1 for var, std and cv
    result = portable.axis_statistic(stack, statistic, 2, ddof=1, skipna=True)
    values = stack.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN lines and ddof
        if statistic == "cv":
            expected = np.nanstd(values, axis=2, ddof=1) / np.nanmean(values, axis=2)
        elif statistic in ("var", "std"):
            expected = getattr(np, "nan" + statistic)(values, axis=2, ddof=1)
        else:
            expected = getattr(np, "nan" + statistic)(values, axis=2)
    assert np.isnan(result[2, 1]) == (statistic in ("var", "std", "cv"))
    assert (result[0, 0] == 0) if statistic == "sum" else np.isnan(result[0, 0])
    np.testing.assert_allclose(result, expected, rtol=rtol_for(dtype))
    compiled = vw.axis_statistic(stack, statistic, axis=2, ddof=1, skipna=True)
    np.testing.assert_allclose(result, compiled, rtol=rtol_for(dtype))


@pytest.mark.parametrize("statistic", portable.STATISTICS)
def test_nan_propagates_without_skipna(statistic):
    stack = random_data((5, 6, 7), np.float32, seed=3)
    stack[2, 3, 4] = np.nan
    for axis in range(3):
        result = portable.axis_statistic(stack, statistic, axis)
        nan_voxel = tuple(i for a, i in enumerate((2, 3, 4)) if a != axis)
        assert np.isnan(result[nan_voxel])
        assert np.isnan(result).sum() == 1
        compiled = vw.axis_statistic(stack, statistic, axis=axis)
        np.testing.assert_array_equal(np.isnan(result), np.isnan(compiled))


@pytest.mark.parametrize("dtype", [np.float16, np.bool_, np.int32])
def test_other_dtypes_like_the_public_function(dtype):
    """float16 and bool reach the kernels of float32 and uint8; int32 has kernels of its own,
    whose compiling the comparison with NumPy spares the suite."""
    stack = random_data((4, 5, 6), dtype, seed=4)
    for statistic in portable.STATISTICS:
        result = portable.axis_statistic(stack, statistic, 1)
        if dtype == np.int32:
            expected = numpy_statistic(stack, statistic, 1, 0)
            if statistic not in ("min", "max"):
                expected = expected.astype(np.float32)
        else:
            expected = vw.axis_statistic(stack, statistic, axis=1)
        assert result.dtype == expected.dtype
        np.testing.assert_allclose(
            result.astype(np.float64), expected.astype(np.float64), rtol=1e-6
        )
    np.testing.assert_array_equal(portable.axis_statistic(stack, "max", 0), stack.max(axis=0))


def test_a_one_dimensional_stack_gives_a_zero_dimensional_array():
    line = np.array([1.0, 4.0, 2.0, 7.0])
    for statistic, expected in [("mean", 3.5), ("median", 3.0), ("min", 1.0), ("var", 5.25)]:
        result = portable.axis_statistic(line, statistic, 0)
        assert isinstance(result, np.ndarray) and result.shape == ()
        assert result == expected


@pytest.mark.parametrize("ddof", [0, 2])
def test_voxel_variance_is_the_variance(ddof):
    stack = random_data((6, 5, 4), np.uint16, seed=5)
    result = portable.voxel_variance(stack, 0, ddof)
    np.testing.assert_allclose(result, np.var(stack.astype(float), axis=0, ddof=ddof), rtol=1e-6)
    np.testing.assert_allclose(result, vw.voxel_variance(stack, axis=0, ddof=ddof), rtol=1e-6)


# --------------------------------------------------------------------------- frame norms


def linalg_frame_norms(stack, axis, ord):
    return np.array(
        [np.linalg.norm(m.ravel().astype(np.float64), ord) for m in np.moveaxis(stack, axis, 0)]
    )


@pytest.mark.parametrize("ord", [1, 2, 3, 2.5, math.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_frame_norms_match_linalg_norm_and_the_compiled_path(dtype, ord):
    for shape in [(7, 8), (4, 5, 6), (3, 4, 5, 2)]:
        stack = random_data(shape, dtype, seed=6)
        for axis in {0, len(shape) // 2, len(shape) - 1}:
            result = portable.frame_norms(stack, axis, ord)
            assert result.dtype == np.float64 and result.shape == (shape[axis],)
            np.testing.assert_allclose(result, linalg_frame_norms(stack, axis, ord), rtol=1e-12)
            # the compiled path sums float32 squares in float32 blocks (its documented error)
            np.testing.assert_allclose(result, vw.frame_norms(stack, axis, ord), rtol=1e-6)


@pytest.mark.parametrize("ord", [1, 2, 3, math.inf])
def test_frame_norm_partials_of_pieces_combine_to_the_whole(ord):
    stack = random_data((6, 7, 5), np.float32, seed=7)
    pieces = [stack[:2], stack[2:5], stack[5:]]  # split across the frames' other axes
    partials = portable.frame_norm_partials(pieces[0], 2, ord)
    for piece in pieces[1:]:
        partials = portable.combine_frame_norm_partials(
            partials, portable.frame_norm_partials(piece, 2, ord), ord
        )
    np.testing.assert_allclose(
        portable.finish_frame_norms(partials, ord), portable.frame_norms(stack, 2, ord), rtol=1e-13
    )
    np.testing.assert_allclose(
        portable.finish_frame_norms(partials, ord), linalg_frame_norms(stack, 2, ord), rtol=1e-12
    )


@pytest.mark.parametrize("ord", [1, 2, 2.5, math.inf])
def test_frame_norms_nan_and_inf_as_linalg_norm(ord):
    stack = random_data((4, 5, 6), np.float64, seed=8)
    stack[1, 2, 0] = np.nan
    stack[2, 2, 3] = np.inf
    stack[0, 0, 5] = -np.inf
    stack[0, 1, 5] = np.nan  # NaN and inf in one frame: NaN
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning either
        result = portable.frame_norms(stack, 2, ord)
    np.testing.assert_array_equal(result[[0, 3, 5]], [np.nan, np.inf, np.nan])
    np.testing.assert_allclose(result, linalg_frame_norms(stack, 2, ord), rtol=1e-12)
    np.testing.assert_allclose(result, vw.frame_norms(stack, -1, ord), rtol=1e-12)


# --------------------------------------------------------------------------- density

#: Elements "on" (value 5 > threshold 2.5) of the hand-checked density cases.
HAND_ON = np.array(
    [
        [1, 1, 0, 0, 1],
        [1, 0, 0, 1, 1],
        [0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0],
        [0, 1, 0, 0, 1],
    ]
)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_density_hand_checked_blocks_and_windows(dtype):
    image = (HAND_ON * 5).astype(dtype)
    if dtype == np.float32:
        image[2, 2] = np.nan  # NaN never counts
    trim = portable.density_map(image, (2, 2), "block", 2.5, "trim")
    np.testing.assert_array_equal(trim, [[0.75, 0.25], [0.5, 0.5]])
    pad = portable.density_map(image, (2, 2), "block", 2.5, "pad")
    # the last row and column hold partial blocks: fractions of 2 (or 1) elements
    np.testing.assert_array_equal(pad, [[0.75, 0.25, 1.0], [0.5, 0.5, 0.0], [0.5, 0.0, 1.0]])
    sliding = portable.density_map(image, (2, 2), "sliding", 2.5)
    assert sliding.shape == (4, 4) and sliding.dtype == np.float32
    np.testing.assert_array_equal(sliding[0], [0.75, 0.25, 0.25, 0.75])
    for mode, edge, result in [("block", "trim", trim), ("block", "pad", pad)]:
        np.testing.assert_array_equal(result, vw.density_map(image, 2, mode, 2.5, edge))
    np.testing.assert_array_equal(sliding, vw.density_map(image, 2, "sliding", 2.5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window", [(3, 2), (1, 4), (5, 5)])
def test_sliding_density_matches_scipy_signal_convolve_2d(dtype, window):
    image = random_data((23, 19), dtype, seed=9)
    threshold = float(np.median(image))
    if dtype in (np.float32, np.float64):
        image[::5, ::3] = np.nan
    result = portable.density_map(image, window, "sliding", threshold)
    on = (image > threshold).astype(np.int64)
    counts = scipy.signal.convolve2d(on, np.ones(window, np.int64), mode="valid")
    np.testing.assert_array_equal(
        result, counts.astype(np.float32) / np.float32(math.prod(window))
    )
    np.testing.assert_array_equal(result, vw.density_map(image, window, "sliding", threshold))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sliding_density_matches_uniform_sums_3d(dtype):
    image = random_data((9, 10, 11), dtype, seed=10)
    threshold = float(np.median(image))
    window = (2, 3, 4)
    result = portable.density_map(image, window, "sliding", threshold)
    on = (image > threshold).astype(np.int64)
    counts = scipy.signal.convolve(on, np.ones(window, np.int64), mode="valid", method="direct")
    np.testing.assert_array_equal(result, counts.astype(np.float32) / np.float32(24))
    np.testing.assert_array_equal(result, vw.density_map(image, window, "sliding", threshold))


def block_reference(image, sizes, threshold, edge):
    """Blocks by explicit loops over the (few) blocks of a small image, in float64."""
    on = image > threshold
    shape = [-(-n // w) if edge == "pad" else n // w for n, w in zip(on.shape, sizes, strict=True)]
    out = np.empty(shape)
    for index in np.ndindex(*shape):
        block = on[tuple(slice(i * w, (i + 1) * w) for i, w in zip(index, sizes, strict=True))]
        out[index] = block.mean()  # over the elements that exist
    return out


@pytest.mark.parametrize("edge", ["trim", "pad"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_block_density_matches_a_loop_reference_and_the_compiled_path(dtype, edge):
    for shape, window in [((14, 17), (3, 4)), ((7, 9, 10), (2, 3, 3)), ((3, 5, 8, 9), (2, 4))]:
        image = random_data(shape, dtype, seed=11)
        if dtype in (np.float32, np.float64):
            image[..., ::4] = np.nan
        threshold = float(np.nanmedian(image)) + 0.5
        sizes = normalize_window(window, shape, "block", edge)
        result = portable.density_map(image, sizes, "block", threshold, edge)
        assert result.dtype == np.float32
        expected = block_reference(image, sizes, threshold, edge)
        np.testing.assert_allclose(result, expected, rtol=1e-7)
        compiled = vw.density_map(image, window, "block", threshold, edge)
        np.testing.assert_array_equal(result, compiled)


def test_density_threshold_is_compared_exactly_whatever_the_dtype():
    # float32(0.1) is a little above 0.1, so it counts for the threshold 0.1
    image = np.array([[0.1, 0.2], [0.0, 0.1]], np.float32)
    result = portable.density_map(image, (1, 1), "block", 0.1, "trim")
    np.testing.assert_array_equal(result, [[1, 1], [0, 1]])
    assert float(np.float32(0.1)) > 0.1
    # a float32 threshold the dtype rounds up: 0.3 < float32(0.3)
    image = np.array([np.float32(0.3), np.nextafter(np.float32(0.3), np.float32(0))])
    np.testing.assert_array_equal(portable.density_map(image, (1,), "sliding", 0.3), [1, 0])
    integers = np.array([0, 2, 3, 255], np.uint8)
    for threshold, expected in [(2.5, [0, 0, 1, 1]), (-0.5, [1, 1, 1, 1]), (300, [0, 0, 0, 0])]:
        result = portable.density_map(integers, (1,), "block", threshold, "trim")
        np.testing.assert_array_equal(result, expected)
        np.testing.assert_array_equal(result, vw.density_map(integers, 1, "block", threshold))
    flags = np.array([True, False, True])
    result = portable.density_map(flags, (3,), "block", 0, "trim")
    np.testing.assert_array_equal(result, [np.float32(2) / np.float32(3)])


# --------------------------------------------------------------------------- masking


@pytest.mark.parametrize("fill_value", [0, -1, 300, 2.5, np.nan])
@pytest.mark.parametrize("dtype", DTYPES)
def test_apply_mask_matches_where_and_the_compiled_path(dtype, fill_value):
    image = random_data((3, 4, 5), dtype, seed=12)
    mask = random_data((4, 5), np.bool_, seed=13)
    result = portable.apply_mask(image, mask, fill_value)
    compiled = vw.apply_mask(image, mask, fill_value)
    assert result.dtype == compiled.dtype
    expected = np.where(mask, image.astype(np.float64), fill_value)
    np.testing.assert_array_equal(result.astype(np.float64), expected)
    np.testing.assert_array_equal(result, compiled)


def test_mask_filter_hand_checked():
    points = np.arange(3 * 3 * 2).reshape(3, 3, 2)
    mask = np.array([[True, False, True], [False, True, False], [False, False, False]])
    packed, counts = portable.mask_filter(points, mask, np.nan)
    np.testing.assert_array_equal(counts, [2, 1, 0])
    assert counts.dtype == np.intp
    assert packed.dtype == np.float64  # NaN does not fit int64
    np.testing.assert_array_equal(
        packed,
        [[[0, 1], [4, 5]], [[8, 9], [np.nan, np.nan]], [[np.nan, np.nan], [np.nan, np.nan]]],
    )
    packed, _ = portable.mask_filter(points, mask, -1)
    assert packed.dtype == points.dtype
    np.testing.assert_array_equal(packed[1], [[8, 9], [-1, -1]])
    empty, counts = portable.mask_filter(points, np.zeros((3, 3), bool), 0)
    assert empty.shape == (3, 0, 2)
    np.testing.assert_array_equal(counts, 0)


@pytest.mark.parametrize("fill_value", [0, np.nan])
@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_filter_matches_a_per_frame_reference_and_the_compiled_path(dtype, fill_value):
    for shape in [(6, 9), (5, 8, 3), (4, 7, 2, 3)]:
        points = random_data(shape, dtype, seed=14)
        mask = random_data(shape[:2], np.bool_, seed=15)
        mask[1] = False
        packed, counts = portable.mask_filter(points, mask, fill_value)
        for frame in range(shape[0]):  # the reference: one frame at a time
            kept = points[frame][mask[frame]]
            np.testing.assert_array_equal(packed[frame, : len(kept)], kept)
            np.testing.assert_array_equal(packed[frame, len(kept) :], fill_value)
        compiled, compiled_counts = vw.mask_filter(points, mask, fill_value)
        assert packed.dtype == compiled.dtype
        np.testing.assert_array_equal(packed, compiled)
        np.testing.assert_array_equal(counts, compiled_counts)


# --------------------------------------------------------------------------- derivatives


def gaussian_reference(volume, orders, sigma, spacing, truncate=4.0):
    """One component with scipy.ndimage.gaussian_filter in float64."""
    sigma_voxels = [s / d for s, d in zip(sigma, spacing, strict=True)]
    filtered = scipy.ndimage.gaussian_filter(
        volume.astype(np.float64), sigma_voxels, order=orders, mode="reflect", truncate=truncate
    )
    return filtered / math.prod(d**k for d, k in zip(spacing, orders, strict=True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "spacing"), [((15, 16), (1.0, 0.5)), ((7, 8, 9), (2.0, 1.0, 0.5))]
)
def test_finite_differences_match_np_gradient(dtype, shape, spacing):
    volume = random_data(shape, dtype, seed=16)
    gradient = portable.gradient_vectors(volume, None, spacing)
    assert gradient.shape == (*shape, len(shape)) and gradient.dtype == result_dtype(dtype)
    expected = np.stack(np.gradient(volume.astype(np.float64), *spacing), axis=-1)
    np.testing.assert_allclose(gradient, expected, rtol=rtol_for(gradient.dtype), atol=1e-12)
    compiled = vw.gradient_vectors(volume, spacing=spacing)
    np.testing.assert_allclose(gradient, compiled, rtol=rtol_for(gradient.dtype))
    magnitude = portable.gradient_magnitude(volume, None, spacing)
    np.testing.assert_allclose(
        magnitude, np.linalg.norm(expected, axis=-1), rtol=rtol_for(dtype), atol=1e-12
    )
    np.testing.assert_allclose(
        magnitude, vw.gradient_magnitude(volume, spacing=spacing), rtol=rtol_for(dtype)
    )


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
@pytest.mark.parametrize(
    ("shape", "spacing"), [((15, 16), (1.0, 0.5)), ((7, 8, 9), (2.0, 1.0, 0.5))]
)
def test_finite_difference_hessian_is_np_gradient_twice(dtype, shape, spacing):
    volume = random_data(shape, dtype, seed=17)
    hessian = portable.hessian_matrix(volume, None, spacing)
    first = np.gradient(volume.astype(np.float64), *spacing)
    expected = np.moveaxis(np.array([np.gradient(g, *spacing) for g in first]), (0, 1), (-2, -1))
    # np.gradient's own second derivatives are only symmetric up to rounding
    expected = (expected + np.swapaxes(expected, -1, -2)) / 2
    assert_close_to_scale(hessian, expected, rtol_for(dtype))
    assert_close_to_scale(hessian, vw.hessian_matrix(volume, None, spacing), rtol_for(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "sigma", "spacing"),
    [
        ((20, 21), (1.5, 1.0), (1.0, 0.5)),
        ((9, 10, 11), (2.0, 1.5, 1.0), (2.0, 1.0, 0.5)),
        ((8, 9, 10), (0.7, 0.7, 0.7), (1.0, 1.0, 1.0)),
    ],
)
def test_gaussian_derivatives_match_scipy_gaussian_filter(dtype, shape, sigma, spacing):
    volume = smooth_volume(shape, dtype, seed=18)
    ndim = len(shape)
    orders = [tuple(int(a == i) for a in range(ndim)) for i in range(ndim)] + [
        o for _, o in portable._hessian_orders(ndim)
    ]
    components = portable.derivatives(volume, orders, sigma, spacing, 4.0)
    assert set(components) == set(orders)
    for orders_, component in components.items():
        assert component.dtype == result_dtype(dtype) and component.shape == shape
        expected = gaussian_reference(volume, orders_, sigma, spacing)
        assert_close_to_scale(component, expected, 10 * rtol_for(dtype))


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
@pytest.mark.parametrize(
    ("shape", "sigma", "spacing"),
    [((20, 21), (1.5, 1.0), (1.0, 0.5)), ((9, 10, 11), (2.0, 1.5, 1.0), (2.0, 1.0, 0.5))],
)
def test_gaussian_gradient_and_hessian_match_scipy_and_the_compiled_path(
    dtype, shape, sigma, spacing
):
    volume = smooth_volume(shape, dtype, seed=19)
    ndim = len(shape)
    tolerance = 10 * rtol_for(dtype)
    gradient = portable.gradient_vectors(volume, sigma, spacing)
    expected = np.stack(
        [
            gaussian_reference(volume, tuple(int(a == i) for a in range(ndim)), sigma, spacing)
            for i in range(ndim)
        ],
        axis=-1,
    )
    assert_close_to_scale(gradient, expected, tolerance)
    assert_close_to_scale(gradient, vw.gradient_vectors(volume, spacing, sigma), tolerance)
    magnitude = portable.gradient_magnitude(volume, sigma, spacing)
    assert_close_to_scale(magnitude, np.linalg.norm(expected, axis=-1), tolerance)
    hessian = portable.hessian_matrix(volume, sigma, spacing)
    assert hessian.shape == (*shape, ndim, ndim) and hessian.dtype == result_dtype(dtype)
    np.testing.assert_array_equal(hessian, np.swapaxes(hessian, -1, -2))
    for i in range(ndim):
        for j in range(ndim):
            orders = tuple(int(a == i) + int(a == j) for a in range(ndim))
            reference = gaussian_reference(volume, orders, sigma, spacing)
            assert_close_to_scale(hessian[..., i, j], reference, tolerance)
    assert_close_to_scale(hessian, vw.hessian_matrix(volume, sigma, spacing), tolerance)


def test_truncate_changes_the_kernel_like_scipy():
    volume = smooth_volume((12, 13, 14), np.float64, seed=20)
    sigma, spacing = (1.5, 1.5, 1.5), (1.0, 1.0, 1.0)
    short = portable.derivatives(volume, [(0, 1, 1)], sigma, spacing, 1.5)[0, 1, 1]
    np.testing.assert_allclose(
        short, gaussian_reference(volume, (0, 1, 1), sigma, spacing, 1.5), rtol=1e-10, atol=1e-12
    )
    default = portable.derivatives(volume, [(0, 1, 1)], sigma, spacing)[0, 1, 1]
    assert np.abs(short - default).max() > 1e-6


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("sigma", [None, 1.0])
def test_nan_and_inf_give_nan_near_them_like_the_compiled_path(bad, sigma):
    volume = smooth_volume((12, 13, 14), np.float32, seed=21)
    volume[6, 6, 6] = bad
    volume[6, 6, 8] = bad  # central differences between them: inf - inf
    sigmas = None if sigma is None else (sigma,) * 3
    spacing = (1.0, 1.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = {
            "gradient": portable.gradient_vectors(volume, sigmas, spacing),
            "hessian": portable.hessian_matrix(volume, sigmas, spacing),
            "eigenvalues": portable.hessian_eigenvalues(volume, sigmas, spacing),
        }
    compiled = {
        "gradient": vw.gradient_vectors(volume, sigma=sigma),
        "hessian": vw.hessian_matrix(volume, sigma=sigma),
        "eigenvalues": vw.hessian_eigenvalues(volume, sigma=sigma),
    }
    for name, result in results.items():
        assert not np.isinf(result).any(), name
        # a neighbour along axis 0; central differences twice: the voxel two steps away
        near = (8, 6, 6) if sigma is None and name != "gradient" else (7, 6, 6)
        assert np.isnan(result[near]).any(), name
        assert np.isfinite(result[0, 0, 0]).all(), name
        np.testing.assert_array_equal(np.isnan(result), np.isnan(compiled[name]), err_msg=name)


# --------------------------------------------------------------------------- eigenvalues

DEGENERATE_3X3 = [
    (3.0, -1.0, 0.5),
    (1.0, 1.0, 1.0),  # isotropic: a multiple of the identity
    (2.0, 2.0, -4.0),  # a double eigenvalue
    (5.0, 0.0, 0.0),
    (1.0, 1.0 + 1e-9, -3.0),  # nearly double
    (0.0, 0.0, 0.0),  # the zero matrix
    (1e-30, -2e-30, 5e-31),
    (1e30, 3e29, -1e30),
    (1e300, -1e300, 1e299),  # the scaling keeps every step finite
    (1e-310, 2e-310, -1e-310),  # subnormal entries
]


@pytest.mark.parametrize("eigenvalues", DEGENERATE_3X3)
def test_3x3_eigenvalues_agree_with_eigvalsh(eigenvalues):
    matrices = random_symmetric(300, 3, eigenvalues, seed=22)
    expected = np.linalg.eigvalsh(matrices)[:, ::-1]
    result = portable.symmetric_eigenvalues(upper_triangle(matrices), "descending")
    assert result.shape == (300, 3) and result.dtype == np.float64
    scale = max(np.abs(eigenvalues).max(), np.finfo(float).smallest_subnormal)
    # a (nearly) double root costs the trigonometric form sqrt(eps) ~ 1e-8 of the scale
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-7 * scale)


@pytest.mark.parametrize(
    "eigenvalues", [(3.0, -1.0), (1.0, 1.0), (0.0, 0.0), (1e30, -1e29), (1e300, -1e300)]
)
def test_2x2_eigenvalues_agree_with_eigvalsh(eigenvalues):
    matrices = random_symmetric(300, 2, eigenvalues, seed=23)
    expected = np.linalg.eigvalsh(matrices)[:, ::-1]
    result = portable.symmetric_eigenvalues(upper_triangle(matrices), "descending")
    scale = max(np.abs(eigenvalues).max(), np.finfo(float).tiny)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-14 * scale)


@pytest.mark.parametrize("ndim", [2, 3])
def test_random_and_diagonal_matrices_agree_with_eigvalsh(ndim):
    rng = np.random.default_rng(24)
    matrices = rng.standard_normal((5000, ndim, ndim)) * 10.0 ** rng.integers(-5, 6, (5000, 1, 1))
    matrices = (matrices + np.swapaxes(matrices, -1, -2)) / 2
    matrices[:50] *= np.eye(ndim)  # diagonal matrices
    matrices[50:60] = 0
    expected = np.linalg.eigvalsh(matrices)[:, ::-1]
    result = portable.symmetric_eigenvalues(upper_triangle(matrices), "descending")
    scale = np.abs(expected).max(axis=1, keepdims=True)
    assert (np.abs(result - expected) <= 1e-12 * scale).all()
    diagonals = -np.sort(-np.diagonal(matrices[:50], 0, 1, 2))  # a hand-checkable reference
    assert (np.abs(result[:50] - diagonals) <= 1e-12 * scale[:50]).all()
    np.testing.assert_array_equal(result[50:60], 0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_eigenvalue_orders_nan_and_dtype(ndim):
    matrices = random_symmetric(600, ndim, np.random.default_rng(25).standard_normal((600, ndim)))
    matrices[5, 0, 0] = np.nan
    matrices[6, 0, ndim - 1] = matrices[6, ndim - 1, 0] = np.inf
    components = upper_triangle(matrices)
    descending = portable.symmetric_eigenvalues(components, "descending")
    assert np.isnan(descending[[5, 6]]).all()
    assert np.isfinite(np.delete(descending, [5, 6], axis=0)).all()
    finite = np.delete(descending, [5, 6], axis=0)
    assert (np.diff(finite, axis=1) <= 0).all()
    np.testing.assert_array_equal(
        portable.symmetric_eigenvalues(components, "ascending"), descending[:, ::-1]
    )
    by_abs = portable.symmetric_eigenvalues(components, "abs")
    expected = np.take_along_axis(
        descending, np.argsort(np.abs(descending), axis=1, kind="stable"), axis=1
    )
    np.testing.assert_array_equal(by_abs, expected)
    single = portable.symmetric_eigenvalues([c.astype(np.float32) for c in components], "abs")
    assert single.dtype == np.float32
    # equal magnitudes: the positive one first, as the compiled path (the 3x3 solver's
    # rounding may part them by an ulp)
    ties = np.diag([-2.0, 2.0, 1.0][:ndim])[None]
    tie = portable.symmetric_eigenvalues(upper_triangle(ties), "abs")
    np.testing.assert_allclose(tie, [[1.0, 2.0, -2.0] if ndim == 3 else [2.0, -2.0]], rtol=1e-15)


@pytest.mark.parametrize("order", portable.EIGENVALUE_ORDERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "sigma"), [((24, 25), 1.5), ((10, 11, 12), 2.0), ((9, 9, 9), None)]
)
def test_hessian_eigenvalues_agree_with_eigvalsh_and_the_compiled_path(order, dtype, shape, sigma):
    volume = smooth_volume(shape, dtype, seed=26)
    ndim = len(shape)
    spacing = (2.0, 1.0, 0.5)[-ndim:]
    sigmas = None if sigma is None else (sigma,) * ndim
    result = portable.hessian_eigenvalues(volume, sigmas, spacing, order)
    assert result.shape == (*shape, ndim) and result.dtype == result_dtype(dtype)
    hessian = portable.hessian_matrix(volume, sigmas, spacing).astype(np.float64)
    expected = np.linalg.eigvalsh(hessian)  # ascending
    compiled = vw.hessian_eigenvalues(volume, sigma, spacing, order)
    if order == "descending":
        expected = expected[..., ::-1]
    elif order == "abs":
        # eigenvalues of (nearly) equal magnitude may come in either order: compare the
        # magnitudes in order, and the values as sets
        assert (np.diff(np.abs(result), axis=-1) >= 0).all()
        result, expected, compiled = (np.sort(v, axis=-1) for v in (result, expected, compiled))
    scale = np.abs(expected).max(axis=-1, keepdims=True)
    assert (np.abs(result - expected) <= 1e-6 * scale + 1e-30).all()
    assert_close_to_scale(result, compiled, 10 * rtol_for(dtype))


def test_hessian_eigenvalues_agree_with_scikit_image_on_the_same_hessian():
    volume = smooth_volume((12, 13, 14), np.float64, seed=27)
    hessian = portable.hessian_matrix(volume, (1.5,) * 3, (1.0,) * 3)
    expected = np.moveaxis(hessian_matrix_eigvals(upper_triangle(hessian)), 0, -1)
    result = portable.hessian_eigenvalues(volume, (1.5,) * 3, (1.0,) * 3)
    np.testing.assert_allclose(result, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())


# --------------------------------------------------------------------------- vesselness


def frangi_reference(eigenvalues, alpha, beta, gamma, ridges):
    """Frangi's formulas written out on eigenvalues sorted by magnitude, in float64."""
    values = np.asarray(eigenvalues, dtype=np.float64) * (-1.0 if ridges == "bright" else 1.0)
    values = np.take_along_axis(values, np.argsort(np.abs(values), axis=-1), axis=-1)
    if gamma is None:
        gamma = np.nanmax(np.linalg.norm(values, axis=-1)) / 2
    lambda1 = values[..., 0]
    lambda2 = np.maximum(values[..., 1], 1e-10)
    if values.shape[-1] == 2:
        plate, blob = 1.0, np.abs(lambda1) / lambda2
    else:
        lambda3 = np.maximum(values[..., 2], 1e-10)
        plate = 1 - np.exp(-((lambda2 / lambda3) ** 2) / (2 * alpha**2))
        blob = np.abs(lambda1) / np.sqrt(lambda2 * lambda3)
    structure = (values**2).sum(axis=-1)
    return plate * np.exp(-(blob**2) / (2 * beta**2)) * (1 - np.exp(-structure / (2 * gamma**2)))


@pytest.mark.parametrize("ridges", ["bright", "dark"])
@pytest.mark.parametrize("gamma", [None, 0.7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ndim", [2, 3])
def test_frangi_matches_the_formulas_and_the_compiled_path(ndim, dtype, gamma, ridges):
    eigenvalues = random_data((30, 20, ndim), dtype, seed=28) / 10
    eigenvalues[0, 0, 1] = np.nan  # that voxel is NaN and does not set gamma
    result = portable.frangi_vesselness(eigenvalues, 0.4, 0.6, gamma, ridges)
    assert result.shape == (30, 20) and result.dtype == result_dtype(dtype)
    assert np.isnan(result[0, 0]) and np.isfinite(result.ravel()[1:]).all()
    expected = frangi_reference(eigenvalues, 0.4, 0.6, gamma, ridges)
    assert np.nanmax(expected) > 0.1  # not two zero images
    # float32 input is computed in float32, as the compiled path does
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12}
    np.testing.assert_allclose(result, expected, **tolerance)
    compiled = vw.frangi_vesselness(eigenvalues, 0.4, 0.6, gamma, ridges)
    np.testing.assert_allclose(result, compiled, rtol=rtol_for(dtype), atol=1e-7)


def test_frangi_prefers_a_bright_tube():
    tube, blob, plate = [-4.0, -4.0, 0.0], [-4.0, -4.0, -4.0], [-4.0, 0.0, 0.0]
    scores = portable.frangi_vesselness(np.array([tube, blob, plate]), 0.5, 0.5, 1.0, "bright")
    assert scores[0] > 0.5 > scores[1] and scores[2] == 0


# --------------------------------------------------------------------------- inputs


def test_no_function_modifies_its_input_or_returns_a_view_of_it():
    stack = random_data((5, 6, 7), np.float64, seed=29)
    stack[1, 1, 1] = np.nan
    integers = random_data((5, 6, 7), np.uint8, seed=30)
    mask = random_data((6, 7), np.bool_, seed=31)
    points_mask = random_data((5, 6), np.bool_, seed=32)
    eigenvalues = random_data((6, 7, 3), np.float64, seed=33)
    sums = [checksum(a) for a in (stack, integers, mask, points_mask, eigenvalues)]
    spacing, sigma = (1.0, 2.0, 0.5), (1.0, 1.0, 1.0)
    results = []
    for array in (stack, integers):
        results += [portable.axis_statistic(array, s, 1, 0, True) for s in portable.STATISTICS]
        for ord in (1, 2, math.inf):
            results += [portable.frame_norm_partials(array, 2, ord)]
            results += [portable.frame_norms(array, 2, ord)]
        results += [
            portable.density_map(array, (2, 2, 3), m, 4.0, "pad") for m in ("block", "sliding")
        ]
        results += [
            portable.apply_mask(array, mask, 0),
            *portable.mask_filter(array, points_mask, 0),
        ]
        for s in (None, sigma):
            results += [
                portable.gradient_vectors(array, s, spacing),
                portable.gradient_magnitude(array, s, spacing),
                portable.hessian_matrix(array, s, spacing),
                portable.hessian_eigenvalues(array, s, spacing, "abs"),
                *portable.derivatives(array, [(1, 0, 0), (0, 1, 1)], s, spacing).values(),
            ]
    partials = portable.frame_norm_partials(stack, 0, 1)
    partials_sum = checksum(partials)
    results += [portable.finish_frame_norms(partials, 1), portable.finish_frame_norms(partials, 2)]
    components = upper_triangle(eigenvalues[..., None] * np.ones(3))
    component_sums = [checksum(c) for c in components]
    results += [portable.symmetric_eigenvalues(components, "abs")]
    results += [portable.frangi_vesselness(eigenvalues, 0.5, 0.5, None, "dark")]
    assert [checksum(a) for a in (stack, integers, mask, points_mask, eigenvalues)] == sums
    assert checksum(partials) == partials_sum
    assert [checksum(c) for c in components] == component_sums
    for result in results:
        for source in (stack, integers, eigenvalues, partials, *components):
            assert not np.shares_memory(result, source)
