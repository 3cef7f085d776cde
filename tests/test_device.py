"""The ``device=`` keyword, piece sizing, and the GPU driver run with NumPy as the device.

CuPy is not needed: ``_device.stand_in(numpy, free)`` makes NumPy play the device's
array module, so ``device="gpu"`` runs the exact piecewise path (split, halo, the
portable computation, copy back) on the CPU, with as little "free memory" as a test
wants. Results are compared with the portable path on the whole array.
"""

from __future__ import annotations

import numpy as np
import pytest

import napari_voxelwise as vw
from napari_voxelwise import _device, _dispatch, _gpu
from napari_voxelwise.differential import slab_rows

RNG = np.random.default_rng(0)
VOLUME = RNG.random((40, 21, 17)).astype(np.float32)
EIGENVALUES = (RNG.random((30, 12, 3)) - 0.5).astype(np.float32)

#: every public function, called on small inputs with a given device
CALLS = {
    "voxel_variance": lambda d: vw.voxel_variance(VOLUME, axis=0, device=d),
    "axis_statistic": lambda d: vw.axis_statistic(VOLUME, "median", axis=2, device=d),
    "axis_statistic_std": lambda d: vw.axis_statistic(VOLUME, "std", axis=1, ddof=1, device=d),
    "frame_norms": lambda d: vw.frame_norms(VOLUME, axis=0, device=d),
    "frame_norms_inner": lambda d: vw.frame_norms(VOLUME, axis=1, ord=3, device=d),
    "density_map": lambda d: vw.density_map(VOLUME, 3, threshold=0.5, edge="pad", device=d),
    "density_trim": lambda d: vw.density_map(VOLUME, (4, 3), threshold=0.5, device=d),
    "density_sliding": lambda d: vw.density_map(
        VOLUME, (4, 2, 2), mode="sliding", threshold=0.5, device=d
    ),
    "apply_mask": lambda d: vw.apply_mask(VOLUME, VOLUME[0] > 0.5, device=d),
    "apply_mask_same_shape": lambda d: vw.apply_mask(VOLUME, VOLUME > 0.5, np.nan, device=d),
    "mask_filter": lambda d: vw.mask_filter(VOLUME, VOLUME[..., 0] > 0.5, device=d),
    "gradient_vectors": lambda d: vw.gradient_vectors(VOLUME, device=d),
    "gradient_magnitude": lambda d: vw.gradient_magnitude(VOLUME, sigma=2.0, device=d),
    "hessian_matrix": lambda d: vw.hessian_matrix(VOLUME, sigma=1.0, device=d),
    "hessian_matrix_fd": lambda d: vw.hessian_matrix(VOLUME, sigma=None, device=d),
    "hessian_eigenvalues": lambda d: vw.hessian_eigenvalues(
        VOLUME, 1.5, (1.0, 0.8, 1.2), device=d
    ),
    "hessian_eigenvalues_fd": lambda d: vw.hessian_eigenvalues(VOLUME, None, device=d),
    "frangi_vesselness": lambda d: vw.frangi_vesselness(EIGENVALUES, device=d),
    "frangi_gamma": lambda d: vw.frangi_vesselness(EIGENVALUES, gamma=0.3, device=d),
    "vesselness": lambda d: vw.vesselness(VOLUME, [1, 2], return_scale=True, device=d),
    "vesselness_sato": lambda d: vw.vesselness(VOLUME, [1.5], method="sato", device=d),
    "vesselness_frames": lambda d: vw.vesselness(VOLUME.reshape(4, 10, 21, 17), 1.0, device=d),
}
PUBLIC = [
    "voxel_variance",
    "axis_statistic",
    "frame_norms",
    "density_map",
    "mask_filter",
    "apply_mask",
    "gradient_vectors",
    "gradient_magnitude",
    "hessian_matrix",
    "hessian_eigenvalues",
    "frangi_vesselness",
    "vesselness",
]


def as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def assert_same(actual, expected, rtol=1e-5):
    for got, want in zip(as_tuple(actual), as_tuple(expected), strict=True):
        assert isinstance(got, np.ndarray)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-1)


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    """This machine's answer whatever is installed: no device (tests that need one say so)."""
    monkeypatch.setattr(_device, "_available", False)


# --------------------------------------------------------------------------- the keyword


def test_every_public_function_takes_device():
    import inspect

    for name in PUBLIC:
        parameter = inspect.signature(getattr(vw, name)).parameters["device"]
        assert parameter.default == "auto", name
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert "device :" in getattr(vw, name).__doc__, name
    assert set(PUBLIC) <= set(vw.__all__)


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("device", ["GPU", "cuda", "", None, 0])
def test_a_bad_device_is_a_value_error_naming_device(name, device):
    with pytest.raises(ValueError, match=r"^device must be one of"):
        CALLS[name](device)


@pytest.mark.parametrize("name", CALLS)
def test_gpu_without_cupy_or_device_is_a_clear_error(name):
    with pytest.raises(
        _device.GPUUnavailableError, match=r"device='gpu'.*napari-voxelwise\[gpu\]"
    ):
        CALLS[name]("gpu")


@pytest.mark.parametrize("name", CALLS)
def test_cpu_and_auto_give_todays_results_exactly(name):
    default = CALLS[name]("auto")
    for device in ("cpu", "auto"):
        result = CALLS[name](device)
        for got, want in zip(as_tuple(result), as_tuple(default), strict=True):
            np.testing.assert_array_equal(got, want)
    # and the call without the keyword
    call = {
        "voxel_variance": lambda: vw.voxel_variance(VOLUME, axis=0),
        "hessian_eigenvalues": lambda: vw.hessian_eigenvalues(VOLUME, 1.5, (1.0, 0.8, 1.2)),
        "frangi_vesselness": lambda: vw.frangi_vesselness(EIGENVALUES),
    }.get(name)
    if call is not None:
        np.testing.assert_array_equal(call(), default)


def test_resolve(monkeypatch):
    small, large = np.zeros(4), np.broadcast_to(np.zeros(()), (2**22,))
    with _device.stand_in(np, 2**30):  # no threshold measured yet: NumPy input stays here
        assert _device.resolve("auto", large) == "cpu"
    monkeypatch.setattr(_device, "AUTO_MIN_VOXELS", 2**22)
    assert _device.resolve("cpu", large) == "cpu"
    assert _device.resolve("auto", large) == "cpu"  # no device here
    with _device.stand_in(np, 2**30):
        assert _device.gpu_available()
        assert _device.resolve("auto", small) == "cpu"
        assert _device.resolve("auto", large) == "gpu"
        assert _device.resolve("gpu", small) == "gpu"
        assert _device.resolve("cpu", large) == "cpu"


def test_a_cupy_array_goes_to_the_device_and_refuses_cpu():
    device_array = type("ndarray", (), {"__module__": "cupy._core.core", "size": 1})()
    assert _device.is_device_array(device_array)
    assert _device.resolve("auto", device_array) == "gpu"
    assert _device.resolve("gpu", device_array) == "gpu"
    with pytest.raises(ValueError, match=r"^device='cpu' cannot take a CuPy array"):
        _device.resolve("cpu", device_array)


def test_gpu_available_is_false_without_cupy_and_cached(monkeypatch):
    import sys

    monkeypatch.setattr(_device, "_available", None)
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    assert _device.gpu_available() is False
    monkeypatch.delitem(sys.modules, "cupy")
    assert _device._available is False  # cached: not asked again


def test_the_error_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(_device.GPUUnavailableError, match="CuPy is not installed"):
        _device.resolve("gpu", np.zeros(3))


def test_importing_the_package_imports_no_cupy():
    import subprocess
    import sys

    code = (
        "import sys, numpy, napari_voxelwise as vw; "
        "vw.voxel_variance(numpy.ones((3, 4)), device='auto'); "
        "print('cupy' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert output == "False"  # "auto" asks for CuPy only when the input is large


# --------------------------------------------------------------------------- piece sizing


@pytest.mark.parametrize("shape", [(100, 10, 10), (7, 300), (1000,)])
@pytest.mark.parametrize("halo", [0, 3, 9])
@pytest.mark.parametrize("free", [50_000, 400_000, 10**9])
def test_pieces_fit_the_free_memory(shape, halo, free):
    itemsize, factor = 4, 3.0
    row = np.prod(shape[1:], dtype=int) * itemsize * factor
    try:
        rows = _device.piece_rows(shape, itemsize, factor, free, halo)
    except MemoryError as error:
        assert (1 + 2 * halo) * row > free
        assert "device" in str(error)
        return
    assert 1 <= rows <= shape[0]
    assert (rows + 2 * halo) * row <= free
    if rows < shape[0]:  # as many as fit
        assert (rows + 1 + 2 * halo) * row > free


@pytest.mark.parametrize("gaussian", [True, False])
@pytest.mark.parametrize("halo", [0, 1, 2, 6, 25])
def test_slab_rows_cover_the_halo(gaussian, halo):
    from napari_voxelwise.differential import reflect_index

    length = 20
    volume = np.arange(length)
    for start, stop in [(0, 5), (5, 12), (12, 20), (0, 20)]:
        rows, offset = slab_rows(volume, start, stop, halo, gaussian)
        np.testing.assert_array_equal(rows[offset : offset + stop - start], volume[start:stop])
        if gaussian:  # the reflected context, whole
            assert offset == halo and len(rows) == stop - start + 2 * halo
            expected = volume[reflect_index(start - halo, stop + halo, length)]
            np.testing.assert_array_equal(rows, expected)
        else:  # as far as the volume goes
            assert offset == start - max(start - halo, 0)
            assert len(rows) - offset - (stop - start) == min(stop + halo, length) - stop


# --------------------------------------------------------------------------- the driver


#: (call, free bytes of the stand-in device): small enough to give several pieces
PIECEWISE = {
    "voxel_variance": 200_000,
    "axis_statistic": 200_000,
    "axis_statistic_std": 200_000,
    "frame_norms": 100_000,
    "frame_norms_inner": 100_000,
    "density_map": 200_000,
    "density_trim": 200_000,
    "density_sliding": 300_000,
    "apply_mask": 60_000,
    "apply_mask_same_shape": 60_000,
    "mask_filter": 60_000,
    "gradient_vectors": 200_000,
    "gradient_magnitude": 400_000,
    "hessian_matrix": 1_000_000,
    "hessian_matrix_fd": 1_000_000,
    "hessian_eigenvalues": 1_500_000,
    "hessian_eigenvalues_fd": 1_500_000,
    "frangi_vesselness": 40_000,
    "frangi_gamma": 40_000,
    "vesselness": 2_000_000,
    "vesselness_sato": 2_000_000,
    "vesselness_frames": 1_200_000,
}


@pytest.mark.parametrize("name", PIECEWISE)
def test_the_piecewise_device_path_equals_the_portable_path(name, monkeypatch):
    """Split, halo, compute on the portable path, copy back: as the whole array on the CPU."""
    with _dispatch.portable_path():
        expected = CALLS[name]("cpu")
    pieces = []
    real = _gpu._rows_plan

    def counting(length, rows, *arguments):
        pieces.append(-(-length // rows))
        return real(length, rows, *arguments)

    monkeypatch.setattr(_gpu, "_rows_plan", counting)
    with _device.stand_in(np, PIECEWISE[name]):
        actual = CALLS[name]("gpu")
    assert_same(actual, expected)
    if name.startswith("frame_norms"):  # its own loop over pieces
        return
    assert pieces and max(pieces) > 1, "the stand-in device should need several pieces"


@pytest.mark.parametrize("name", ["hessian_eigenvalues", "voxel_variance", "density_map"])
def test_one_piece_when_everything_fits(name, monkeypatch):
    with _dispatch.portable_path():
        expected = CALLS[name]("cpu")
    with _device.stand_in(np, 2**40):
        actual = CALLS[name]("gpu")
    assert_same(actual, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64, np.bool_])
def test_piecewise_dtypes(dtype):
    volume = (VOLUME * 200).astype(dtype)
    with _dispatch.portable_path():
        expected = [
            vw.hessian_eigenvalues(volume, 1.0, device="cpu"),
            vw.axis_statistic(volume, "max", axis=0, device="cpu"),
            vw.density_map(volume, 2, threshold=0.5, device="cpu"),
        ]
    with _device.stand_in(np, 1_000_000):
        actual = [
            vw.hessian_eigenvalues(volume, 1.0, device="gpu"),
            vw.axis_statistic(volume, "max", axis=0, device="gpu"),
            vw.density_map(volume, 2, threshold=0.5, device="gpu"),
        ]
    for got, want in zip(actual, expected, strict=True):
        assert_same(got, want, rtol=1e-12 if dtype == np.float64 else 1e-5)


def test_arguments_are_checked_before_anything_moves():
    with _device.stand_in(np, 10**9):
        with pytest.raises(ValueError, match=r"^axis=5"):
            vw.voxel_variance(VOLUME, axis=5, device="gpu")
        with pytest.raises(ValueError, match=r"^order must be one of"):
            vw.hessian_eigenvalues(VOLUME, 1.0, order="up", device="gpu")
        with pytest.raises(ValueError, match=r"^sigmas must all be > 0"):
            vw.vesselness(VOLUME, [0], device="gpu")
        with pytest.raises(ValueError, match=r"^mask must have shape"):
            vw.mask_filter(VOLUME, VOLUME[0] > 0, device="gpu")


def test_a_device_too_small_for_one_row_is_a_memory_error():
    with _device.stand_in(np, 1000), pytest.raises(MemoryError, match=r"^device: "):
        vw.hessian_eigenvalues(VOLUME, 1.0, device="gpu")


def test_the_gpu_plans_report_progress_per_piece():
    with _device.stand_in(np, 1_500_000):
        plan = _gpu.hessian_eigenvalues_plan(VOLUME, 1.0)
        steps = plan.steps()
        count = 0
        try:
            while True:
                next(steps)
                count += 1
        except StopIteration as stop:
            result = stop.value
    assert count == plan.total > 1
    assert result.shape == (*VOLUME.shape, 3)


# --------------------------------------------------------------------------- Dask


@pytest.mark.parametrize(
    "call",
    [
        lambda x, d: vw.hessian_eigenvalues(x, 1.0, device=d),
        lambda x, d: vw.voxel_variance(x, axis=0, device=d),
        lambda x, d: vw.vesselness(x, [1.0], return_scale=True, device=d),
        lambda x, d: vw.mask_filter(x, VOLUME[..., 0] > 0.5, device=d)[0],
    ],
)
def test_dask_arrays_take_the_device_keyword(call):
    da = pytest.importorskip("dask.array")
    lazy = da.from_array(VOLUME, chunks=(15, 21, 17))
    expected = [np.asarray(part) for part in as_tuple(call(VOLUME, "cpu"))]
    with pytest.raises(ValueError, match=r"^device must be one of"):
        call(lazy, "tpu")
    with pytest.raises(_device.GPUUnavailableError):
        call(lazy, "gpu")
    with _device.stand_in(np, 10**9):  # NumPy chunks "moved to the device" and back
        moved = as_tuple(call(lazy, "gpu"))
        for got, want in zip(moved, expected, strict=True):
            np.testing.assert_allclose(got.compute(), want, rtol=1e-5, atol=1e-6)
    for got, want in zip(as_tuple(call(lazy, "cpu")), expected, strict=True):
        np.testing.assert_allclose(got.compute(), want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- packaging


def test_the_gpu_extra_is_cupy_and_testing_does_not_need_it():
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text()
    extras = dict(re.findall(r"(?m)^(\w+) = \[(.*?)\]\n", text, flags=re.S))
    assert '"cupy-cuda12x' in extras["gpu"]
    assert "cupy" not in extras["testing"] and "gpu" not in extras["testing"]


def test_the_gpu_benchmark_says_so_without_a_device():
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(__file__).parent / "benchmarks" / "bench_gpu.py"
    code = (
        "import runpy, sys, napari_voxelwise._device as d; d._available = False; "
        f"sys.argv = ['bench_gpu']; runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "no GPU here" in done.stdout
