"""CuPy on a CUDA device against the CPU path, for every public function (skipped without one).

Run them on a machine with a device: ``pytest -m gpu tests/test_gpu.py -n 0``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import napari_voxelwise as vw
from napari_voxelwise import _device, _portable

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _device.gpu_available(), reason="needs CuPy and a CUDA device"),
]

RNG = np.random.default_rng(0)
VOLUME = RNG.random((48, 40, 36)).astype(np.float32)
EIGENVALUES = (RNG.random((40, 36, 3)) - 0.5).astype(np.float32)

CALLS = {
    "voxel_variance": lambda x, d: vw.voxel_variance(x, axis=0, device=d),
    "axis_statistic": lambda x, d: vw.axis_statistic(x, "median", axis=2, device=d),
    "axis_statistic_max": lambda x, d: vw.axis_statistic(x, "max", axis=1, device=d),
    "frame_norms": lambda x, d: vw.frame_norms(x, axis=0, device=d),
    "density_map": lambda x, d: vw.density_map(x, 3, threshold=0.5, edge="pad", device=d),
    "density_sliding": lambda x, d: vw.density_map(x, 4, "sliding", 0.5, device=d),
    "apply_mask": lambda x, d: vw.apply_mask(x, VOLUME[0] > 0.5, device=d),
    "mask_filter": lambda x, d: vw.mask_filter(x, VOLUME[..., 0] > 0.5, device=d),
    "gradient_vectors": lambda x, d: vw.gradient_vectors(x, device=d),
    "gradient_magnitude": lambda x, d: vw.gradient_magnitude(x, sigma=2.0, device=d),
    "hessian_matrix": lambda x, d: vw.hessian_matrix(x, 1.5, (1.0, 0.7, 0.7), device=d),
    "hessian_eigenvalues": lambda x, d: vw.hessian_eigenvalues(x, 2.0, device=d),
    "hessian_eigenvalues_abs": lambda x, d: vw.hessian_eigenvalues(x, 1.0, order="abs", device=d),
    "vesselness": lambda x, d: vw.vesselness(x, [1, 2, 3], return_scale=True, device=d),
    "vesselness_sato": lambda x, d: vw.vesselness(x, [1, 2], method="sato", device=d),
}


def assert_close(actual, expected):
    """1e-4 of the largest magnitude (eigenvalues near 0 have no relative precision)."""
    for got, want in zip(
        actual if isinstance(actual, tuple) else (actual,),
        expected if isinstance(expected, tuple) else (expected,),
        strict=True,
    ):
        got = _device.to_host(got)
        assert got.shape == want.shape and got.dtype == want.dtype
        scale = float(np.nanmax(np.abs(want))) or 1.0
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("name", CALLS)
def test_numpy_in_numpy_out_on_the_device(name):
    expected = CALLS[name](VOLUME, "cpu")
    actual = CALLS[name](VOLUME, "gpu")
    assert all(
        isinstance(a, np.ndarray) for a in (actual if isinstance(actual, tuple) else [actual])
    )
    assert_close(actual, expected)


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("fused", [True, False])
def test_cupy_in_cupy_out(name, fused, monkeypatch):
    import cupy

    monkeypatch.setattr(_portable, "FUSED", fused)
    expected = CALLS[name](VOLUME, "cpu")
    actual = CALLS[name](cupy.asarray(VOLUME), "auto")
    for part in actual if isinstance(actual, tuple) else (actual,):
        assert isinstance(part, cupy.ndarray) or name == "mask_filter"
    assert_close(actual, expected)


def test_frangi_vesselness_on_the_device():
    import cupy

    expected = vw.frangi_vesselness(EIGENVALUES, device="cpu")
    assert_close(vw.frangi_vesselness(EIGENVALUES, device="gpu"), expected)
    assert_close(vw.frangi_vesselness(cupy.asarray(EIGENVALUES)), expected)


def test_fused_eigenvalues_equal_the_unfused_portable_path(monkeypatch):
    import cupy

    volume = cupy.asarray(VOLUME)
    fused = vw.hessian_eigenvalues(volume, 1.0, order="abs")
    monkeypatch.setattr(_portable, "FUSED", False)
    unfused = vw.hessian_eigenvalues(volume, 1.0, order="abs")
    np.testing.assert_allclose(fused.get(), unfused.get(), rtol=1e-6, atol=1e-6)


def test_pieces_on_a_small_device(monkeypatch):
    """Pieces sized for 8 MiB of free memory give the CPU's result."""
    monkeypatch.setattr(_device, "free_bytes", lambda: 8 * 2**20)
    expected = vw.hessian_eigenvalues(VOLUME, 2.0, device="cpu")
    assert_close(vw.hessian_eigenvalues(VOLUME, 2.0, device="gpu"), expected)


def test_dask_of_cupy_chunks():
    import cupy
    import dask.array as da

    lazy = da.from_array(VOLUME, chunks=(16, 40, 36)).map_blocks(cupy.asarray)
    expected = vw.hessian_eigenvalues(VOLUME, 1.0, device="cpu")
    result = vw.hessian_eigenvalues(lazy, 1.0).compute()
    assert isinstance(result, cupy.ndarray)
    assert_close(result, expected)
    moved = vw.hessian_eigenvalues(da.from_array(VOLUME, chunks=16), 1.0, device="gpu")
    assert_close(moved.compute(), expected)


def test_timing_smoke():
    """A 128^3 Hessian eigenvalue call on the device, warm, takes well under a second."""
    import cupy

    volume = cupy.asarray(np.random.default_rng(1).random((128, 128, 128), np.float32))
    vw.hessian_eigenvalues(volume, 2.0)  # compiles the kernels
    cupy.cuda.Device().synchronize()
    began = time.perf_counter()
    vw.hessian_eigenvalues(volume, 2.0)
    cupy.cuda.Device().synchronize()
    assert time.perf_counter() - began < 1.0
