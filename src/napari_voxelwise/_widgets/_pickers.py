"""Layer pickers and layer-geometry glue shared by the masking and differential panels."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

import numpy as np
from magicgui.widgets import ComboBox

#: napari's default axis labels are the axis numbers counted from the end ("-3", "-2", "-1")
_DEFAULT_AXIS_LABEL = re.compile(r"^-?\d+$")
#: conventional names of the last spatial axes, used when a layer has no axis labels
_SPATIAL_NAMES = ("z", "y", "x")


def layer_picker(viewer, fits: Callable[[object], bool], label: str, tooltip: str) -> ComboBox:
    """A ComboBox listing the viewer's layers for which ``fits(layer)`` is true.

    Its choices are computed when asked; the owning panel refreshes them with
    :func:`follow_layers`.
    """

    def choices(_widget=None):
        return [(layer.name, layer) for layer in viewer.layers if fits(layer)]

    return ComboBox(label=label, choices=choices, tooltip=tooltip)


def follow_layers(viewer, panel) -> None:
    """Refresh `panel`'s layer pickers when layers are added, removed, reordered or renamed."""
    events = viewer.layers.events
    emitters = (events.inserted, events.removed, events.reordered, events.renamed)
    for emitter in emitters:
        emitter.connect(panel.reset_choices)

    def forget(*_):
        for emitter in emitters:
            # a closing viewer may have dismantled its emitters already
            with contextlib.suppress(AttributeError, RuntimeError):
                emitter.disconnect(panel.reset_choices)

    panel.native.destroyed.connect(forget)


def is_plain_image(layer, ndims=None) -> bool:
    """True for a single-channel (not RGB) Image layer, optionally of some dimensionalities."""
    from napari.layers import Image

    if not isinstance(layer, Image) or layer.rgb:
        return False
    return ndims is None or layer.ndim in ndims


def geometry(layer) -> dict:
    """``scale``, ``translate``, ``rotate``, ``shear`` and ``affine`` of `layer`.

    Result layers with the source's dimensionality get all of them, so that
    they overlay the source exactly. Copies: napari hands out its own arrays,
    and changing those would move the layer.
    """
    return {
        "scale": np.array(layer.scale, dtype=float),
        "translate": np.array(layer.translate, dtype=float),
        "rotate": np.array(layer.rotate, dtype=float),
        "shear": np.array(layer.shear, dtype=float),
        "affine": np.array(layer.affine.affine_matrix, dtype=float),
    }


def require_axis_aligned(layer, name: str) -> None:
    """Raise a ValueError naming `name` if `layer` is rotated, sheared or has an affine.

    Geometry computed from ``scale`` and ``translate`` alone (mask
    coordinates, crops) would be wrong for such layers.
    """
    ndim = layer.ndim
    aligned = (
        np.allclose(layer.rotate, np.eye(ndim))
        and np.allclose(layer.shear, 0)
        and np.allclose(layer.affine.affine_matrix, np.eye(ndim + 1))
    )
    if not aligned:
        raise ValueError(
            f"{name}: layer '{layer.name}' is rotated, sheared or has an affine transform; "
            "only scale and translate are supported here"
        )


def axis_names(layer, count: int) -> list[str]:
    """Names of the last `count` axes of `layer`: its axis labels, or z/y/x when it has none."""
    labels = [str(label) for label in getattr(layer, "axis_labels", ())][-count:]
    if len(labels) == count and not any(_DEFAULT_AXIS_LABEL.match(label) for label in labels):
        return labels
    if count <= len(_SPATIAL_NAMES):
        return list(_SPATIAL_NAMES[-count:])
    return [f"axis {axis}" for axis in range(layer.ndim - count, layer.ndim)]
