"""What every panel shares: the Run/Cancel button, the runner, geometry helpers."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, Container, Label, PushButton

from .._runner import Job, Runner, available_memory, prepare_kernels

#: peak bytes of a chunked run besides its result, per chunk in flight (input, temporaries)
CHUNK_WORK_FACTOR = 4

if TYPE_CHECKING:  # pragma: no cover
    import napari


class Panel(Container):
    """A magicgui Container with a Run button wired to a :class:`Runner`.

    Subclasses pass their child widgets (kept as attributes so tests can set
    ``.value``) and implement :meth:`make_job`.
    """

    def __init__(self, viewer: napari.Viewer, widgets, run_text: str = "Run"):
        self.run_button = PushButton(
            text=run_text, tooltip="Start the computation; click again to cancel it."
        )
        self.where = Label(value="")
        self.where.tooltip = (
            "Where the last run on a Dask/zarr layer ran, and where its result is stored."
        )
        self.where.visible = False
        from .._device import gpu_available

        # shown only where CuPy sees a CUDA device; results come back as NumPy for display
        self.gpu = CheckBox(
            text="GPU",
            value=False,
            tooltip="Compute on the GPU (CuPy): the layer is moved to the device in pieces "
            "that fit its memory and the results come back for display.",
        )
        self.gpu_shown = gpu_available()
        extra = [self.gpu] if self.gpu_shown else []
        super().__init__(widgets=[*widgets, *extra, self.run_button, self.where])
        self.viewer = viewer
        self.runner = Runner(viewer, self.run_button, on_result=self.on_result)
        self.run_button.changed.connect(self.run)
        runner = self.runner
        self.native.destroyed.connect(lambda *_: runner.close())

    def prepare_kernels(self, picker, operations: tuple[str, ...]) -> None:
        """Have the kernels of `operations` ready for the dtype of the layer chosen in
        `picker`: now, and whenever the choice changes (see `_runner.prepare_kernels`)."""

        def prepare(*_):
            layer = picker.value
            if layer is not None:
                prepare_kernels(operations, layer_data(layer).dtype)

        picker.changed.connect(prepare)
        prepare()

    def device_plan(self, cpu_plan, gpu_plan):
        """`gpu_plan()` when the GPU box is checked (and shown), else `cpu_plan()`: both are
        functions without arguments returning a Plan of NumPy results."""
        return gpu_plan() if self.gpu_shown and self.gpu.value else cpu_plan()

    def run(self) -> None:
        """Start a run, or cancel the one in progress (the button's action)."""
        self.runner.toggle(self.make_job)

    def make_job(self) -> Job:  # pragma: no cover - every panel defines it
        raise NotImplementedError

    def on_result(self, layers: list) -> None:
        """Called with the layers added after a successful run."""

    def lazy_plan(self, result, description: str = "", *, store="auto", nbytes=None):
        """Compute a lazy (Dask) `result` chunk by chunk: ``(plan, memory_bytes, store)``.

        With ``store="auto"``, a result (or a job whose results total `nbytes`)
        larger than a quarter of the available memory goes to a new temporary
        zarr store, removed with its layers or at exit, and comes back as a
        Dask array reading it; a smaller one is computed into memory (``store``
        None). A path writes there instead; None keeps the result in memory.
        The panel says where the work runs (this machine's threads or the
        active ``dask.distributed`` cluster).
        """
        from .._lazy import dask_result_plan, should_store, temporary_store, where_it_runs

        if isinstance(store, str) and store == "auto":
            total = result.nbytes if nbytes is None else nbytes
            store = temporary_store() if should_store(total, available_memory()) else None
        plan = dask_result_plan(result, store, description)
        text = where_it_runs()
        text += "; result written to a temporary zarr store" if store else "; result in memory"
        self.where.value = text
        self.where.tooltip = store or text
        self.where.visible = True
        return plan, lazy_memory(result, store is not None), store


def sibling_store(store: str | None, name: str) -> str | None:
    """A second store in the folder of temporary `store` (removed with it), or None."""
    return None if store is None else os.path.join(os.path.dirname(store), f"{name}.zarr")


def is_lazy(data) -> bool:
    """True for layer data not held in memory as a NumPy array (Dask, zarr, ...)."""
    return not isinstance(data, np.ndarray)


def as_dask(data, operation: str | None = None, **sizing):
    """`data` as a Dask array: Dask arrays as they are; zarr and others by their own chunks.

    With an `operation` (a name of ``_budget.FOOTPRINTS``), chunks fit the memory budget
    of a panel run (see :func:`.._lazy.budgeted`; `sizing`: its `halo` and `fixed`).
    """
    from .._validation import is_dask_array

    if operation is not None:
        from .._lazy import budgeted

        return budgeted(data, operation, **sizing)
    if is_dask_array(data):
        return data
    import dask.array as da

    chunks = getattr(data, "chunks", None)
    return da.from_array(data, chunks=chunks if isinstance(chunks, tuple) else "auto")


def lazy_memory(result, stored: bool) -> int:
    """Estimated peak bytes of computing the Dask `result` chunk by chunk."""
    from .._plan import default_workers

    largest_chunk = math.prod(max(sizes, default=1) for sizes in result.chunks)
    in_flight = 2 * default_workers() * largest_chunk * result.dtype.itemsize
    return int((0 if stored else result.nbytes) + CHUNK_WORK_FACTOR * in_flight)


def derivative_sizing(shape, spatial: int, sigma, spacing, finite_depth: int) -> dict:
    """The `halo` (and one frame per chunk for a leading time axis) of a derivative of
    data of `shape` with `spatial` axes, for :func:`as_dask`."""
    from .._dask import derivative_halo

    halo = derivative_halo(shape[-spatial:], sigma, spacing, finite_depth=finite_depth)
    if len(shape) == spatial:
        return {"halo": halo}
    return {"halo": (0, *halo), "fixed": {0: 1}}


def lazy_over_frames(data, spatial: int, function):
    """``function(data)``, or the frames of a leading time axis stacked lazily."""
    if data.ndim == spatial:
        return function(data)
    import dask.array as da

    return da.stack([function(data[index]) for index in range(data.shape[0])])


def layer_data(layer, name: str = "layer"):
    """The data of `layer` as it is now (level 0 of a multiscale), or a ValueError."""
    if layer is None:
        raise ValueError(f"{name}: choose a layer first")
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return data


def spatial_geometry(layer) -> dict:
    """``scale`` and ``translate`` of `layer`, as new arrays (see :func:`._pickers.geometry`)."""
    from ._pickers import geometry

    place = geometry(layer)
    return {"scale": place["scale"], "translate": place["translate"]}


def result_name(source, operation: str, **parameters) -> str:
    """``<source> <operation>(<key parameters>)``: the name of a result layer.

    ``result_name(layer, "var", axis=0)`` -> ``"cells var(axis=0)"``. Numbers
    are written short (``2.0`` -> ``2``), sequences joined by ``x`` (a window
    ``(3, 3)`` -> ``3x3``), True as the bare key (``crop=True`` -> ``crop``);
    None and False are left out. Rerunning with the same parameters gives the
    same name, which is how the runner finds the layer to update.
    """
    words = []
    for key, value in parameters.items():
        if value is None or value is False:
            continue
        words.append(key if value is True else f"{key}={_short(value)}")
    return f"{getattr(source, 'name', source)} {operation}({', '.join(words)})"


def _short(value) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return "x".join(_short(item) for item in value)
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)
