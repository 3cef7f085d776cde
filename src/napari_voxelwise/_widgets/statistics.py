"""Voxel statistics panel: one statistic of every voxel along an axis, and frame norms.

The point-and-click answers to "the variance of every voxel of a stack along k"
(a new image layer) and "the L2 norm of each frame" (a line plot in the panel,
with the values ready to paste elsewhere).
"""

from __future__ import annotations

import napari
import napari.viewer
import numpy as np
from magicgui.widgets import ComboBox, PushButton, SpinBox

from .._budget import REDUCTION_DEPTH
from .._geometry import reduced_placement
from .._plan import default_workers, task_count
from .._runner import Job
from ..statistics import (
    STATISTICS,
    axis_statistic,
    frame_norms,
    frame_norms_plan,
    statistic_plan,
)
from ._base import Panel, as_dask, is_lazy, layer_data, result_name, spatial_geometry
from ._pickers import follow_layers, layer_picker

#: statistics that use `ddof`
DDOF_STATISTICS = ("var", "std", "cv")
#: peak memory of a run besides its result: the tiles its threads work on
TEMPORARY_BYTES = 64 * 2**20


def fits_statistics(layer) -> bool:
    """Whether `layer` can be reduced along an axis: a non-RGB image with 2 or more axes."""
    return isinstance(layer, napari.layers.Image) and layer.ndim >= 2 and not layer.rgb


def layer_axis_labels(viewer: napari.Viewer, layer) -> list[str]:
    """The viewer's label of each axis of `layer` (a layer fills the viewer's last axes)."""
    labels = tuple(viewer.dims.axis_labels)
    offset = len(labels) - layer.ndim
    if offset < 0:  # the viewer has not caught up with a new layer yet
        return [str(axis) for axis in range(layer.ndim)]
    return [str(label) for label in labels[offset:]]


def _without(values, axis: int) -> tuple:
    values = tuple(values)
    return values[:axis] + values[axis + 1 :]


def _has_own_axis_labels(layer) -> bool:
    """True unless `layer` has napari's default axis labels ('-3', '-2', '-1')."""
    labels = tuple(getattr(layer, "axis_labels", ()) or ())
    return bool(labels) and labels != tuple(str(axis) for axis in range(-layer.ndim, 0))


def reduced_geometry(layer, axis: int) -> dict:
    """Layer keyword arguments placing the result of reducing `axis` exactly over `layer`.

    With 3 or more axes the reduced axis is dropped: ``scale`` and
    ``translate`` (and ``units`` and ``axis_labels``, when the layer has its
    own) lose that entry. A 2D layer gives a 1D profile, which napari cannot
    show; it is kept as an image one pixel thick along `axis` (see
    :func:`as_displayable`), stretched over the layer's whole extent there:
    scale ``n * s`` and its one pixel centred on the ``n`` source pixels.
    """
    geometry = spatial_geometry(layer)
    units = getattr(layer, "units", None)
    length = layer_data(layer).shape[axis]
    scale, translate = reduced_placement(geometry["scale"], geometry["translate"], axis, length)
    kwargs = {"scale": scale, "translate": translate}
    if layer.ndim == 2:
        if units is not None:
            kwargs["units"] = tuple(str(unit) for unit in units)
        if _has_own_axis_labels(layer):
            kwargs["axis_labels"] = tuple(layer.axis_labels)
        return kwargs
    if units is not None:
        kwargs["units"] = _without((str(unit) for unit in units), axis)
    if _has_own_axis_labels(layer):
        kwargs["axis_labels"] = _without(layer.axis_labels, axis)
    return kwargs


def as_displayable(result: np.ndarray, source_ndim: int, axis: int) -> np.ndarray:
    """`result` as napari can show it: a 1D profile of a 2D source gets `axis` back (length 1)."""
    return np.expand_dims(result, axis) if source_ndim == 2 else result


def _statistic_memory(data, statistic: str, axis: int) -> int:
    """Estimated peak bytes of :func:`statistic_plan`: result, buffers and temporaries.

    Twice the result (float32, float64 for float64 input, the input dtype for
    min and max), leaving room for the copies napari makes to display it, and
    the tiles the threads work on. The median (numpy's, not a kernel) also copies
    the box of whole lines each running task sorts: with few, long lines that
    is a large part of the input.
    """
    if statistic in ("min", "max"):
        itemsize = data.dtype.itemsize
    else:
        itemsize = 8 if data.dtype == np.float64 else 4
    lines = data.size // max(data.shape[axis], 1)
    memory = 2 * itemsize * lines + TEMPORARY_BYTES
    if statistic == "median":
        workers = default_workers()
        tasks = task_count(data.nbytes, lines, workers)
        box_bytes = 8 * data.size / tasks  # as float64, the most a task's copy takes
        memory += int(min(workers, tasks) * box_bytes)
    return memory


class StatisticsPanel(Panel):
    """Per-voxel statistic along one axis of an image, and the norm of each frame.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose image layers the panel works on (npe2 passes it).
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        self.layer_combo = layer_picker(
            viewer,
            fits_statistics,
            "Image",
            "Image layer to reduce (non-RGB images with at least 2 axes).",
        )
        self.axis_combo = ComboBox(
            label="Axis",
            choices=lambda _widget: self._axis_choices(viewer),
            tooltip="Axis to reduce: index in the layer, with the viewer's axis label. "
            "The result has one axis less and keeps the layer's scale and offset on the others "
            "(a 2D image gives a one-pixel-thick profile stretched over it).",
        )
        self.statistic_combo = ComboBox(
            label="Statistic",
            choices=STATISTICS,
            value="var",
            tooltip="What to compute for every voxel along the axis. cv is std / mean.",
        )
        self.ddof_spin = SpinBox(
            label="ddof",
            value=0,
            min=0,
            max=2**31 - 1,
            tooltip="Delta degrees of freedom (divisor N - ddof); only for var, std and cv. "
            "Use 1 for the unbiased sample variance.",
        )
        self.norms_button = PushButton(
            text="Frame norms",
            tooltip="Plot the L2 norm of every frame (sub-array) along the axis.",
        )
        self.copy_button = PushButton(
            text="Copy values",
            tooltip="Copy the frame norms to the clipboard as tab-separated 'index<TAB>norm' "
            "lines.",
        )
        super().__init__(
            viewer,
            [self.layer_combo, self.axis_combo, self.statistic_combo, self.ddof_spin],
            run_text="Compute statistic",
        )
        self.extend([self.norms_button, self.copy_button])
        #: the last frame norms shown in the plot (float64), or None before the first run
        self.norms: np.ndarray | None = None
        self._make_plot()

        self.layer_combo.changed.connect(self.axis_combo.reset_choices)
        self.statistic_combo.changed.connect(self._update_ddof_enabled)
        self.norms_button.changed.connect(self.run_norms)
        self.copy_button.changed.connect(self.copy_norms)
        follow_layers(viewer, self)
        self.prepare_kernels(self.layer_combo, ("statistics", "norms"))
        viewer.dims.events.axis_labels.connect(self.axis_combo.reset_choices)
        self._update_ddof_enabled()

    # ----------------------------------------------------------------- widgets

    def _axis_choices(self, viewer) -> list[tuple[str, int]]:
        layer = self.layer_combo.value
        if layer is None:
            return []
        labels = layer_axis_labels(viewer, layer)
        return [(f"{axis} ({label})", axis) for axis, label in enumerate(labels)]

    def _update_ddof_enabled(self, *_) -> None:
        self.ddof_spin.enabled = self.statistic_combo.value in DDOF_STATISTICS

    def _make_plot(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.5), tight_layout=True)
        self.plot_axes = self.figure.add_subplot()
        self.plot_axes.set_ylabel("L2 norm")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(180)
        self.canvas.setToolTip("L2 norm of each frame along the chosen axis (Frame norms).")
        self.native.layout().addWidget(self.canvas)

    # -------------------------------------------------------------------- jobs

    def _chosen(self) -> tuple:
        """(layer, data, axis) from the widgets, or a ValueError naming what is missing."""
        layer = self.layer_combo.value
        data = layer_data(layer, "image")
        axis = self.axis_combo.value
        if axis is None or not 0 <= axis < layer.ndim:
            raise ValueError("axis: choose an axis of the layer")
        return layer, data, axis

    def make_job(self) -> Job:
        """The statistic of the chosen layer along the chosen axis, as a new image layer."""
        layer, data, axis = self._chosen()
        statistic = self.statistic_combo.value
        ddof = int(self.ddof_spin.value) if statistic in DDOF_STATISTICS else 0
        title = f"{statistic.capitalize()} of '{layer.name}' along axis {axis}"
        store = None
        if is_lazy(data):  # Dask/zarr: chunk by chunk, into memory or a zarr store
            depth = -1 if statistic == "median" else min(data.shape[axis], REDUCTION_DEPTH)
            chunked = as_dask(data, "statistic", fixed={axis: depth})
            lazy = axis_statistic(chunked, statistic, axis=axis, ddof=ddof)
            plan, memory, store = self.lazy_plan(lazy, title)
        else:
            plan = statistic_plan(data, statistic, axis=axis, ddof=ddof)
            memory = _statistic_memory(data, statistic, axis)
        name = result_name(layer, statistic, axis=axis, ddof=ddof or None)
        kwargs = {"name": name, **reduced_geometry(layer, axis)}
        parameters = {"statistic": statistic, "axis": axis}
        if statistic in DDOF_STATISTICS:
            parameters["ddof"] = ddof
        return Job(
            title=title,
            plan=plan,
            to_layers=lambda result: [(as_displayable(result, data.ndim, axis), kwargs, "image")],
            sources=[layer],
            memory_bytes=memory,
            operation="axis_statistic",
            parameters=parameters,
            store=store,
        )

    def make_norms_job(self) -> Job:
        """The L2 norm of every frame along the chosen axis, shown as a plot in the panel."""
        layer, data, axis = self._chosen()
        if is_lazy(data):  # one number per frame: always computed into memory
            plan = self.lazy_plan(frame_norms(as_dask(data, "norms"), axis=axis), "frame norms")[0]
        else:
            plan = frame_norms_plan(data, axis=axis)
        axis_title = f"index along axis {self.axis_combo.current_choice}"
        return Job(
            title=f"Frame norms of '{layer.name}' along axis {axis}",
            plan=plan,
            to_layers=lambda result: [],
            sources=[layer],
            memory_bytes=TEMPORARY_BYTES,
            operation="frame_norms",
            parameters={"axis": axis, "ord": 2},
            on_done=lambda norms: self.show_norms(norms, axis_title),
        )

    def run_norms(self) -> None:
        """Start the frame norms (the Frame norms button); Cancel stops them."""
        self.runner.submit(self.make_norms_job)

    # ------------------------------------------------------------------ norms

    def show_norms(self, norms: np.ndarray, axis_title: str) -> None:
        """Keep `norms` as :attr:`norms` and draw them against their index."""
        self.norms = np.asarray(norms, dtype=np.float64)
        axes = self.plot_axes
        axes.clear()
        axes.plot(np.arange(self.norms.size), self.norms, marker=".")
        axes.set_xlabel(axis_title)
        axes.set_ylabel("L2 norm")
        self.canvas.draw()

    def norms_text(self) -> str:
        """The last norms as tab-separated ``index<TAB>norm`` lines (full precision)."""
        if self.norms is None:
            return ""
        return "\n".join(f"{index}\t{value!r}" for index, value in enumerate(self.norms.tolist()))

    def copy_norms(self) -> None:
        """Put :meth:`norms_text` on the clipboard (the Copy values button)."""
        if self.norms is None:
            self.runner.notify_info("No frame norms yet: click 'Frame norms' first.")
            return
        from qtpy.QtWidgets import QApplication

        QApplication.clipboard().setText(self.norms_text())
