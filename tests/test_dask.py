"""Dask in, Dask out: every public function on Dask arrays equals its NumPy result, lazily.

Tolerances: minima, maxima, medians, densities, masks and derivatives must be
equal to the NumPy path; sums of moments (mean, sum, var, std, cv) are merged
chunk by chunk in another order, so they may differ by that rounding:
rtol 1e-6 for float64 results and 1e-5 for float32 results.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

import napari_voxelwise as vw
from conftest import random_data

SHAPE = (17, 13, 11)
#: regular, uneven, one-element and "one chunk" chunkings of SHAPE
CHUNKINGS = [(5, 6, 4), ((3, 9, 5), (1, 12), (7, 4)), (1, 13, 3), SHAPE]


def _tolerance(result: np.ndarray) -> dict:
    rtol = 1e-6 if result.dtype == np.float64 else 1e-5
    scale = np.nanmax(np.abs(result[np.isfinite(result)]), initial=1.0)
    return {"rtol": rtol, "atol": rtol * scale}


class CountingArray:
    """Array-like that counts the reads of its data (to prove that nothing was computed)."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self.reads = 0

    def __getitem__(self, index):
        result = self.array[index]
        if result.size:
            self.reads += 1
        return result


def _counted(array: np.ndarray, chunks) -> tuple[da.Array, CountingArray]:
    source = CountingArray(array)
    lazy = da.from_array(source, chunks=chunks, meta=np.empty((0,) * array.ndim, array.dtype))
    return lazy, source


# --------------------------------------------------------------------------- statistics


@pytest.fixture(params=["merged", "unmerged"])
def merging(request):
    """Chunks along the reduced axis merged up to Dask's chunk size (the default: these small
    arrays end up one chunk deep), or never merged (partial results merged in a tree)."""
    if request.param == "merged":
        yield
    else:
        with dask.config.set({"array.chunk-size": "1B"}):
            yield


@pytest.mark.parametrize("chunks", CHUNKINGS[:3])
@pytest.mark.parametrize("statistic", ["var", "std", "mean", "sum", "cv", "min", "max", "median"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_statistics_equal_numpy(statistic, dtype, chunks, merging):
    stack = random_data(SHAPE, dtype, seed=1)
    lazy = da.from_array(stack, chunks=chunks)
    for axis in range(3):
        result = vw.axis_statistic(lazy, statistic, axis=axis, ddof=1)
        assert isinstance(result, da.Array)
        expected = vw.axis_statistic(stack, statistic, axis=axis, ddof=1)
        computed = result.compute()
        assert computed.dtype == expected.dtype == result.dtype
        assert computed.shape == expected.shape
        if statistic in ("min", "max", "median"):
            np.testing.assert_array_equal(computed, expected)
        else:
            np.testing.assert_allclose(computed, expected, **_tolerance(expected))


def test_variance_matches_numpy_var_with_many_chunks_along_the_axis(merging):
    """120 chunks along the reduced axis: three levels of pairwise merges."""
    stack = (
        random_data((240, 6, 5), np.float64, seed=2) + 1e6
    )  # large mean: merges must not cancel
    lazy = da.from_array(stack, chunks=(2, 3, 5))
    np.testing.assert_allclose(
        vw.voxel_variance(lazy, axis=0).compute(), stack.var(axis=0), rtol=1e-6
    )
    np.testing.assert_allclose(
        vw.voxel_variance(lazy, axis=0, ddof=1).compute(), stack.var(axis=0, ddof=1), rtol=1e-6
    )


@pytest.mark.parametrize("statistic", ["var", "mean", "sum", "min", "max", "median", "cv"])
def test_skipna_statistics_equal_numpy(statistic, merging):
    stack = random_data((12, 5, 4), np.float64, seed=3)
    stack[stack > 8] = np.nan
    stack[:, 0, 0] = np.nan  # a voxel without any valid value
    stack[:4, 1, 1] = np.nan  # a whole chunk of one voxel is NaN
    lazy = da.from_array(stack, chunks=(4, 3, 3))
    expected = vw.axis_statistic(stack, statistic, axis=0, skipna=True)
    computed = vw.axis_statistic(lazy, statistic, axis=0, skipna=True).compute()
    np.testing.assert_array_equal(np.isnan(computed), np.isnan(expected))
    np.testing.assert_allclose(computed, expected, rtol=1e-6)
    propagated = vw.axis_statistic(lazy, statistic, axis=0).compute()
    np.testing.assert_array_equal(np.isnan(propagated), np.isnan(stack).any(axis=0))


def test_chunks_along_the_reduced_axis_are_merged_up_to_the_chunk_size():
    from napari_voxelwise import _dask

    stack = da.zeros((64, 32, 32), dtype=np.float32, chunks=(2, 16, 32))  # 2 KiB a row
    with dask.config.set({"array.chunk-size": "64KiB"}):
        merged = _dask._deeper_along(stack, 0)
        assert merged.chunks[0] == (32, 32) and merged.chunks[1:] == stack.chunks[1:]
        assert _dask._deeper_along(stack, 2) is stack  # one chunk along the axis already
    with dask.config.set({"array.chunk-size": "1B"}):  # never below the present chunks
        assert _dask._deeper_along(stack, 0) is stack


@pytest.mark.parametrize("order", [1, 2, 3.5, np.inf])
@pytest.mark.parametrize("chunks", CHUNKINGS[:3])
def test_frame_norms_equal_numpy(order, chunks):
    stack = random_data(SHAPE, np.float32, seed=4)
    lazy = da.from_array(stack, chunks=chunks)
    for axis in range(3):
        expected = [
            np.linalg.norm(f.astype(np.float64).ravel(), order)
            for f in np.moveaxis(stack, axis, 0)
        ]
        computed = vw.frame_norms(lazy, axis=axis, ord=order).compute()
        assert computed.dtype == np.float64
        np.testing.assert_allclose(computed, expected, rtol=1e-12)


# --------------------------------------------------------------------------- density and masks


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize(
    ("mode", "edge"), [("block", "trim"), ("block", "pad"), ("sliding", "trim")]
)
@pytest.mark.parametrize("window", [3, (2, 4), (4, 5, 3), (1, 1, 6)])
def test_density_equals_numpy(window, mode, edge, chunks):
    image = random_data(SHAPE, np.uint16, seed=5)
    threshold = float(np.median(image))
    lazy = da.from_array(image, chunks=chunks)
    result = vw.density_map(lazy, window, mode, threshold, edge)
    expected = vw.density_map(image, window, mode, threshold, edge)
    assert result.shape == expected.shape and result.dtype == expected.dtype
    np.testing.assert_array_equal(result.compute(), expected)


@pytest.mark.parametrize("dask_mask", [False, True])
def test_mask_filter_equals_numpy(dask_mask):
    points = random_data((23, 9, 4), np.float32, seed=6)
    mask = points[..., 0] > 3
    mask[5] = False  # a frame with nothing selected
    lazy = da.from_array(points, chunks=(4, 5, 3))
    expected, expected_counts = vw.mask_filter(points, mask, fill_value=-1)
    packed, counts = vw.mask_filter(lazy, da.from_array(mask) if dask_mask else mask, -1)
    assert isinstance(packed, da.Array) and isinstance(counts, np.ndarray)
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_array_equal(packed.compute(), expected)
    assert packed.dtype == expected.dtype


@pytest.mark.parametrize("mask_ndim", [1, 2, 3])
@pytest.mark.parametrize("dask_mask", [False, True])
def test_apply_mask_broadcasts_trailing_masks(mask_ndim, dask_mask):
    image = random_data(SHAPE, np.uint8, seed=7)
    mask = random_data(SHAPE[3 - mask_ndim :], np.float64, seed=8) > 3
    lazy = da.from_array(image, chunks=CHUNKINGS[1])
    given = da.from_array(mask, chunks=2) if dask_mask else mask
    expected = vw.apply_mask(image, mask, fill_value=np.nan)
    result = vw.apply_mask(lazy, given, fill_value=np.nan)
    assert result.dtype == expected.dtype
    np.testing.assert_array_equal(result.compute(), expected)


def test_dask_mask_with_nan_fails_at_compute():
    mask = da.from_array(np.array([1.0, np.nan, 0.0]))
    result = vw.apply_mask(da.ones((2, 3), chunks=1), mask)
    with pytest.raises(ValueError, match="mask contains NaN"):
        result.compute()


# --------------------------------------------------------------------------- derivatives


DERIVATIVES = {
    "gradient_vectors": lambda v, s: vw.gradient_vectors(v, (1.0, 0.5, 2.0), s),
    "gradient_magnitude": lambda v, s: vw.gradient_magnitude(v, (1.0, 0.5, 2.0), s),
    "hessian_matrix": lambda v, s: vw.hessian_matrix(v, s, (1.0, 0.5, 2.0)),
    "hessian_eigenvalues": lambda v, s: vw.hessian_eigenvalues(v, s, (1.0, 0.5, 2.0), "abs"),
}


@pytest.mark.parametrize("sigma", [None, 1.0, (2.0, 0.6, 3.0)], ids=["differences", "1", "aniso"])
@pytest.mark.parametrize("name", DERIVATIVES)
def test_derivatives_equal_numpy_without_seams(name, sigma):
    volume = random_data((24, 20, 18), np.float32, seed=9)
    chunks = ((7, 9, 8), (5, 4, 11), (3, 15))  # uneven, some thinner than the Gaussian halo
    expected = DERIVATIVES[name](volume, sigma)
    result = DERIVATIVES[name](da.from_array(volume, chunks=chunks), sigma)
    assert result.chunks[:3] != ((24,), (20,), (18,)), "the test needs several chunks"
    computed = result.compute()
    assert computed.shape == expected.shape and computed.dtype == expected.dtype
    error = np.abs(computed.astype(np.float64) - expected) / np.abs(expected).max()
    # the voxels next to a chunk boundary (of the final chunks) versus all of them
    seams = np.zeros(volume.shape, bool)
    for axis, axis_chunks in enumerate(result.chunks[:3]):
        for edge in np.cumsum(axis_chunks)[:-1]:
            index = [slice(None)] * 3
            index[axis] = slice(edge - 1, edge + 1)
            seams[tuple(index)] = True
    assert seams.any()
    assert error.max() <= 1e-5
    assert error[seams].max() <= 1e-5


def test_hessian_eigenvalues_of_frames_equal_numpy_per_frame():
    from napari_voxelwise._dask import hessian_eigenvalues_frames

    stack = random_data((3, 10, 12, 9), np.float32, seed=10)
    result = hessian_eigenvalues_frames(da.from_array(stack, chunks=(2, 4, 5, 9)), sigma=1.5)
    expected = np.stack([vw.hessian_eigenvalues(frame, sigma=1.5) for frame in stack])
    np.testing.assert_array_equal(result.compute(), expected)


@pytest.mark.parametrize("gamma", [None, 2.0])
def test_frangi_equals_numpy(gamma):
    volume = random_data((12, 10, 9), np.float64, seed=11)
    eigenvalues = vw.hessian_eigenvalues(volume, sigma=1.0)
    eigenvalues[0, 0, 0] = np.nan  # skipped by the automatic scale, NaN itself
    lazy = da.from_array(eigenvalues, chunks=(5, 4, 9, 1))  # eigenvalues split: rechunked
    expected = vw.frangi_vesselness(eigenvalues, gamma=gamma, ridges="dark")
    result = vw.frangi_vesselness(lazy, gamma=gamma, ridges="dark")
    np.testing.assert_allclose(result.compute(), expected, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- laziness, errors


LAZY_CALLS = {
    "voxel_variance": lambda a: vw.voxel_variance(a, axis=0),
    "median": lambda a: vw.axis_statistic(a, "median", axis=1),
    "max": lambda a: vw.axis_statistic(a, "max", axis=2),
    "frame_norms": lambda a: vw.frame_norms(a, axis=0),
    "density_block": lambda a: vw.density_map(a, 3, threshold=3),
    "density_sliding": lambda a: vw.density_map(a, (4, 2), mode="sliding"),
    "apply_mask": lambda a: vw.apply_mask(a, np.ones(a.shape[1:], bool)),
    "mask_filter": lambda a: vw.mask_filter(a, np.ones(a.shape[:2], bool))[0],
    "gradient_vectors": lambda a: vw.gradient_vectors(a),
    "gradient_magnitude": lambda a: vw.gradient_magnitude(a, sigma=1.0),
    "hessian_matrix": lambda a: vw.hessian_matrix(a, sigma=None),
    "hessian_eigenvalues": lambda a: vw.hessian_eigenvalues(a, sigma=1.0),
    "frangi_vesselness": lambda a: vw.frangi_vesselness(a),
}


@pytest.mark.parametrize("name", LAZY_CALLS)
def test_nothing_is_read_before_compute(name):
    data = random_data((12, 10, 3), np.float32, seed=12)
    lazy, source = _counted(data, chunks=(5, 4, 3))
    result = LAZY_CALLS[name](lazy)
    assert isinstance(result, da.Array)
    assert source.reads == 0
    with dask.config.set(scheduler="synchronous"):
        computed = result.compute()
    assert source.reads > 0
    expected = LAZY_CALLS[name](data)
    np.testing.assert_allclose(computed, expected, rtol=1e-5, atol=1e-5 * np.nanmax(expected))


def test_mask_filter_computes_the_mask_only():
    points, points_source = _counted(random_data((8, 6, 2), np.float32), chunks=(3, 6, 2))
    mask, mask_source = _counted(np.ones((8, 6), bool), chunks=(4, 6))
    vw.mask_filter(points, mask)
    assert mask_source.reads > 0 and points_source.reads == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: vw.voxel_variance(a, axis=0, ddof=12), "ddof=12 must be smaller"),
        (lambda a: vw.axis_statistic(a, "mode"), "statistic must be one of"),
        (lambda a: vw.frame_norms(a, ord=-1), "ord must be positive"),
        (lambda a: vw.density_map(a, 20), "window .* is larger than the image"),
        (lambda a: vw.apply_mask(a, np.ones(4, bool)), "mask shape"),
        (lambda a: vw.mask_filter(a, np.ones((3, 3), bool)), "mask must have shape"),
        (lambda a: vw.gradient_vectors(a, sigma=-1), "sigma must be >= 0"),
        (lambda a: vw.hessian_eigenvalues(a[None]), "2D or 3D"),
        (lambda a: vw.hessian_eigenvalues(a, order="up"), "order must be one of"),
        (lambda a: vw.frangi_vesselness(a, alpha=0), "alpha must be > 0"),
    ],
)
def test_bad_arguments_fail_at_once_with_the_numpy_message(call, message):
    lazy, source = _counted(random_data((12, 10, 3), np.float32), chunks=5)
    with pytest.raises(ValueError, match=message):
        call(lazy)
    assert source.reads == 0


def test_non_numeric_dask_input_is_refused():
    with pytest.raises(TypeError, match="stack must hold real numbers"):
        vw.voxel_variance(da.from_array(np.array(["a", "b"])))
