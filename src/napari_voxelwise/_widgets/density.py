"""Density heatmap panel: the fraction of "on" elements per block or window, as an overlay.

The point-and-click answer to "a coarser map of a binary image where each value
is the fraction of nonzero pixels in a block". The result is drawn exactly over
its source (each heatmap element centred on the pixels it summarises), and can
follow the parameters and the source's edits live.
"""

from __future__ import annotations

import math
import re

import napari
import napari.viewer
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit

from .._geometry import block_placement
from .._runner import Job
from ..density import (
    DENSITY_EDGES,
    DENSITY_MODES,
    density_map,
    density_plan,
    density_shape,
    normalize_window,
)
from ._base import Panel, as_dask, is_lazy, layer_data, result_name, spatial_geometry
from ._pickers import follow_layers, layer_picker

#: live mode turns itself off for layers with more elements than this
LIVE_MAX_ELEMENTS = 2**24
#: live mode waits this long after the last change before recomputing (a burst of edits
#: gives one run)
LIVE_DELAY_MS = 150


def fits_density(layer) -> bool:
    """Whether `layer` can be summarised: a non-RGB Image, or Labels, with 2 or more axes."""
    if isinstance(layer, napari.layers.Labels):
        return layer.ndim >= 2
    return isinstance(layer, napari.layers.Image) and layer.ndim >= 2 and not layer.rgb


def parse_window(text: str) -> tuple[int, ...]:
    """``"3, 3" -> (3, 3)``; one number ``"4"`` means ``(4, 4)`` (the last two axes).

    Raises
    ------
    ValueError
        Naming ``window`` when `text` is not a list of positive integers.
    """
    entries = [entry for entry in re.split(r"[,;\s]+", str(text).strip()) if entry]
    try:
        sizes = tuple(int(entry) for entry in entries)
    except ValueError:
        raise ValueError(
            f"window: {text!r} is not a list of whole numbers such as '3, 3'"
        ) from None
    if not sizes:
        raise ValueError("window: give one size per axis, such as '3, 3'")
    if any(size < 1 for size in sizes):
        raise ValueError(f"window: sizes must be at least 1, got {text!r}")
    return sizes * 2 if len(sizes) == 1 else sizes


def density_geometry(layer, window: tuple[int, ...], mode: str) -> dict:
    """``scale``/``translate`` placing a density map of `layer` exactly over it.

    Element ``i`` of the map sits at the centre (the mean world position) of
    the source pixels it summarises: in block mode the pixels
    ``i*w .. i*w + w-1``, so the scale grows by ``w``; in sliding mode the
    pixels ``i .. i + w-1``, so the scale stays. In both, the first element's
    centre moves by ``(w - 1) / 2`` source pixels. Axes with window 1 (the
    leading axes of a stack) keep their geometry.
    """
    geometry = spatial_geometry(layer)
    scale, translate = block_placement(geometry["scale"], geometry["translate"], window, mode)
    return {"scale": scale, "translate": translate}


class DensityPanel(Panel):
    """Fraction of elements above a threshold in each block or sliding window.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose image and labels layers the panel works on (npe2 passes it).
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        self.layer_combo = layer_picker(
            viewer,
            fits_density,
            "Layer",
            "Image or Labels layer (non-RGB, at least 2 axes), e.g. a binary mask.",
        )
        self.threshold_spin = FloatSpinBox(
            label="Threshold",
            value=0.0,
            min=-1e12,
            max=1e12,
            step=0.1,
            tooltip="An element counts as 'on' when its value is greater than this "
            "(0: every nonzero pixel or label).",
        )
        self.window_edit = LineEdit(
            label="Window",
            value="3, 3",
            tooltip="Window size in pixels for the last axes: '3, 3' for (y, x), "
            "'2, 3, 3' for (z, y, x); one number means the same size on the last two axes. "
            "Leading axes (time, channels) are kept: one map per frame.",
        )
        self.mode_combo = ComboBox(
            label="Mode",
            choices=DENSITY_MODES,
            value="block",
            tooltip="block: non-overlapping blocks, a coarser map. sliding: every window "
            "position, a map almost as large as the image.",
        )
        self.edge_combo = ComboBox(
            label="Edge",
            choices=DENSITY_EDGES,
            value="trim",
            tooltip="Block mode only: trim drops partial blocks at the far edges, pad keeps "
            "them (fraction of the pixels that exist).",
        )
        self.live_check = CheckBox(
            text="Live",
            value=False,
            tooltip="Recompute whenever a parameter or the layer's data changes, updating "
            f"the same result layer (off for layers above {LIVE_MAX_ELEMENTS:,} elements).",
        )
        super().__init__(
            viewer,
            [
                self.layer_combo,
                self.threshold_spin,
                self.window_edit,
                self.mode_combo,
                self.edge_combo,
                self.live_check,
            ],
        )
        from qtpy.QtCore import QTimer

        #: single-shot timer collecting a burst of live changes into one run
        self.live_timer = QTimer(self.native)
        self.live_timer.setSingleShot(True)
        self.live_timer.setInterval(LIVE_DELAY_MS)
        self.live_timer.timeout.connect(self._run_live)
        self._watched_layer = None

        follow_layers(viewer, self)
        self.prepare_kernels(self.layer_combo, ("density",))
        self.layer_combo.changed.connect(self._on_layer_changed)
        for widget in (self.threshold_spin, self.window_edit, self.mode_combo, self.edge_combo):
            widget.changed.connect(self.schedule_live_update)
        self.mode_combo.changed.connect(self._update_edge_enabled)
        self.live_check.changed.connect(self._on_live_toggled)
        self._update_edge_enabled()
        self._watch(self.layer_combo.value)

    # -------------------------------------------------------------------- jobs

    def make_job(self) -> Job:
        """The density map of the chosen layer, as an overlay image layer."""
        layer = self.layer_combo.value
        data = layer_data(layer, "layer")
        window = parse_window(self.window_edit.value)
        mode, edge = self.mode_combo.value, self.edge_combo.value
        threshold = float(self.threshold_spin.value)
        title = f"Density of '{layer.name}'"
        options = {"window": window, "mode": mode, "threshold": threshold, "edge": edge}
        sizes = normalize_window(window, data.shape, mode, edge)
        output_elements = math.prod(density_shape(data.shape, sizes, mode, edge))
        # the float32 map, plus the per-task counts (a few input rows each)
        memory, store = 4 * output_elements + 64 * 2**20, None
        if is_lazy(data):  # Dask/zarr: chunk by chunk, into memory or a zarr store
            halo = tuple(size - 1 for size in sizes) if mode == "sliding" else None
            plan, memory, store = self.lazy_plan(
                density_map(as_dask(data, "density", halo=halo), **options), title
            )
        else:
            plan = density_plan(data, **options)
        kwargs = {
            "name": result_name(
                layer,
                "density",
                window=window,
                mode=mode,
                edge=edge if mode == "block" and edge != "trim" else None,
                threshold=threshold or None,
            ),
            "colormap": "inferno",
            "contrast_limits": [0.0, 1.0],
            "opacity": 0.6,
            "blending": "additive",
            **density_geometry(layer, sizes, mode),
        }
        parameters = {"window": list(sizes), "mode": mode, "threshold": threshold}
        if mode == "block":
            parameters["edge"] = edge
        return Job(
            title=title,
            plan=plan,
            to_layers=lambda result: [(result, kwargs, "image")],
            sources=[layer],
            memory_bytes=memory,
            operation="density_map",
            parameters=parameters,
            store=store,
            # live: one overlay per source layer, updated in place as the parameters change
            live_slot=("density", layer.unique_id) if self.live_check.value else None,
        )

    # --------------------------------------------------------------- live mode

    def schedule_live_update(self, *_) -> None:
        """In live mode, recompute once the current burst of changes has settled."""
        if self.live_check.value:
            self.live_timer.start()  # restarts the countdown on every change

    def _run_live(self) -> None:
        if self.live_check.value and self._live_allowed():
            self.runner.submit(self.make_job, replace=True)

    def _live_allowed(self) -> bool:
        """False (and live mode off, with a notification) for a layer too large to follow."""
        layer = self.layer_combo.value
        if layer is None:
            return True
        size = int(np.prod(layer_data(layer).shape, dtype=np.int64))
        if size <= LIVE_MAX_ELEMENTS:
            return True
        self.live_timer.stop()
        self.live_check.value = False
        self.runner.notify_info(
            f"Live density turned off: '{layer.name}' has {size:,} elements, more than "
            f"{LIVE_MAX_ELEMENTS:,}, so recomputing at every change would make napari "
            "sluggish. Click Run to compute it once."
        )
        return False

    def _on_live_toggled(self, live: bool) -> None:
        if live and self._live_allowed():
            self.runner.submit(self.make_job, replace=True)
        elif not live:
            self.live_timer.stop()

    def _on_layer_changed(self, layer) -> None:
        self._watch(layer)
        if self.live_check.value and self._live_allowed():
            self.schedule_live_update()

    def _on_data_changed(self, *_) -> None:
        if self.live_check.value and self._live_allowed():
            self.schedule_live_update()

    def _watch(self, layer) -> None:
        """Follow the data (and label painting) of `layer` only."""
        previous = self._watched_layer
        if previous is layer:
            return
        if previous is not None:
            for event in _data_events(previous):
                event.disconnect(self._on_data_changed)
        self._watched_layer = layer
        if layer is not None:
            for event in _data_events(layer):
                event.connect(self._on_data_changed)

    # ---------------------------------------------------------------- widgets

    def _update_edge_enabled(self, *_) -> None:
        self.edge_combo.enabled = self.mode_combo.value == "block"


def _data_events(layer) -> list:
    """The events saying that `layer`'s values changed (data replaced, labels painted)."""
    events = layer.events
    return [getattr(events, name) for name in ("data", "paint") if hasattr(events, name)]
