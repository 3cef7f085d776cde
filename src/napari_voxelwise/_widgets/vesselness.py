"""The "Vesselness" panel: multi-scale Frangi or Sato filtering, and the best-scale map.

The scales are in the units of the layer's scale (physical units), so an
anisotropic layer is smoothed by a different number of voxels per axis and the
best-scale map reads as a local tube size in those units.
"""

from __future__ import annotations

import math

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, SpinBox

from .. import _gpu
from .._plan import Plan
from .._runner import Job
from .._validation import result_float_dtype
from ..differential import RIDGES
from ..ridges import VESSELNESS_METHODS, scale_range, vesselness, vesselness_plan
from ._base import Panel, as_dask, is_lazy, layer_data, result_name
from ._pickers import follow_layers, geometry, is_plain_image, layer_picker
from .differential import (
    MAGNITUDE_COLORMAP,
    WORK_BYTES,
    WORK_FRACTION,
    frangi_boxes,
    magnitude_limits,
    number_box,
)

#: colormap of the best-scale map (sequential, readable with its colorbar)
SCALE_COLORMAP = "viridis"


def _fits(layer) -> bool:
    return is_plain_image(layer, ndims=(2, 3, 4))


class VesselnessPanel(Panel):
    """Vesselness over a range of scales: the strongest response per voxel, and its scale.

    Adds "name vesselness(frangi, sigma=1-8 x5)" and, with "best scale" checked,
    "name best scale(frangi, sigma=1-8 x5)": the sigma (in the layer's units) at
    which each voxel responded most, with its colorbar shown.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers the panel reads and where the results go.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        self.image = layer_picker(
            viewer,
            _fits,
            "image",
            "2D or 3D Image layer; a 4D layer is read as a time-lapse (t, z, y, x) and "
            "filtered frame by frame.",
        )
        units = "in the layer's units (its scale)"
        self.smallest = number_box(
            "from sigma",
            1.0,
            decimals=4,
            min=0.0,
            max=1e6,
            step=0.5,
            tooltip=f"Smallest scale, {units}.",
        )
        self.largest = number_box(
            "to sigma",
            4.0,
            decimals=4,
            min=0.0,
            max=1e6,
            step=0.5,
            tooltip=f"Largest scale, {units}.",
        )
        self.count = SpinBox(
            label="scales", value=4, min=1, max=64, tooltip="Number of scales from 'from' to 'to'."
        )
        self.spacing = ComboBox(
            label="spaced",
            choices=["linear", "log"],
            value="linear",
            tooltip="Scales spaced evenly (linear) or by a constant ratio (log).",
        )
        self.method = ComboBox(
            label="method",
            choices=list(VESSELNESS_METHODS),
            value="frangi",
            tooltip="frangi: Frangi et al. 1998 (as scikit-image's frangi); sato: Sato et al. "
            "1998 (as scikit-image's sato).",
        )
        self.ridges = ComboBox(
            label="ridges",
            choices=list(RIDGES),
            value="bright",
            tooltip="Enhance bright tubes on a dark background, or dark tubes on a bright one.",
        )
        self.alpha, self.beta, self.gamma = frangi_boxes(
            "Frangi: sensitivity to contrast, in units of the scale-normalised Hessian; "
            "0 = automatic, half of its largest norm over the image and scales."
        )
        self.floor = number_box(
            "min response",
            0.0,
            decimals=3,
            min=0.0,
            max=1.0,
            step=0.05,
            tooltip="Best-scale map: 0 (no tube) where the response is below this fraction of "
            "its largest value; 0 keeps the scale of every voxel that responds at all.",
        )
        self.best_scale = CheckBox(
            text="best scale",
            value=True,
            tooltip="Also add the map of the scale at which each voxel responded most "
            "(a local tube size, in the layer's units).",
        )
        super().__init__(
            viewer,
            [
                self.image,
                self.smallest,
                self.largest,
                self.count,
                self.spacing,
                self.method,
                self.ridges,
                self.alpha,
                self.beta,
                self.gamma,
                self.best_scale,
                self.floor,
            ],
        )
        self.method.changed.connect(self._update_enabled)
        self.best_scale.changed.connect(self._update_enabled)
        self._update_enabled()
        follow_layers(viewer, self)
        self.prepare_kernels(self.image, ("vesselness",))

    def _update_enabled(self, *_) -> None:
        frangi = self.method.value == "frangi"
        for widget in (self.alpha, self.beta, self.gamma):
            widget.enabled = frangi
        self.floor.enabled = bool(self.best_scale.value)

    def sigmas(self) -> list[float]:
        """The scales the panel's range describes."""
        try:
            return scale_range(
                self.smallest.value, self.largest.value, self.count.value, self.spacing.value
            )
        except ValueError as exc:
            raise ValueError(f"sigma range: {exc}") from None

    def make_job(self) -> Job:
        """Read the widgets and the layer; build the vesselness job."""
        layer = self.image.value
        data = layer_data(layer, "image")
        if data.ndim not in (2, 3, 4):
            raise ValueError(f"image: layer '{layer.name}' must be 2D, 3D or 4D, got {data.ndim}D")
        spatial = min(data.ndim, 3)
        spacing = tuple(float(step) for step in layer.scale[-spatial:])
        sigmas = self.sigmas()
        method = self.method.value
        options = {
            "method": method,
            "ridges": self.ridges.value,
            "spacing": spacing,
            "alpha": float(self.alpha.value),
            "beta": float(self.beta.value),
            "gamma": float(self.gamma.value) or None,
        }
        best = bool(self.best_scale.value)
        floor = float(self.floor.value)
        dtype = result_float_dtype(data.dtype)
        results = math.prod(data.shape) * dtype.itemsize * (1 + best)
        title = f"Vesselness of '{layer.name}'"
        store = None
        if is_lazy(data):  # Dask/zarr: chunk by chunk, into memory or a zarr store
            import dask.array as da

            lazy = vesselness(as_dask(data), sigmas, return_scale=True, **options)
            both = da.stack(lazy, axis=-1) if best else lazy[0]
            plan, memory, store = self.lazy_plan(both, title)
        else:
            plan = self.device_plan(
                lambda: vesselness_plan(data, sigmas, return_scale=best, **options),
                lambda: _gpu.vesselness_plan(data, sigmas, return_scale=best, **options),
            )
            memory = results * (1 + WORK_FRACTION) + WORK_BYTES

        def run():
            result = yield from plan.steps()
            if is_lazy(data):
                result = (result[..., 0], result[..., 1]) if best else result
            response, scale = result if best else (result, None)
            limits = magnitude_limits(response)
            if scale is not None and floor > 0:  # no tube where the response is weak
                scale = _below_floor_to_zero(scale, response, floor * limits[1])
            return response, limits, scale

        place, name = geometry(layer), layer.name
        first, last = sigmas[0], sigmas[-1]
        label = f"{first:g}-{last:g} x{len(sigmas)}" if len(sigmas) > 1 else f"{first:g}"
        key = {"sigma": label}

        def to_layers(result):
            response, limits, scale = result
            layers = [
                (
                    response,
                    {
                        "name": result_name(name, "vesselness", **{method: True}, **key),
                        "colormap": MAGNITUDE_COLORMAP,
                        "contrast_limits": limits,
                        **place,
                    },
                    "image",
                )
            ]
            if scale is not None:
                layers.append(
                    (
                        scale,
                        {
                            "name": result_name(name, "best scale", **{method: True}, **key),
                            "colormap": SCALE_COLORMAP,
                            # the scales, in the layer's units; 0 (no response) at the bottom
                            "contrast_limits": (0.0, max(last, 1e-12)),
                            "colorbar": True,
                            **place,
                        },
                        "image",
                    )
                )
            return layers

        return Job(
            title=title,
            plan=Plan(plan.total, run, "vesselness"),
            to_layers=to_layers,
            sources=[layer],
            memory_bytes=int(memory),
            operation="vesselness",
            parameters={
                "sigmas": sigmas,
                **options,
                "best_scale": best,
                "min_response": floor if best else None,
            },
            store=store,
        )


def _below_floor_to_zero(scale, response, floor: float):
    """`scale` with 0 where `response` is below `floor` (lazily for Dask/zarr results)."""
    if is_lazy(scale):
        import dask.array as da

        return da.where(as_dask(response) >= floor, as_dask(scale), 0).astype(scale.dtype)
    return np.where(response >= floor, scale, 0).astype(scale.dtype)
