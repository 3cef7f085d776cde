"""Shared fixtures and helpers of the test suite."""

from __future__ import annotations

import hashlib
import os
import sys

# Every test runs on the compiled kernels (unless it asks for the portable path): a kernel
# missing from numba's cache is compiled by the compiler process while the test waits.
os.environ.setdefault("NAPARI_VOXELWISE_COMPILE", "wait")

import numpy as np
import pytest

#: dtypes every core function is tested with
DTYPES = [np.uint8, np.uint16, np.float32, np.float64]


def random_data(shape, dtype, seed=0) -> np.ndarray:
    """Random test data of `dtype` spanning a good part of its range."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        high = min(np.iinfo(dtype).max, 2**20)
        low = max(np.iinfo(dtype).min, -(2**20))
        return rng.integers(low, high, size=shape, endpoint=True).astype(dtype)
    return (rng.standard_normal(shape) * 10 + 3).astype(dtype)


def checksum(array: np.ndarray) -> str:
    """Digest of an array's values, shape and dtype (to prove inputs are unchanged)."""
    array = np.asarray(array)
    digest = hashlib.sha256(np.ascontiguousarray(array).tobytes())
    digest.update(repr((array.shape, array.dtype.str)).encode())
    return digest.hexdigest()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def workers(request):
    """Run a test with the inline path and with the thread pool."""
    return request.param


@pytest.fixture
def viewer(qapp):
    """A viewer model without a window: panels need only its layers (and a Qt app).

    Starting a full viewer per test would take most of the panel tests' time;
    files that need a window override this with ``make_napari_viewer``.
    """
    from napari.components import ViewerModel

    return ViewerModel()


@pytest.fixture
def errors(monkeypatch):
    """Messages of the error notifications shown during a test."""
    from napari_voxelwise._runner import Runner

    shown: list[str] = []
    monkeypatch.setattr(Runner, "notify_error", staticmethod(lambda e: shown.append(str(e))))
    return shown


def run_panel(panel) -> None:
    """Click the panel's Run button and wait for the run to end."""
    panel.run()
    panel.runner.wait()


@pytest.fixture(autouse=True)
def _delete_panels_made_by_the_test(monkeypatch):
    """Delete the Qt side of every panel a test made, when the test ends.

    In napari a panel belongs to its dock, which Qt deletes. Tests make panels
    without a dock; left to Python's garbage collector, their widgets would be
    deleted at a random later moment (inside another test's Qt calls), where
    PyQt may crash.
    """
    import sys

    if "napari_voxelwise._widgets._base" not in sys.modules:
        yield  # a core test: no Qt involved
        return
    from napari_voxelwise._widgets._base import Panel

    made = []
    original = Panel.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Panel, "__init__", recording_init)
    yield
    import contextlib

    from qtpy.QtCore import QCoreApplication, QEvent

    for panel in made:
        panel.runner.close()
        with contextlib.suppress(RuntimeError):  # docked in a viewer that deleted it already
            panel.native.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def pytest_report_header(config):
    """The versions that matter most to a run: napari and its Qt binding, dask, numba, numpy."""
    import importlib.metadata

    versions = []
    for name in ("napari", "PyQt6", "PyQt5", "PySide6", "dask", "distributed", "numba", "numpy"):
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import qtpy

        qt = f"{qtpy.API_NAME} on Qt {qtpy.QT_VERSION}"
    except Exception as error:  # no binding at all: say so rather than fail the header
        qt = f"none ({error})"
    return [f"napari-voxelwise: {', '.join(versions)}", f"napari's Qt backend: {qt}"]


def pytest_addoption(parser):
    parser.addoption(
        "--without-numba",
        action="store_true",
        help="make numba unimportable: everything runs on the portable path",
    )


def pytest_configure(config):
    if config.getoption("--without-numba"):
        sys.modules["numba"] = None  # `import numba` raises ImportError
        sys.modules["llvmlite"] = None
