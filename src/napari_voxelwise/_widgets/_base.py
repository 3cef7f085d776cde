"""What every panel shares: the Run/Cancel button, the runner, geometry helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import Container, PushButton

from .._runner import Job, Runner

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
        super().__init__(widgets=[*widgets, self.run_button])
        self.viewer = viewer
        self.runner = Runner(viewer, self.run_button, on_result=self.on_result)
        self.run_button.changed.connect(self.run)
        runner = self.runner
        self.native.destroyed.connect(lambda *_: runner.close())

    def run(self) -> None:
        """Start a run, or cancel the one in progress (the button's action)."""
        self.runner.toggle(self.make_job)

    def make_job(self) -> Job:  # pragma: no cover - every panel defines it
        raise NotImplementedError

    def on_result(self, layers: list) -> None:
        """Called with the layers added after a successful run."""


def layer_data(layer, name: str = "layer"):
    """The data of `layer` as it is now (level 0 of a multiscale), or a ValueError."""
    if layer is None:
        raise ValueError(f"{name}: choose a layer first")
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return data


def spatial_geometry(layer, keep: slice | list | None = None) -> dict:
    """``scale``/``translate`` of `layer` as new float arrays (optionally some axes only).

    Copies: napari hands out its own arrays, and changing those would move the layer.
    """
    scale = np.array(layer.scale, dtype=float)
    translate = np.array(layer.translate, dtype=float)
    if keep is not None:
        scale, translate = scale[keep], translate[keep]
    return {"scale": scale, "translate": translate}
