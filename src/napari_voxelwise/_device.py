"""Where a computation runs: this machine's CPU, or a CUDA GPU through CuPy.

Every public function takes ``device="auto"``, ``"cpu"`` or ``"gpu"``:

``"cpu"``
    The compiled kernels or the portable NumPy path, as without a GPU.
``"gpu"``
    The portable path (:mod:`napari_voxelwise._portable`) on CuPy and
    ``cupyx.scipy.ndimage``. A NumPy input is moved to the device in pieces
    that fit its free memory and the result comes back as NumPy; a CuPy input
    is computed where it is and gives a CuPy result. Needs CuPy and a CUDA
    device (``pip install "napari-voxelwise[gpu]"``).
``"auto"`` (default)
    The GPU for a CuPy input; for a NumPy input, the GPU only from
    :data:`AUTO_MIN_VOXELS` elements on, when that is set and CuPy sees a
    device (it is not set: no device has measured where moving the data pays);
    the CPU otherwise.

A CuPy input with ``device="cpu"`` is refused (ValueError): nothing is copied
back to the host behind the caller's back; ``cupy.asnumpy`` does it explicitly.

CuPy is imported only when a device is asked about (``gpu_available``, a CuPy
input, ``device="gpu"``); without it nothing changes and no import fails.
"""

from __future__ import annotations

import contextlib
import math
import threading

__all__ = [
    "AUTO_MIN_VOXELS",
    "DEVICES",
    "FREE_FRACTION",
    "GPUUnavailableError",
    "check_device",
    "device_module",
    "free_bytes",
    "gpu_available",
    "is_device_array",
    "piece_rows",
    "resolve",
    "to_device",
    "to_host",
]

#: Values of the ``device`` keyword.
DEVICES = ("auto", "cpu", "gpu")
#: Elements of a NumPy input from which ``device="auto"`` takes the GPU (when there is one);
#: None: never (NumPy input stays on the CPU unless ``device="gpu"``) until a run on a
#: device has measured where moving the data starts to pay.
AUTO_MIN_VOXELS: int | None = None
#: Share of the device's free memory a piece may use (the rest: CuPy's own buffers, cuFFT
#: plans, other processes' growth).
FREE_FRACTION = 0.8
#: What to install for the GPU.
EXTRA = 'pip install "napari-voxelwise[gpu]"'


class GPUUnavailableError(RuntimeError):
    """``device="gpu"`` was asked for, but CuPy or a CUDA device is missing."""


_lock = threading.Lock()
_available: bool | None = None
#: Test hook: ``(module, free bytes)`` standing in for CuPy and the device's free memory.
_stand_in: tuple | None = None


def gpu_available() -> bool:
    """Whether CuPy imports and sees at least one CUDA device (checked once, then cached).

    Any failure (CuPy not installed, no driver, no device) gives False.
    """
    global _available
    if _stand_in is not None:
        return True
    with _lock:
        if _available is None:
            try:
                import cupy

                _available = int(cupy.cuda.runtime.getDeviceCount()) > 0
            except Exception:
                _available = False
        return _available


def device_module():
    """The array module of the device: CuPy (or the stand-in of :func:`stand_in`)."""
    if _stand_in is not None:
        return _stand_in[0]
    import cupy

    return cupy


def is_device_array(array) -> bool:
    """True for a CuPy array (found without importing CuPy)."""
    return type(array).__module__.split(".")[0] == "cupy"


def check_device(device) -> str:
    """`device` if it is one of :data:`DEVICES`, else a ValueError naming ``device``."""
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)}, got {device!r}")
    return device


def _unavailable() -> GPUUnavailableError:
    try:
        import cupy  # noqa: F401
    except Exception:
        reason = f"CuPy is not installed: {EXTRA} (CuPy for CUDA 12; cupy-cuda13x for CUDA 13)"
    else:
        reason = "CuPy finds no CUDA device (or no driver for it)"
    return GPUUnavailableError(
        f"device='gpu' needs CuPy and a CUDA device, but {reason}; or use device='cpu'"
    )


def resolve(device, array) -> str:
    """Where a call with `device` on `array` runs: ``"cpu"`` or ``"gpu"``.

    Raises
    ------
    ValueError
        For a `device` other than "auto", "cpu" or "gpu", or a CuPy `array`
        with ``device="cpu"``.
    GPUUnavailableError
        For ``device="gpu"`` without CuPy or a CUDA device.
    """
    device = check_device(device)
    if is_device_array(array):
        if device == "cpu":
            raise ValueError(
                "device='cpu' cannot take a CuPy array; pass cupy.asnumpy(array) for the CPU, "
                "or device='gpu' or 'auto' to compute on the device"
            )
        return "gpu"
    if device == "cpu":
        return "cpu"
    if device == "gpu":
        if not gpu_available():
            raise _unavailable()
        return "gpu"
    size = getattr(array, "size", 0)
    if AUTO_MIN_VOXELS is None or size < AUTO_MIN_VOXELS:
        return "cpu"
    return "gpu" if gpu_available() else "cpu"


def free_bytes() -> int:
    """Bytes a piece may use on the device: :data:`FREE_FRACTION` of its free memory,
    counting the blocks CuPy's memory pool holds but does not use."""
    if _stand_in is not None:
        return int(_stand_in[1])
    import cupy

    free, _ = cupy.cuda.runtime.memGetInfo()
    pooled = cupy.get_default_memory_pool().free_bytes()
    return int((free + pooled) * FREE_FRACTION)


def piece_rows(shape, itemsize: int, work_factor: float, free_bytes: int, halo: int = 0) -> int:
    """Rows along axis 0 of a piece of an array of `shape` that fit in `free_bytes`.

    A piece of ``rows`` rows is read with `halo` more rows on each side and
    needs ``work_factor`` times its bytes (``itemsize`` per element) on the
    device: ``(rows + 2 * halo) * row bytes * work_factor <= free_bytes``.

    Returns
    -------
    int
        Between 1 and ``shape[0]``.

    Raises
    ------
    MemoryError
        When not even one row with its halo fits.

    Examples
    --------
    >>> piece_rows((100, 10, 10), 4, 2.0, 40_000, halo=5)
    40
    """
    length = int(shape[0])
    row_bytes = math.prod(int(n) for n in shape[1:]) * int(itemsize) * float(work_factor)
    rows = int(free_bytes // max(row_bytes, 1)) - 2 * int(halo)
    if rows < 1:
        raise MemoryError(
            f"device: a piece of one row of {tuple(shape)} with a halo of {halo} rows needs "
            f"{(1 + 2 * halo) * row_bytes / 2**20:.1f} MiB, more than the "
            f"{free_bytes / 2**20:.1f} MiB free on the device; use device='cpu'"
        )
    return min(rows, length)


def to_device(host):
    """`host` (a NumPy array or view) as a contiguous device array (a device array as it is)."""
    if is_device_array(host):
        return host
    import numpy as np

    return device_module().asarray(np.ascontiguousarray(host))


def to_host(array):
    """`array` as a NumPy array (copied from the device; NumPy as it is)."""
    if is_device_array(array):
        return array.get()
    import numpy as np

    return np.asarray(array)


@contextlib.contextmanager
def stand_in(module, free: int):
    """Within this context `module` (NumPy, in tests) plays the device's array module and
    the device has `free` bytes: ``device="gpu"`` runs the exact piecewise path (split,
    halo, portable computation, copy back) on the CPU."""
    global _stand_in
    before = _stand_in
    _stand_in = (module, int(free))
    try:
        yield
    finally:
        _stand_in = before
