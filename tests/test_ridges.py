"""Multi-scale vesselness against scikit-image, Dask, the portable path and synthetic tubes."""

from __future__ import annotations

from itertools import combinations_with_replacement, pairwise

import dask
import dask.array as da
import numpy as np
import pytest
import skimage.filters.ridges as skimage_ridges
from scipy import ndimage as ndi
from skimage.filters import frangi, sato

import napari_voxelwise as vw
from napari_voxelwise._dispatch import portable_path
from napari_voxelwise.ridges import scale_range

SHAPES = [(40, 44), (20, 24, 28)]


def smooth_image(shape, seed=0, dtype=np.float32):
    data = ndi.gaussian_filter(np.random.default_rng(seed).random(shape), 1.5)
    return (data * 10).astype(dtype)


def scipy_hessian(image, sigma, mode="reflect", cval=0, use_gaussian_derivatives=True):
    """scikit-image's `hessian_matrix` rebuilt on scipy's exact Gaussian second derivatives
    (scikit-image chains two first derivatives of sigma / sqrt(2) instead)."""
    components = []
    for a, b in combinations_with_replacement(range(image.ndim), 2):
        order = [0] * image.ndim
        order[a] += 1
        order[b] += 1
        components.append(
            ndi.gaussian_filter(np.asarray(image, np.float64), sigma, order=order, mode=mode)
        )
    return components


@pytest.fixture
def same_hessian(monkeypatch):
    """scikit-image's frangi and sato on the Hessian definition this package uses."""
    monkeypatch.setattr(skimage_ridges, "hessian_matrix", scipy_hessian)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ridges", ["bright", "dark"])
def test_sato_equals_scikit_image(same_hessian, shape, ridges):
    image = smooth_image(shape)
    expected = sato(image.astype(np.float64), [1, 2, 3], black_ridges=ridges == "dark")
    result = vw.vesselness(image, [1, 2, 3], method="sato", ridges=ridges)
    assert result.dtype == np.float32
    # float32 Hessians here, float64 in scikit-image
    np.testing.assert_allclose(result, expected, rtol=0, atol=3e-5 * expected.max())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ridges", ["bright", "dark"])
def test_frangi_relation_to_scikit_image(same_hessian, shape, ridges):
    """One sigma, gamma=None: equal. Several: the maximum of scikit-image's single-scale
    frangi with gamma / sigma**2 (its Hessian is not scale-normalised)."""
    image = smooth_image(shape).astype(np.float64)
    dark = ridges == "dark"
    one = vw.vesselness(image, 2.0, ridges=ridges)
    close(one, frangi(image, [2.0], black_ridges=dark))
    sigmas, gamma = (1.0, 2.0, 3.0), 0.3
    expected = np.maximum.reduce(
        [frangi(image, [s], gamma=gamma / s**2, black_ridges=dark) for s in sigmas]
    )
    result = vw.vesselness(image, sigmas, ridges=ridges, gamma=gamma)
    assert result.dtype == np.float64
    close(result, expected)
    assert result.max() > 0.1  # a meaningful comparison, not of zeros


def close(result, expected):
    """Equal to 1e-6 but at a few ill-conditioned voxels (0.1%), where the second
    eigenvalue is near Frangi's floor of 1e-10 and the two solvers' last bits decide."""
    assert np.mean(np.abs(result - expected) <= 1e-6) > 0.999


def test_frangi_automatic_gamma_is_half_the_largest_normalised_norm(same_hessian):
    image = smooth_image((20, 24, 28)).astype(np.float64)
    sigmas = (1.0, 2.5)
    largest = max(
        s**2
        * np.sqrt(
            sum(w * c**2 for w, c in zip((1, 2, 2, 1, 2, 1), scipy_hessian(image, s), strict=True))
        ).max()
        for s in sigmas
    )
    np.testing.assert_allclose(
        vw.vesselness(image, sigmas), vw.vesselness(image, sigmas, gamma=largest / 2), atol=1e-9
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", ["frangi", "sato"])
def test_kernels_and_portable_path_agree(shape, method):
    image = smooth_image(shape)
    response, scale = vw.vesselness(image, [1, 2, 4], method=method, return_scale=True)
    with portable_path():
        response_p, scale_p = vw.vesselness(image, [1, 2, 4], method=method, return_scale=True)
    difference = np.abs(response - response_p)
    # float32 Hessians from two filter implementations: Frangi's ratios amplify their last
    # bits at a few ill-conditioned voxels
    assert np.quantile(difference, 0.99) <= 1e-4 * response.max()
    assert difference.max() <= 0.02 * response.max()
    assert np.mean(scale == scale_p) > 0.999  # ties between scales may fall either way


@pytest.mark.parametrize("shape, chunks", [((24, 30, 34), (10, 16, 20)), ((50, 60), (20, 25))])
@pytest.mark.parametrize("method", ["frangi", "sato"])
def test_dask_equals_numpy_without_seams(shape, chunks, method):
    """gamma=None is one value for the whole image: Dask gives the NumPy result."""
    image = smooth_image(shape)
    response, scale = vw.vesselness(image, [1, 2, 3], method=method, return_scale=True)
    lazy = vw.vesselness(
        da.from_array(image, chunks=chunks), [1, 2, 3], method=method, return_scale=True
    )
    assert all(isinstance(part, da.Array) for part in lazy)
    lazy_response, lazy_scale = dask.compute(*lazy)
    np.testing.assert_allclose(lazy_response, response, rtol=1e-4, atol=1e-4 * response.max())
    assert np.mean(lazy_scale == scale) > 0.999


def test_four_d_is_frame_by_frame_with_one_gamma():
    stack = np.stack([smooth_image((16, 20, 24), seed) for seed in (1, 2, 3)])
    result = vw.vesselness(stack, [1, 2])
    for index, frame in enumerate(stack):
        # each frame as its own 3D image with the gamma of the whole stack
        frames_gamma = None
        for gamma in (1e-3, 1e3):
            assert not np.allclose(result[index], vw.vesselness(frame, [1, 2], gamma=gamma))
        frames_gamma = _automatic_gamma(stack, [1, 2])
        np.testing.assert_allclose(
            result[index], vw.vesselness(frame, [1, 2], gamma=frames_gamma), atol=1e-6
        )
    lazy = vw.vesselness(da.from_array(stack, chunks=(1, 8, 20, 12)), [1, 2]).compute()
    np.testing.assert_allclose(lazy, result, atol=1e-5)


def _automatic_gamma(stack, sigmas):
    from napari_voxelwise.ridges import normalised_norms

    return max(normalised_norms(frame, sigmas, (1.0,) * 3).max() for frame in stack) / 2


def tube_image(radius: float, spacing=(1.0, 1.0, 1.0), extent=(24.0, 40.0, 40.0)):
    """A bright solid tube of `radius` along x, centred in (z, y), sampled at `spacing`
    (a smooth edge of 0.5 units, so every sampling sees the same object)."""
    axes = [
        np.arange(0, e, s) - (e / 2 if i < 2 else 0)
        for i, (e, s) in enumerate(zip(extent, spacing, strict=True))
    ]
    z, y, _ = np.meshgrid(*axes, indexing="ij")
    distance = np.hypot(z, y)
    return (1 / (1 + np.exp((distance - radius) / 0.5))).astype(np.float32)


def centre_scale(image, sigmas, spacing=None, method="frangi"):
    _, scale = vw.vesselness(image, sigmas, spacing=spacing, method=method, return_scale=True)
    z, y, x = (n // 2 for n in image.shape)
    return float(scale[z, y, x])


@pytest.mark.parametrize("method", ["frangi", "sato"])
def test_best_scale_grows_with_tube_radius(method):
    sigmas = scale_range(0.5, 8, 16, "log")
    scales = [
        centre_scale(tube_image(radius, extent=(40.0, 40.0, 8.0)), sigmas, method=method)
        for radius in (1, 2, 3, 4, 5, 6)
    ]
    assert all(b > a for a, b in pairwise(scales)), scales
    assert 0.3 < scales[0] < 1.5 and 2.5 < scales[-1] < 6.5, scales


def gaussian_tube(width: float, spacing=(1.0, 1.0, 1.0), extent=(40.0, 40.0, 8.0)):
    """A tube along x with a Gaussian profile of `width` in (z, y), sampled at `spacing`:
    smooth enough that a coarse z sampling still holds the same object."""
    axes = [np.arange(0, e, s) - e / 2 for e, s in zip(extent, spacing, strict=True)]
    z, y, _ = np.meshgrid(*axes, indexing="ij")
    return np.exp(-(z * z + y * y) / (2 * width * width)).astype(np.float32)


def test_anisotropic_spacing_gives_the_same_physical_best_scale():
    sigmas = scale_range(1, 8, 15, "linear")
    for width in (1.5, 2.5, 4.0):
        isotropic = centre_scale(gaussian_tube(width), sigmas)
        coarse_z = gaussian_tube(width, spacing=(2.0, 1.0, 1.0))
        assert centre_scale(coarse_z, sigmas, spacing=(2.0, 1.0, 1.0)) == isotropic
        # Frangi's normalised response of a Gaussian tube peaks at its width
        assert isotropic == width
    # the spacing is used: ignoring it gives another response
    coarse_z = gaussian_tube(2.5, spacing=(2.0, 1.0, 1.0))
    assert not np.allclose(
        vw.vesselness(coarse_z, [2, 3], spacing=(2.0, 1.0, 1.0)), vw.vesselness(coarse_z, [2, 3])
    )


def test_scale_map_is_zero_where_the_response_is_zero_and_nan_propagates():
    image = np.zeros((12, 14, 16), np.float32)
    response, scale = vw.vesselness(image, [1, 2], return_scale=True)
    assert not response.any() and not scale.any()
    image = smooth_image((24, 24, 24))
    image[20, 20, 20] = np.nan
    before = image.copy()
    response, scale = vw.vesselness(image, [1, 2], return_scale=True)
    np.testing.assert_array_equal(image, before)  # the input is not modified
    assert np.isnan(response[20, 20, 20]) and np.isnan(scale[20, 20, 20])
    assert np.isfinite(response[0, 0, 0])
    zero = (response == 0) & np.isfinite(response)
    assert (scale[zero] == 0).all()
    assert set(np.unique(scale[response > 0])) <= {1.0, 2.0}


def test_integer_input_gives_float32():
    image = (smooth_image((16, 18, 20)) * 100).astype(np.uint16)
    result = vw.vesselness(image, [1, 2])
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, vw.vesselness(image.astype(np.float32), [1, 2]), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"sigmas": []}, "sigmas"),
        ({"sigmas": [1, 0]}, "sigmas"),
        ({"sigmas": [1, -2]}, "sigmas"),
        ({"sigmas": [np.nan]}, "sigmas"),
        ({"sigmas": [1], "method": "hessian"}, "method"),
        ({"sigmas": [1], "ridges": "up"}, "ridges"),
        ({"sigmas": [1], "spacing": (1, 1)}, "spacing"),
        ({"sigmas": [1], "alpha": 0}, "alpha"),
        ({"sigmas": [1], "gamma": -1}, "gamma"),
        ({"sigmas": [1000]}, "sigmas"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, name):
    image = np.zeros((8, 9, 10), np.float32)
    with pytest.raises(ValueError, match=name):
        vw.vesselness(image, **kwargs)
    with pytest.raises(ValueError, match=name):  # the Dask twin checks before building
        vw.vesselness(da.from_array(image), **kwargs)


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4, 5, 6)])
def test_bad_dimensions(shape):
    with pytest.raises(ValueError, match="image"):
        vw.vesselness(np.zeros(shape, np.float32), [1])


def test_scale_range():
    assert scale_range(1, 8, 4, "log") == [1.0, 2.0, 4.0, 8.0]
    assert scale_range(1, 8, 3) == [1.0, 4.5, 8.0]
    assert scale_range(2, 2, 1) == [2.0]
    with pytest.raises(ValueError, match="start"):
        scale_range(0, 8, 3)
