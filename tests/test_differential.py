"""Gradients, Hessians, eigenvalues and vesselness against numpy, scipy and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.feature import hessian_matrix as skimage_hessian_matrix
from skimage.feature import hessian_matrix_eigvals
from skimage.filters import frangi

from conftest import DTYPES, checksum, random_data
from napari_voxelwise import (
    frangi_vesselness,
    gradient_magnitude,
    gradient_vectors,
    hessian_eigenvalues,
    hessian_matrix,
)
from napari_voxelwise._dispatch import compiled
from napari_voxelwise.differential import gaussian_weights, reflect_index


def smooth_volume(shape, dtype=np.float32, seed=0):
    """Random data smoothed a little, so derivatives have structure."""
    data = ndi.gaussian_filter(np.random.default_rng(seed).random(shape), 1.0) * 100
    return data.astype(dtype) if np.dtype(dtype).kind == "f" else data.round().astype(dtype)


def gaussian_hessian_reference(volume, sigma, spacing):
    """Every Hessian entry from scipy.ndimage.gaussian_filter, in float64."""
    sigma_voxels = np.asarray(sigma, float) / np.asarray(spacing, float)
    ndim = volume.ndim
    hessian = np.empty((*volume.shape, ndim, ndim))
    for i in range(ndim):
        for j in range(ndim):
            order = [0] * ndim
            order[i] += 1
            order[j] += 1
            hessian[..., i, j] = ndi.gaussian_filter(
                volume.astype(np.float64), sigma_voxels, order=order
            ) / (spacing[i] * spacing[j])
    return hessian


def assert_close_to_scale(actual, expected, rtol):
    """|actual - expected| <= rtol * max|expected| (relative to the result's scale)."""
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


# ----------------------------------------------------------------------- kernels


@pytest.mark.parametrize("sigma", [0.4, 1.0, 2.5])
@pytest.mark.parametrize("order", [0, 1, 2])
def test_gaussian_weights_equal_scipy_filter1d(sigma, order):
    impulse = np.zeros(41)
    impulse[20] = 1
    weights = gaussian_weights(sigma, order, 4.0)
    radius = len(weights) // 2
    response = ndi.gaussian_filter1d(impulse, sigma, order=order)
    # correlating an impulse gives the weights reversed, centred on the impulse
    np.testing.assert_allclose(response[20 - radius : 21 + radius], weights[::-1], atol=1e-15)


def test_reflect_index_matches_numpy_symmetric_padding():
    line = np.arange(4)
    for pad in (1, 3, 4, 9):
        expected = np.pad(line, pad, mode="symmetric")
        np.testing.assert_array_equal(line[reflect_index(-pad, 4 + pad, 4)], expected)


# ----------------------------------------------------------------------- gradient


def test_seed_gradient_50_cubed():
    """The user's question: np.gradient of (50, 50, 50) as one (50, 50, 50, 3) array."""
    volume = np.random.default_rng(0).random((50, 50, 50))
    gradient = gradient_vectors(volume)
    assert gradient.shape == (50, 50, 50, 3)
    np.testing.assert_allclose(gradient, np.stack(np.gradient(volume), axis=-1), rtol=1e-13)


@pytest.mark.parametrize("shape", [(17,), (9, 12), (6, 7, 8), (3, 4, 5, 6)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_matches_numpy_gradient(shape, dtype, workers):
    volume = random_data(shape, dtype)
    spacing = tuple(0.5 + i for i in range(len(shape)))
    before = checksum(volume)
    result = gradient_vectors(volume, spacing=spacing, workers=workers)
    components = np.gradient(volume.astype(np.float64), *spacing)
    expected = np.stack(components if len(shape) > 1 else [components], -1)
    assert result.shape == (*shape, len(shape))
    assert result.dtype == (np.float64 if dtype == np.float64 else np.float32)
    assert_close_to_scale(result, expected, 1e-12 if dtype == np.float64 else 1e-6)
    assert checksum(volume) == before


@pytest.mark.parametrize("spacing", [None, (2.0, 1.0, 0.5)])
def test_gaussian_gradient_matches_scipy(spacing, workers):
    volume = smooth_volume((12, 20, 22))
    spacing_ = (1.0, 1.0, 1.0) if spacing is None else spacing
    result = gradient_vectors(volume, spacing=spacing, sigma=2.0, workers=workers)
    for axis in range(3):
        order = [0, 0, 0]
        order[axis] = 1
        expected = (
            ndi.gaussian_filter(volume.astype(np.float64), 2.0 / np.asarray(spacing_), order=order)
            / spacing_[axis]
        )
        assert_close_to_scale(result[..., axis], expected, 1e-5)


@pytest.mark.parametrize("sigma", [None, 1.5])
def test_gradient_magnitude_is_norm_of_vectors(sigma):
    volume = smooth_volume((10, 11, 12), np.float64)
    magnitude = gradient_magnitude(volume, spacing=(1, 2, 3), sigma=sigma)
    vectors = gradient_vectors(volume, spacing=(1, 2, 3), sigma=sigma)
    np.testing.assert_allclose(magnitude, np.linalg.norm(vectors, axis=-1), rtol=1e-12)


# ----------------------------------------------------------------------- Hessian


def test_seed_finite_difference_hessian():
    """The user's attempt, done right: np.gradient twice, leading axes moved last."""
    volume = np.random.default_rng(1).random((12, 13, 14))
    seed_answer = np.array([np.gradient(g) for g in np.gradient(volume)])
    expected = np.moveaxis(seed_answer, (0, 1), (-2, -1))
    result = hessian_matrix(volume, sigma=None)
    assert result.shape == (12, 13, 14, 3, 3)
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(result, np.swapaxes(result, -1, -2))


@pytest.mark.parametrize("shape", [(15, 16), (7, 8, 9)])
def test_finite_difference_hessian_with_spacing(shape, workers):
    volume = random_data(shape, np.float64)
    spacing = (2.0, 0.5, 3.0)[: len(shape)]
    seed_answer = np.array([np.gradient(g, *spacing) for g in np.gradient(volume, *spacing)])
    result = hessian_matrix(volume, sigma=0, spacing=spacing, workers=workers)
    np.testing.assert_allclose(
        result, np.moveaxis(seed_answer, (0, 1), (-2, -1)), rtol=1e-12, atol=1e-10
    )


@pytest.mark.parametrize(
    ("shape", "sigma", "spacing"),
    [
        ((24, 25), 1.5, (1.0, 1.0)),
        ((24, 25), 2.0, (0.5, 1.5)),
        ((10, 18, 19), 2.0, (1.0, 1.0, 1.0)),
        ((10, 18, 19), 2.0, (2.5, 1.0, 1.0)),
        ((10, 18, 19), (3.0, 1.0, 1.5), (2.0, 0.5, 1.0)),
        ((3, 20, 21), 2.0, (1.0, 1.0, 1.0)),  # kernel longer than the first axis
        ((5, 6, 7, 8), 1.0, (1.0, 2.0, 1.0, 1.0)),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_gaussian_hessian_matches_scipy(shape, sigma, spacing, dtype, workers):
    volume = smooth_volume(shape, dtype)
    before = checksum(volume)
    result = hessian_matrix(volume, sigma=sigma, spacing=spacing, workers=workers)
    expected = gaussian_hessian_reference(volume, np.broadcast_to(sigma, len(shape)), spacing)
    assert result.dtype == (np.float64 if dtype == np.float64 else np.float32)
    assert_close_to_scale(result, expected, 1e-12 if dtype == np.float64 else 2e-6)
    np.testing.assert_array_equal(result, np.swapaxes(result, -1, -2))
    assert checksum(volume) == before


@pytest.mark.parametrize("shape", [(9, 3, 1500), (5, 4100)])
def test_gaussian_hessian_across_inner_chunks(shape):
    """Rows longer than the correlation's inner chunk (2048), with a partial last chunk."""
    volume = smooth_volume(shape, np.float64)
    spacing = (1.0, 0.7, 1.3)[: len(shape)]
    sigma = (1.0, 1.5, 0.8)[: len(shape)]
    expected = gaussian_hessian_reference(volume, sigma, spacing)
    np.testing.assert_allclose(
        hessian_matrix(volume, sigma, spacing), expected, rtol=1e-10, atol=1e-10
    )


def test_hessian_truncate_changes_the_kernel_like_scipy():
    volume = smooth_volume((20, 21), np.float64)
    result = hessian_matrix(volume, sigma=2.0, truncate=8.0)
    expected = ndi.gaussian_filter(volume, 2.0, order=(2, 0), truncate=8.0)
    np.testing.assert_allclose(result[..., 0, 0], expected, rtol=1e-12, atol=1e-12)


def test_slab_boundaries_are_invisible(monkeypatch):
    """Many slabs (each as thick as the halo) give exactly what one slab gives."""
    from napari_voxelwise import _plan, differential

    volume = smooth_volume((31, 12, 13))
    one = hessian_matrix(volume, sigma=1.5, workers=1)
    monkeypatch.setattr(_plan, "TASK_BYTES", 64)
    plan = differential.hessian_plan(volume, sigma=1.5, workers=4)
    assert plan.total > 4
    np.testing.assert_array_equal(plan.compute(), one)


@pytest.mark.parametrize("sigma", [1.0, None])
def test_slab_temporaries_are_freed_slab_by_slab(monkeypatch, sigma):
    """Peak memory stays near the result: no slab's components outlive it.

    With the garbage collector off, anything kept alive by a reference cycle
    accumulates; the six components of every slab would add twice the result.
    """
    import gc
    import tracemalloc

    from napari_voxelwise import _plan, differential

    volume = smooth_volume((64, 48, 40))
    expected = hessian_eigenvalues(volume, sigma=sigma, workers=1)
    monkeypatch.setattr(_plan, "TASK_BYTES", 64)
    plan = differential.hessian_eigenvalues_plan(volume, sigma=sigma, workers=1)
    assert plan.total >= 8
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        result = plan.compute()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        gc.enable()
    np.testing.assert_array_equal(result, expected)
    assert peak < 1.6 * result.nbytes


# ----------------------------------------------------------------------- eigenvalues


def random_symmetric(count, ndim, eigenvalues, seed=0):
    """Symmetric matrices Q diag(eigenvalues) Q^T with random rotations Q."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((count, ndim, ndim)))
    return q @ (np.asarray(eigenvalues)[..., None] * np.swapaxes(q, -1, -2))


def solve(matrices, order="descending"):
    """Our closed-form solver (the kernel) on (M, n, n) matrices."""
    from napari_voxelwise._kernels import eigenvalues as eigen_kernels

    ndim = matrices.shape[-1]
    code = {"descending": 0, "ascending": 1, "abs": 2}[order]
    out = np.empty((ndim, matrices.shape[0]))
    upper = [np.ascontiguousarray(matrices[:, i, j]) for i in range(ndim) for j in range(i, ndim)]
    solver = (
        eigen_kernels.symmetric3_eigenvalues if ndim == 3 else eigen_kernels.symmetric2_eigenvalues
    )
    compiled(lambda: solver(*upper, code, *out))
    return out.T


@pytest.mark.kernels
@pytest.mark.parametrize(
    "eigenvalues",
    [
        (3.0, -1.0, 0.5),
        (1.0, 1.0, 1.0),  # isotropic blob centre
        (2.0, 2.0, -4.0),  # tube: two equal
        (0.0, 0.0, 0.0),  # flat region
        (1e-30, -2e-30, 5e-31),  # tiny
        (1e30, 3e29, -1e30),  # huge
        (1.0, 1.0 + 1e-9, -3.0),  # nearly degenerate
        (5.0, 0.0, 0.0),
    ],
)
def test_closed_form_3x3_agrees_with_eigvalsh_on_degenerate_matrices(eigenvalues):
    matrices = random_symmetric(200, 3, eigenvalues)
    matrices = (matrices + np.swapaxes(matrices, -1, -2)) / 2
    expected = np.linalg.eigvalsh(matrices)[:, ::-1]
    scale = max(np.abs(eigenvalues).max(), np.finfo(float).tiny)
    # a (nearly) double root costs the trigonometric form sqrt(eps) ~ 1e-8 of the scale
    np.testing.assert_allclose(solve(matrices), expected, rtol=0, atol=1e-7 * scale)


@pytest.mark.kernels
@pytest.mark.parametrize("eigenvalues", [(3.0, -1.0), (1.0, 1.0), (0.0, 0.0), (1e30, -1e29)])
def test_closed_form_2x2_agrees_with_eigvalsh(eigenvalues):
    matrices = random_symmetric(200, 2, eigenvalues)
    matrices = (matrices + np.swapaxes(matrices, -1, -2)) / 2
    expected = np.linalg.eigvalsh(matrices)[:, ::-1]
    scale = max(np.abs(eigenvalues).max(), np.finfo(float).tiny)
    np.testing.assert_allclose(solve(matrices), expected, rtol=0, atol=1e-12 * scale)


@pytest.mark.kernels
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("count", [1, 511, 512, 513, 1500])
@pytest.mark.parametrize("order", ["descending", "ascending", "abs"])
def test_interleaved_solvers_agree_with_eigvalsh(ndim, count, order):
    """The blockwise solvers writing (M, ndim) rows: block edges, strided inputs, NaN."""
    rng = np.random.default_rng(count)
    matrices = random_symmetric(count, ndim, rng.standard_normal(ndim) * 5, seed=count)
    matrices = (matrices + np.swapaxes(matrices, -1, -2)) / 2
    expected = np.linalg.eigvalsh(matrices)[:, ::-1]
    matrices[count // 2, 0, 0] = np.nan
    if order == "ascending":
        expected = expected[:, ::-1]
    elif order == "abs":
        expected = np.take_along_axis(expected, np.argsort(np.abs(expected), axis=1), axis=1)
    expected[count // 2] = np.nan
    # every other entry of a twice-longer array: strided inputs
    upper = [np.repeat(matrices[:, i, j], 2)[::2] for i in range(ndim) for j in range(i, ndim)]
    out = np.full((count, ndim), -7.0)
    code = {"descending": 0, "ascending": 1, "abs": 2}[order]
    from napari_voxelwise._kernels import eigenvalues as eigen_kernels

    solver = (
        eigen_kernels.symmetric3_eigenvalues_interleaved
        if ndim == 3
        else eigen_kernels.symmetric2_eigenvalues_interleaved
    )
    compiled(lambda: solver(*upper, code, out))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7 * 5 * 4)


@pytest.mark.kernels
@pytest.mark.parametrize("ndim", [2, 3])
def test_eigenvalue_orders(ndim):
    rng = np.random.default_rng(3)
    matrices = random_symmetric(500, ndim, rng.standard_normal((500, ndim)))
    descending = solve(matrices, "descending")
    assert (np.diff(descending, axis=1) <= 0).all()
    np.testing.assert_array_equal(solve(matrices, "ascending"), descending[:, ::-1])
    by_abs = solve(matrices, "abs")
    assert (np.diff(np.abs(by_abs), axis=1) >= 0).all()
    np.testing.assert_array_equal(np.sort(by_abs, axis=1), np.sort(descending, axis=1))


@pytest.mark.parametrize("shape", [(40, 41), (14, 15, 16)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_hessian_eigenvalues_agree_with_eigvalsh(shape, dtype, workers):
    volume = smooth_volume(shape, dtype, seed=4)
    spacing = (2.0, 1.0, 1.0)[-len(shape) :]
    result = hessian_eigenvalues(volume, sigma=2.0, spacing=spacing, workers=workers)
    hessian = hessian_matrix(volume, sigma=2.0, spacing=spacing).astype(np.float64)
    expected = np.linalg.eigvalsh(hessian)[..., ::-1]
    assert result.shape == (*shape, len(shape))
    assert result.dtype == (np.float64 if dtype == np.float64 else np.float32)
    # 1e-4 relative to each voxel's largest eigenvalue (the contract), checked far tighter
    tolerance = np.abs(expected).max(axis=-1, keepdims=True) * 1e-6 + 1e-30
    assert (np.abs(result - expected) <= tolerance).all()


def test_hessian_eigenvalues_agree_with_scikit_image_on_the_same_hessian():
    volume = smooth_volume((16, 17, 18), np.float64, seed=5)
    hessian = hessian_matrix(volume, sigma=1.5)
    upper = [hessian[..., i, j] for i in range(3) for j in range(i, 3)]
    expected = np.moveaxis(hessian_matrix_eigvals(upper), 0, -1)  # descending
    np.testing.assert_allclose(
        hessian_eigenvalues(volume, sigma=1.5),
        expected,
        rtol=1e-10,
        atol=1e-12 * np.abs(expected).max(),
    )


def test_hessian_eigenvalues_finite_difference_seed():
    """Eigenvalues of the seed's finite-difference Hessian of a (50, 50, 50) volume."""
    volume = np.random.default_rng(6).random((50, 50, 50)).astype(np.float32)
    result = hessian_eigenvalues(volume, sigma=None, order="ascending")
    seed_hessian = np.moveaxis(
        np.array([np.gradient(g) for g in np.gradient(volume.astype(np.float64))]),
        (0, 1),
        (-2, -1),
    )
    expected = np.linalg.eigvalsh(seed_hessian)
    tolerance = np.abs(expected).max(axis=-1, keepdims=True) * 1e-4
    assert (np.abs(result - expected) <= tolerance).all()


def test_constant_volume_has_equal_eigenvalues():
    volume = np.full((8, 9, 10), 7.0)
    np.testing.assert_array_equal(hessian_eigenvalues(volume, sigma=None), 0)
    # scipy's sampled second-derivative kernel does not sum to exactly 0: a constant
    # gives the same small response on every diagonal entry, and no off-diagonal one
    response = ndi.gaussian_filter(volume, 1.0, order=(2, 0, 0))
    np.testing.assert_allclose(
        hessian_eigenvalues(volume, sigma=1.0),
        np.repeat(response[..., None], 3, axis=-1),
        rtol=1e-12,
    )


def test_isotropic_blob_centre_has_three_equal_eigenvalues():
    z, y, x = np.mgrid[-10:11, -10:11, -10:11].astype(float)
    blob = np.exp(-(x**2 + y**2 + z**2) / (2 * 3.0**2))
    centre = hessian_eigenvalues(blob, sigma=1.0)[10, 10, 10]
    assert centre[0] < 0
    np.testing.assert_allclose(centre, centre[0], rtol=1e-6)


def test_bright_tube_has_two_negative_eigenvalues_across_it():
    _, y, x = np.mgrid[:9, -8:9, -8:9].astype(float)
    tube = np.exp(-(x**2 + y**2) / (2 * 2.0**2))  # along axis 0
    l1, l2, l3 = hessian_eigenvalues(tube, sigma=1.5, order="abs")[4, 8, 8]
    assert abs(l1) < 1e-3 * abs(l3)  # not exactly 0: scipy's kernel sums (see above)
    assert l2 < 0 and l3 < 0
    assert l2 == pytest.approx(l3, rel=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
    ("function", "sigma"),
    [
        (hessian_eigenvalues, 1.0),
        (hessian_eigenvalues, None),  # finite differences: inf - inf next to the inf
        (hessian_matrix, 1.0),
        (hessian_matrix, None),
        (gradient_vectors, None),
    ],
)
def test_nan_and_inf_give_nan_only_near_them(bad, function, sigma):
    """NaN near a NaN or inf voxel, finite elsewhere, and no RuntimeWarning on the way."""
    import warnings

    volume = smooth_volume((20, 21, 22), np.float64)
    volume[10, 10, 10] = bad
    volume[10, 10, 12] = bad  # central differences between them: inf - inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = function(volume, sigma=sigma)
    # a neighbour along axis 0; with central differences twice, the voxel two steps away
    near = (12, 10, 10) if sigma is None and function is not gradient_vectors else (11, 10, 10)
    assert np.isnan(result[near]).any()
    assert not np.isinf(result).any()
    assert np.isfinite(result[0, 0, 0]).all()


# ----------------------------------------------------------------------- Frangi


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("black_ridges", [True, False])
@pytest.mark.parametrize("gamma", [None, 0.01])
def test_frangi_matches_scikit_image_on_the_same_hessian(ndim, black_ridges, gamma):
    shape = (40, 42) if ndim == 2 else (16, 18, 20)
    image = smooth_volume(shape, np.float64, seed=7) / 100
    sigma = 2.0
    expected = frangi(
        image, sigmas=[sigma], black_ridges=black_ridges, gamma=gamma, alpha=0.4, beta=0.6
    )
    # scikit-image's own Hessian of the (negated, for bright ridges) image
    hessian = skimage_hessian_matrix(image, sigma, mode="reflect", use_gaussian_derivatives=True)
    eigenvalues = np.moveaxis(hessian_matrix_eigvals(hessian), 0, -1)
    result = frangi_vesselness(
        eigenvalues, alpha=0.4, beta=0.6, gamma=gamma, ridges="dark" if black_ridges else "bright"
    )
    assert expected.max() > 0.01  # the comparison is not between two zero images
    np.testing.assert_allclose(result, expected, rtol=1e-9, atol=1e-12)


def test_frangi_prefers_tubes_to_blobs_and_plates():
    _, y, x = np.mgrid[:21, -10:11, -10:11].astype(float)
    tube = np.exp(-(x**2 + y**2) / (2 * 2.0**2))
    eigenvalues = hessian_eigenvalues(tube, sigma=2.0)
    vesselness = frangi_vesselness(eigenvalues, ridges="bright")
    assert vesselness[10, 10, 10] > 0.5
    assert frangi_vesselness(eigenvalues, ridges="dark")[10, 10, 10] == 0


def test_frangi_nan_voxels_do_not_spoil_the_others():
    eigenvalues = np.array([[-0.1, -3.0, -3.0], [np.nan, 1.0, 1.0], [0.0, -1.0, -2.0]])
    result = frangi_vesselness(eigenvalues)
    assert np.isnan(result[1]) and np.isfinite(result[[0, 2]]).all()


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "error", "names"),
    [
        (lambda: hessian_eigenvalues(np.ones(10)), ValueError, "volume"),
        (lambda: hessian_eigenvalues(np.ones((3, 3, 3, 3))), ValueError, "volume"),
        (lambda: hessian_eigenvalues(np.ones((5, 5)), order="size"), ValueError, "order"),
        (lambda: hessian_matrix(np.ones((5, 5)), sigma=-1), ValueError, "sigma"),
        (lambda: hessian_matrix(np.ones((5, 5)), sigma=(1, 0)), ValueError, "sigma"),
        (lambda: hessian_matrix(np.ones((5, 5)), sigma=(1, 2, 3)), ValueError, "sigma"),
        (lambda: hessian_matrix(np.ones((5, 5)), sigma="big"), TypeError, "sigma"),
        (lambda: hessian_matrix(np.ones((5, 5)), spacing=(1, 2, 3)), ValueError, "spacing"),
        (lambda: hessian_matrix(np.ones((5, 5)), spacing=(1, 0)), ValueError, "spacing"),
        (lambda: hessian_matrix(np.ones((5, 5)), spacing=(1, -2)), ValueError, "spacing"),
        (lambda: hessian_matrix(np.ones((5, 5)), spacing=(1, np.nan)), ValueError, "spacing"),
        (lambda: hessian_matrix(np.ones((5, 5)), truncate=0), ValueError, "truncate"),
        (lambda: hessian_matrix(np.ones((1, 5)), sigma=None), ValueError, "volume"),
        (lambda: gradient_vectors(np.ones((5, 1))), ValueError, "volume"),
        (lambda: gradient_vectors(np.float32(1)), ValueError, "volume"),
        (lambda: gradient_vectors(np.ones((5, 5)), spacing=[1]), ValueError, "spacing"),
        (lambda: gradient_vectors(np.zeros((0, 3))), ValueError, "volume"),
        (lambda: frangi_vesselness(np.ones((5, 4))), ValueError, "eigenvalues"),
        (lambda: frangi_vesselness(np.ones((5, 3)), alpha=0), ValueError, "alpha"),
        (lambda: frangi_vesselness(np.ones((5, 3)), gamma=-1), ValueError, "gamma"),
        (lambda: frangi_vesselness(np.ones((5, 3)), ridges="white"), ValueError, "ridges"),
    ],
)
def test_bad_input_is_refused_naming_the_parameter(call, error, names):
    with pytest.raises(error, match=names):
        call()


def test_a_size_one_axis_is_fine_with_a_gaussian():
    volume = smooth_volume((1, 12, 13), np.float64)
    expected = gaussian_hessian_reference(volume, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    np.testing.assert_allclose(hessian_matrix(volume, 1.0), expected, atol=1e-12)


@pytest.mark.parametrize("dtype, peak", [(np.float64, 1.198e308), (np.float32, 3.0e38)])
def test_finite_differences_near_the_largest_float_do_not_overflow(dtype, peak):
    """A peak near the dtype's maximum: (-x - x) / 2 = -x is finite (numpy gives -inf)."""
    image = np.zeros((3, 3), dtype)
    image[1, 1] = peak
    hessian = hessian_matrix(image, sigma=None)
    # hand-checked: np.gradient twice along an axis gives -x at the peak, 0 across
    np.testing.assert_array_equal(hessian[1, 1], np.diag([-peak, -peak]).astype(dtype))
    eigenvalues = hessian_eigenvalues(image, sigma=None)
    assert np.isfinite(eigenvalues).all()
    np.testing.assert_array_equal(eigenvalues[1, 1], np.array([-peak, -peak], dtype))
    small = np.random.default_rng(0).random((5, 6)).astype(dtype)
    expected = np.array([np.gradient(g) for g in np.gradient(small)])
    np.testing.assert_allclose(
        hessian_matrix(small, sigma=None), np.moveaxis(expected, (0, 1), (-2, -1)), rtol=1e-6
    )
