"""The "Hessian eigenvalues" and "Gradient" panels.

Both take a 2D or 3D Image layer, or a 4D one read as a time-lapse
(t, z, y, x) and processed frame by frame. Voxel spacing is the layer's
``scale`` on the spatial axes, so derivatives are taken with respect to
physical coordinates and anisotropic voxels are smoothed correctly.

``sigma`` is in the units of the layer's scale. With "sigma in voxels"
checked it is a number of voxels instead: the panel multiplies it by the
spacing of each axis before handing it to the core, so an anisotropic layer
gets a different physical sigma per axis (the same number of voxels on
every axis) while derivatives stay in physical units.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox

from .. import _gpu
from .._plan import Plan
from .._runner import Job
from .._validation import result_float_dtype
from ..differential import (
    EIGENVALUE_ORDERS,
    RIDGES,
    frangi_plan,
    frangi_vesselness,
    gradient_magnitude,
    gradient_plan,
    gradient_vectors,
    hessian_eigenvalues,
    hessian_eigenvalues_plan,
)
from ._base import (
    Panel,
    as_dask,
    derivative_sizing,
    is_lazy,
    layer_data,
    lazy_over_frames,
    result_name,
    sibling_store,
)
from ._pickers import axis_names, follow_layers, geometry, is_plain_image, layer_picker

#: diverging colormap of signed results (eigenvalues, gradient components)
SIGNED_COLORMAP = "PiYG"
#: colormap of non-negative results (vesselness, gradient magnitude)
MAGNITUDE_COLORMAP = "magma"
#: Frangi's alpha and beta by default (as scikit-image's frangi); left out of layer names
FRANGI_DEFAULT = 0.5
#: temporaries of the slab engine beyond the result: a fraction of it plus a constant
WORK_FRACTION, WORK_BYTES = 0.25, 64 * 2**20


def number_box(label: str, value: float, *, decimals: int, **options) -> FloatSpinBox:
    """A FloatSpinBox showing `decimals` digits (magicgui shows 2 by default)."""
    box = FloatSpinBox(label=label, **options)
    box.native.setDecimals(decimals)
    box.value = value
    return box


def frangi_boxes(gamma_tooltip: str) -> tuple[FloatSpinBox, FloatSpinBox, FloatSpinBox]:
    """Frangi's alpha, beta and c (gamma, 0 = automatic) boxes, defaults as scikit-image's."""
    alpha = number_box(
        "alpha",
        FRANGI_DEFAULT,
        decimals=3,
        min=0.0,
        max=100.0,
        step=0.05,
        tooltip="Vesselness: sensitivity to plate-like structures (3D only), > 0.",
    )
    beta = number_box(
        "beta",
        FRANGI_DEFAULT,
        decimals=3,
        min=0.0,
        max=100.0,
        step=0.05,
        tooltip="Vesselness: sensitivity to blob-like structures, > 0.",
    )
    gamma = number_box(
        "c (0 = auto)", 0.0, decimals=6, min=0.0, max=1e12, step=1.0, tooltip=gamma_tooltip
    )
    return alpha, beta, gamma


def sigma_box(value: float, tooltip: str) -> FloatSpinBox:
    """The "sigma" box of both panels: 0 to 1e6, four decimals."""
    return number_box("sigma", value, decimals=4, min=0.0, max=1e6, step=0.1, tooltip=tooltip)


def _fits(layer) -> bool:
    return is_plain_image(layer, ndims=(2, 3, 4))


class _DerivativePanel(Panel):
    """What both panels share: the image picker, sigma and the frame-by-frame plan."""

    #: the warm-up operation of the panel's kernels (see `Panel.prepare_kernels`)
    kernel_operation = "hessian"

    def __init__(self, viewer, sigma: FloatSpinBox, widgets: list):
        self.image = layer_picker(
            viewer,
            _fits,
            "image",
            "2D or 3D Image layer; a 4D layer is read as a time-lapse (t, z, y, x) and "
            "processed frame by frame.",
        )
        self.sigma = sigma
        self.sigma_in_voxels = CheckBox(
            text="sigma in voxels",
            value=False,
            tooltip="Checked: sigma is a number of voxels on every axis. Unchecked: sigma is "
            "in the units of the layer's scale (physical units).",
        )
        super().__init__(viewer, [self.image, self.sigma, self.sigma_in_voxels, *widgets])
        follow_layers(viewer, self)
        self.prepare_kernels(self.image, (self.kernel_operation,))

    def _source(self):
        """(layer, data, number of spatial axes, spacing) of the chosen image."""
        layer = self.image.value
        data = layer_data(layer, "image")
        if data.ndim not in (2, 3, 4):
            raise ValueError(f"image: layer '{layer.name}' must be 2D, 3D or 4D, got {data.ndim}D")
        spatial = min(data.ndim, 3)
        spacing = tuple(float(step) for step in np.asarray(layer.scale)[-spatial:])
        return layer, data, spatial, spacing

    def _physical_sigma(self, spacing: tuple):
        """The sigma to give the core: in physical units, per axis when given in voxels."""
        sigma = float(self.sigma.value)
        if self.sigma_in_voxels.value and sigma != 0:
            return tuple(sigma * step for step in spacing)
        return sigma


def over_frames(data, spatial: int, make_plan: Callable[[object], Plan]) -> Plan:
    """``make_plan(data)``, or one frame at a time when `data` has a leading time axis."""
    if data.ndim == spatial:
        return make_plan(data)
    return Plan.over_frames(lambda index: make_plan(data[index]), data.shape[0])


def finite_abs_max(array: np.ndarray) -> float:
    """Largest finite ``|value|`` of `array` (0 when it has none), a few MiB at a time."""
    if is_lazy(array):  # a result in a zarr store: one chunked pass
        import dask.array as da

        return float(da.where(da.isfinite(array), abs(array), 0).max().compute())
    rows = max(1, 2**22 // max(1, math.prod(array.shape[1:])))
    largest = 0.0
    for start in range(0, array.shape[0], rows):
        block = np.abs(array[start : start + rows])
        block[~np.isfinite(block)] = 0
        largest = max(largest, float(block.max()))
    return largest


def symmetric_limits(array: np.ndarray) -> tuple[float, float]:
    """Contrast limits ``(-m, m)``, ``m`` the largest finite ``|value|`` (1 if that is 0)."""
    largest = finite_abs_max(array) or 1.0
    return (-largest, largest)


def magnitude_limits(array: np.ndarray) -> tuple[float, float]:
    """Contrast limits ``(0, m)`` of a non-negative result (``m = 1`` if it is all 0)."""
    return (0.0, finite_abs_max(array) or 1.0)


class HessianPanel(_DerivativePanel):
    """Eigenvalues of every voxel's Hessian matrix, and optionally Frangi's vesselness.

    One Image layer per eigenvalue ("name λ1(sigma=2)", ...) with a diverging
    colormap and contrast limits symmetric about 0; with "Frangi
    vesselness" checked, also "name vesselness(sigma=2, ridges=bright)",
    computed from the same eigenvalues in the same run.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers the panel reads and where the results go.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        sigma = sigma_box(
            1.0,
            "Scale of the Gaussian derivatives (> 0), in the layer's units "
            "(or in voxels, see below).",
        )
        self.order = ComboBox(
            label="order",
            choices=list(EIGENVALUE_ORDERS),
            value="descending",
            tooltip="descending: λ1 ≥ λ2 ≥ λ3; ascending: λ1 ≤ λ2 ≤ λ3; abs: "
            "|λ1| ≤ |λ2| ≤ |λ3| (Frangi's convention).",
        )
        self.vesselness = CheckBox(
            text="Frangi vesselness",
            value=False,
            tooltip="Also compute Frangi's vesselness (tubular structures) from the same "
            "eigenvalues.",
        )
        self.ridges = ComboBox(
            label="ridges",
            choices=list(RIDGES),
            value="bright",
            tooltip="Vesselness: enhance bright tubes on a dark background, or dark tubes on "
            "a bright one.",
        )
        self.alpha, self.beta, self.gamma = frangi_boxes(
            "Vesselness: sensitivity to overall contrast (Frangi's c, scikit-image's "
            "gamma); 0 = automatic, half of the largest Hessian norm."
        )
        super().__init__(
            viewer,
            sigma,
            [self.order, self.vesselness, self.ridges, self.alpha, self.beta, self.gamma],
        )
        self.vesselness.changed.connect(self._update_enabled)
        self._update_enabled()

    def _update_enabled(self, *_) -> None:
        for widget in (self.ridges, self.alpha, self.beta, self.gamma):
            widget.enabled = bool(self.vesselness.value)

    def make_job(self) -> Job:
        """Read the widgets and the layer; build the eigenvalue (and vesselness) job."""
        layer, data, spatial, spacing = self._source()
        if not self.sigma.value > 0:
            raise ValueError(f"sigma must be > 0 for Hessian eigenvalues, got {self.sigma.value}")
        sigma = self._physical_sigma(spacing)
        order = self.order.value
        dtype = result_float_dtype(data.dtype)
        voxels = math.prod(data.shape)
        title = f"Hessian eigenvalues of '{layer.name}'"
        store = None
        if is_lazy(data):  # Dask/zarr: chunk by chunk, into memory or a zarr store
            sizing = derivative_sizing(data.shape, spatial, sigma, spacing, finite_depth=2)
            lazy = lazy_over_frames(
                as_dask(data, "hessian-eigenvalues", **sizing),
                spatial,
                lambda volume: hessian_eigenvalues(volume, sigma, spacing, order),
            )
            total_bytes = voxels * dtype.itemsize * (spatial + bool(self.vesselness.value))
            eigenvalue_plan, memory, store = self.lazy_plan(lazy, title, nbytes=total_bytes)
        else:
            eigenvalue_plan = over_frames(
                data,
                spatial,
                lambda volume: self.device_plan(
                    lambda: hessian_eigenvalues_plan(volume, sigma, spacing, order),
                    lambda: _gpu.hessian_eigenvalues_plan(volume, sigma, spacing, order),
                ),
            )
            memory = voxels * spatial * dtype.itemsize * (1 + WORK_FRACTION) + WORK_BYTES
        parameters = {"sigma": sigma, "spacing": spacing, "order": order}
        vesselness = bool(self.vesselness.value)
        if vesselness:
            frangi = {
                "alpha": float(self.alpha.value),
                "beta": float(self.beta.value),
                "gamma": float(self.gamma.value) or None,
                "ridges": self.ridges.value,
            }
            # checks alpha, beta, gamma now and counts the steps, on a stand-in of the
            # eigenvalues' shape that takes no memory (never computed)
            stand_in = np.broadcast_to(np.zeros((), dtype), (*data.shape, spatial))
            probe = frangi_plan(stand_in, **frangi)
            if store is None:
                memory += voxels * dtype.itemsize
            parameters["vesselness"] = frangi

        def vesselness_plan(eigenvalues) -> Plan:
            """Frangi's measure of the computed eigenvalues (chunk by chunk if lazy)."""
            if store is None and not is_lazy(data):
                return self.device_plan(
                    lambda: frangi_plan(eigenvalues, **frangi),
                    lambda: _gpu.frangi_plan(eigenvalues, **frangi),
                )
            chunked = as_dask(eigenvalues).rechunk(eigenvalue_chunks)
            plan, _, _ = self.lazy_plan(
                frangi_vesselness(chunked, **frangi),
                "vesselness",
                store=sibling_store(store, "vesselness"),
            )
            return plan

        if vesselness and is_lazy(data):
            import dask.array as da

            eigenvalue_chunks = lazy.chunks
            probe = vesselness_plan(da.zeros(lazy.shape, dtype, chunks=eigenvalue_chunks))
        total = eigenvalue_plan.total + (probe.total if vesselness else 0)

        def run():
            eigenvalues = yield from eigenvalue_plan.steps()
            limits = [symmetric_limits(eigenvalues[..., k]) for k in range(spatial)]
            measure = None
            if vesselness:
                measure = yield from vesselness_plan(eigenvalues).steps()
                measure = (measure, magnitude_limits(measure))
            return eigenvalues, limits, measure

        place, name = geometry(layer), layer.name
        key_parameters = {"sigma": sigma, "order": order if order != "descending" else None}
        if vesselness:
            vesselness_parameters = {
                "sigma": sigma,
                "ridges": frangi["ridges"],
                "alpha": frangi["alpha"] if frangi["alpha"] != FRANGI_DEFAULT else None,
                "beta": frangi["beta"] if frangi["beta"] != FRANGI_DEFAULT else None,
                "gamma": frangi["gamma"],
            }

        def to_layers(result):
            eigenvalues, limits, measure = result
            layers = [
                (
                    eigenvalues[..., k],
                    {
                        "name": result_name(name, f"λ{k + 1}", **key_parameters),
                        "colormap": SIGNED_COLORMAP,
                        "contrast_limits": limits[k],
                        **place,
                    },
                    "image",
                )
                for k in range(spatial)
            ]
            if measure is not None:
                values, value_limits = measure
                kwargs = {
                    "name": result_name(name, "vesselness", **vesselness_parameters),
                    "colormap": MAGNITUDE_COLORMAP,
                    "contrast_limits": value_limits,
                    **place,
                }
                layers.append((values, kwargs, "image"))
            return layers

        return Job(
            title=title,
            plan=Plan(total, run, "Hessian eigenvalues"),
            to_layers=to_layers,
            sources=[layer],
            memory_bytes=int(memory),
            operation="hessian_eigenvalues",
            parameters=parameters,
            store=store,
        )


class GradientPanel(_DerivativePanel):
    """Gradient magnitude of every voxel, and optionally one layer per gradient component.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers the panel reads and where the results go.
    """

    kernel_operation = "gradient"

    def __init__(self, viewer: napari.viewer.Viewer):
        sigma = sigma_box(
            0.0,
            "Scale of the Gaussian derivatives in the layer's units (or in voxels, "
            "see below); 0 = finite differences, as numpy.gradient.",
        )
        self.components = CheckBox(
            text="components",
            value=False,
            tooltip="Also add one layer per axis with the derivative along that axis.",
        )
        super().__init__(viewer, sigma, [self.components])

    def make_job(self) -> Job:
        """Read the widgets and the layer; build the gradient job."""
        layer, data, spatial, spacing = self._source()
        sigma = self._physical_sigma(spacing)
        components = bool(self.components.value)

        voxels = math.prod(data.shape)
        dtype = result_float_dtype(data.dtype)
        results = voxels * dtype.itemsize * (1 + (spatial if components else 0))
        memory = results * (1 + WORK_FRACTION) + WORK_BYTES
        title = f"Gradient of '{layer.name}'"
        store = None

        def make(magnitude: bool) -> Plan:
            nonlocal memory, store
            if not is_lazy(data):
                return over_frames(
                    data,
                    spatial,
                    lambda volume: self.device_plan(
                        lambda: gradient_plan(volume, spacing, sigma, magnitude=magnitude),
                        lambda: _gpu.gradient_plan(volume, spacing, sigma, magnitude=magnitude),
                    ),
                )
            # Dask/zarr: chunk by chunk, into memory or zarr stores (one folder)
            function = gradient_magnitude if magnitude else gradient_vectors
            sizing = derivative_sizing(data.shape, spatial, sigma, spacing, finite_depth=1)
            lazy = lazy_over_frames(
                as_dask(data, "gradient", **sizing),
                spatial,
                lambda volume: function(volume, spacing, sigma),
            )
            if magnitude:
                plan, memory, store = self.lazy_plan(lazy, title, nbytes=results)
            else:
                plan, extra, _ = self.lazy_plan(
                    lazy, title, store=sibling_store(store, "components")
                )
                memory += extra
            return plan

        plans = [make(True), *([make(False)] if components else [])]

        def run():
            magnitude = yield from plans[0].steps()
            outcome = [(magnitude, magnitude_limits(magnitude))]
            if components:
                vectors = yield from plans[1].steps()
                outcome += [
                    (vectors[..., k], symmetric_limits(vectors[..., k])) for k in range(spatial)
                ]
            return outcome

        names = [result_name(layer, "|∇|", sigma=sigma)]
        if components:
            names += [
                result_name(layer, f"∂/∂{axis}", sigma=sigma)
                for axis in axis_names(layer, spatial)
            ]

        place = geometry(layer)

        def to_layers(outcome):
            return [
                (
                    values,
                    {
                        "name": name,
                        "colormap": MAGNITUDE_COLORMAP if index == 0 else SIGNED_COLORMAP,
                        "contrast_limits": limits,
                        **place,
                    },
                    "image",
                )
                for index, (name, (values, limits)) in enumerate(zip(names, outcome, strict=True))
            ]

        return Job(
            title=title,
            plan=Plan(sum(plan.total for plan in plans), run, "gradient"),
            to_layers=to_layers,
            sources=[layer],
            memory_bytes=int(memory),
            operation="gradient",
            parameters={"sigma": sigma, "spacing": spacing, "components": components},
            store=store,
        )
