"""Hessian eigenvalues of a 512^3 float32 volume at sigma 2: GPU against the CPU paths.

Rows: this package on the GPU (NumPy in, NumPy out: transfers included, and timed
apart), on CuPy arrays already on the device, this package on the CPU (compiled
kernels), scikit-image (``hessian_matrix`` + ``hessian_matrix_eigvals``), and cuCIM
(``cucim.skimage.feature``) when it is installed. Needs CuPy and a CUDA device::

    python tests/benchmarks/bench_gpu.py [--size 512] [--repeat 3] [--no-skimage]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def timed(function, repeat: int, synchronize=lambda: None) -> float:
    """Best wall time of `repeat` calls (after one warm-up call)."""
    function()
    synchronize()
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        synchronize()
        best = min(best, time.perf_counter() - began)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--sigma", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-skimage", action="store_true", help="skip scikit-image (slow)")
    options = parser.parse_args(argv)

    import napari_voxelwise as vw
    from napari_voxelwise import _device

    if not _device.gpu_available():
        print("bench_gpu: no GPU here (needs CuPy and a CUDA device: " + _device.EXTRA + ")")
        return 0
    import cupy

    sync = cupy.cuda.Device().synchronize
    size, sigma = options.size, options.sigma
    volume = np.random.default_rng(0).random((size,) * 3, np.float32)
    print(f"Hessian eigenvalues, {size}^3 float32, sigma {sigma}, best of {options.repeat}")
    print(f"device: {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}")
    rows = []

    on_device = cupy.asarray(volume)
    upload = timed(lambda: cupy.asarray(volume), options.repeat, sync)
    result = vw.hessian_eigenvalues(on_device, sigma)
    download = timed(result.get, options.repeat, sync)
    del result
    rows.append(("transfer to the device", upload))
    rows.append(("transfer of the result back", download))
    rows.append(
        (
            "GPU, CuPy in/out",
            timed(lambda: vw.hessian_eigenvalues(on_device, sigma), options.repeat, sync),
        )
    )
    rows.append(
        (
            "GPU, NumPy in/out (pieces, transfers)",
            timed(
                lambda: vw.hessian_eigenvalues(volume, sigma, device="gpu"), options.repeat, sync
            ),
        )
    )
    on_device = None  # frees the device copy before the CPU rows
    vw.set_compile_mode("wait")
    rows.append(
        (
            "CPU, this package",
            timed(lambda: vw.hessian_eigenvalues(volume, sigma, device="cpu"), options.repeat),
        )
    )
    if not options.no_skimage:
        from skimage.feature import hessian_matrix, hessian_matrix_eigvals

        def skimage_eigenvalues():
            return hessian_matrix_eigvals(
                hessian_matrix(volume, sigma, use_gaussian_derivatives=False)
            )

        rows.append(("scikit-image", timed(skimage_eigenvalues, 1)))
    try:
        from cucim.skimage.feature import hessian_matrix as cu_hessian
        from cucim.skimage.feature import hessian_matrix_eigvals as cu_eigvals
    except ImportError:
        print("cuCIM not installed: its row is left out")
    else:
        gpu_volume = cupy.asarray(volume)
        rows.append(
            (
                "cuCIM, CuPy in/out",
                timed(
                    lambda: cu_eigvals(
                        cu_hessian(gpu_volume, sigma, use_gaussian_derivatives=False)
                    ),
                    options.repeat,
                    sync,
                ),
            )
        )
    for name, seconds in rows:
        print(f"{name:40s} {seconds:8.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
