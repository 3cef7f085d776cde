"""The panels' "GPU" box: shown only with a device; checked, the run takes the device path.

NumPy stands in for the device (``_device.stand_in``), so the piecewise GPU path runs
here and its layers are compared with the CPU path's.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_panel
from napari_voxelwise import _device, _gpu
from napari_voxelwise._widgets.differential import GradientPanel, HessianPanel
from napari_voxelwise._widgets.vesselness import VesselnessPanel

PANELS = [HessianPanel, GradientPanel, VesselnessPanel]


@pytest.fixture
def no_device(monkeypatch):
    monkeypatch.setattr(_device, "_available", False)


@pytest.mark.parametrize("panel_class", PANELS)
def test_no_gpu_box_without_a_device(viewer, no_device, panel_class):
    panel = panel_class(viewer)
    assert not panel.gpu_shown
    assert panel.gpu not in list(panel)


@pytest.mark.parametrize("panel_class", PANELS)
def test_checked_gpu_box_runs_on_the_device_and_gives_numpy_layers(
    viewer, monkeypatch, panel_class
):
    data = np.random.default_rng(0).random((24, 20, 18)).astype(np.float32)
    layer = viewer.add_image(data, name="cells", scale=(2.0, 1.0, 1.0))
    used = []
    for name in ("hessian_eigenvalues_plan", "gradient_plan", "vesselness_plan"):
        real = getattr(_gpu, name)
        monkeypatch.setattr(
            _gpu,
            name,
            lambda *a, _real=real, _name=name, **k: used.append(_name) or _real(*a, **k),
        )
    with _device.stand_in(np, 2_000_000):
        panel = panel_class(viewer)
        assert panel.gpu_shown and panel.gpu in list(panel)
        panel.image.value = layer
        run_panel(panel)  # the CPU path
        expected = {lay.name: np.array(lay.data) for lay in viewer.layers if lay is not layer}
        assert not used
        panel.gpu.value = True
        run_panel(panel)  # the same layers, updated from the device path
    assert used
    for name, values in expected.items():
        result = viewer.layers[name].data
        assert isinstance(result, np.ndarray)
        np.testing.assert_allclose(result, values, rtol=1e-5, atol=1e-5)
