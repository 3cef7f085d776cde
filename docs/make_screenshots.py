"""Make the documentation screenshots: one real napari window per panel, saved as PNG.

Usage (a display is needed; on a headless machine run it under Xvfb)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots.py [OUTDIR]

OUTDIR defaults to ``docs/images``. Each shot opens a fresh viewer with a
sample of the plugin, docks the panel through napari's plugin loader, sets its
widgets, runs it, arranges the view and saves the whole window
(``canvas_only=False``), then closes the viewer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import napari
import numpy as np

PLUGIN = "napari-voxelwise"
#: window size of every shot (pixels; the PNG has this size times the device pixel ratio)
WINDOW_SIZE = (1400, 900)
#: width of the dock holding the panel
DOCK_WIDTH = 380
DEFAULT_OUTDIR = Path(__file__).resolve().parent / "images"


def _dock(viewer: napari.Viewer, panel_name: str):
    """Dock the panel `panel_name` of the plugin; return the panel (magicgui Container)."""
    from qtpy.QtCore import Qt

    dock, panel = viewer.window.add_plugin_dock_widget(PLUGIN, panel_name)
    viewer.window._qt_window.resizeDocks([dock], [DOCK_WIDTH], Qt.Horizontal)
    return panel


def _run(panel) -> None:
    """Run the panel as its button would, and wait for the result layers."""
    panel.run()
    panel.runner.wait(120_000)


def _layer(viewer: napari.Viewer, part: str):
    """The one layer whose name contains `part`."""
    (layer,) = [layer for layer in viewer.layers if part in layer.name]
    return layer


def _middle_slice(viewer: napari.Viewer, axis_label: str) -> None:
    """Show the middle of the viewer's axis labelled `axis_label`."""
    axis = list(viewer.dims.axis_labels).index(axis_label)
    viewer.dims.set_current_step(axis, viewer.dims.nsteps[axis] // 2)


def _project_through_z(viewer: napari.Viewer) -> None:
    """Project every layer through the whole z axis (each with its own projection mode),
    one layer per grid cell, the source first."""
    axis = list(viewer.dims.axis_labels).index("z")
    thickness = list(viewer.dims.thickness)
    thickness[axis] = viewer.dims.range[axis].stop - viewer.dims.range[axis].start + 10
    viewer.dims.thickness = thickness
    _middle_slice(viewer, "z")
    viewer.canvas.grid.enabled = True


def statistics_shot(viewer: napari.Viewer) -> None:
    """Variance of the noisy 4D stack over time, and the norm of every time point."""
    viewer.open_sample(PLUGIN, "noisy_stack")
    panel = _dock(viewer, "Voxel statistics")
    panel.layer_combo.value = viewer.layers["noisy stack"]
    panel.axis_combo.value = 0  # t
    panel.statistic_combo.value = "var"
    panel.ddof_spin.value = 1
    _run(panel)
    panel.run_norms()
    panel.runner.wait(120_000)
    viewer.layers["noisy stack"].visible = False
    result = _layer(viewer, " var(")
    result.colormap = "viridis"
    result.contrast_limits = (0, float(np.percentile(result.data, 99.5)))
    viewer.layers.selection.active = result
    _middle_slice(viewer, "z")


def density_shot(viewer: napari.Viewer) -> None:
    """Block density of the binary sample, drawn over it."""
    viewer.open_sample(PLUGIN, "binary_density")
    panel = _dock(viewer, "Density heatmap")
    panel.layer_combo.value = viewer.layers["binary density"]
    panel.window_edit.value = "4, 8"  # square blocks: the pixels are twice as tall as wide
    panel.mode_combo.value = "block"
    _run(panel)
    viewer.layers["binary density"].contrast_limits = (0, 3)  # dim source under the heatmap
    viewer.layers["binary density"].colormap = "gray"
    result = _layer(viewer, " density(")
    result.opacity = 0.85
    viewer.layers.selection.active = result


def masking_shot(viewer: napari.Viewer) -> None:
    """Tubes and blobs kept inside a Labels mask; random spots filtered by the same mask."""
    from scipy import ndimage

    viewer.open_sample(PLUGIN, "tubes_and_blobs")
    source = viewer.layers["tubes and blobs"]
    smooth = ndimage.gaussian_filter(source.data, 1.0)
    bright, _ = ndimage.label(smooth > 0.3)
    viewer.add_labels(bright, name="bright regions", scale=source.scale)
    shape = np.asarray(source.data.shape)
    voxels = np.random.default_rng(0).random((800, 3)) * (shape - 1)
    voxels[:, 0] = shape[0] // 2  # all in the slice shown
    points = viewer.add_points(
        voxels,
        name="spots",
        scale=source.scale,
        size=1.2,
        face_color="#5f8fbf",
        border_width=0,
        opacity=0.6,
    )
    panel = _dock(viewer, "Mask filter")
    panel.target.value = source
    panel.mask.value = viewer.layers["bright regions"]
    panel.fill_value.value = "NaN"
    _run(panel)
    panel.target.value = points
    _run(panel)
    kept = _layer(viewer, " inside(")
    kept.face_color = "#7fff5f"
    kept.size = 1.6
    kept.opacity = 1.0
    panel.target.value = source  # the panel as the image run was set up
    source.visible = False
    result = _layer(viewer, " masked(")
    result.contrast_limits = (0, 1)
    labels = viewer.layers["bright regions"]
    labels.contour = 1
    viewer.layers.move(viewer.layers.index(labels), len(viewer.layers))
    viewer.layers.selection.active = result
    _middle_slice(viewer, "z")


def hessian_shot(viewer: napari.Viewer) -> None:
    """Eigenvalues and vesselness of the tubes-and-blobs sample, projected through z."""
    viewer.open_sample(PLUGIN, "tubes_and_blobs")
    source = viewer.layers["tubes and blobs"]
    panel = _dock(viewer, "Hessian eigenvalues")
    panel.image.value = source
    panel.sigma.value = 2.0
    panel.order.value = "descending"
    panel.vesselness.value = True
    _run(panel)
    viewer.layers.remove(_layer(viewer, " λ1("))
    # the most negative λ2, λ3 (bright tubes and blobs) and the brightest source and vesselness
    source.projection_mode = "max"
    for part, mode in ((" λ2(", "min"), (" λ3(", "min"), (" vesselness(", "max")):
        _layer(viewer, part).projection_mode = mode
    _project_through_z(viewer)
    viewer.layers.selection.active = _layer(viewer, " vesselness(")


def gradient_shot(viewer: napari.Viewer) -> None:
    """Gradient magnitude and the y and x derivatives of the tubes-and-blobs sample."""
    viewer.open_sample(PLUGIN, "tubes_and_blobs")
    source = viewer.layers["tubes and blobs"]
    panel = _dock(viewer, "Gradient")
    panel.image.value = source
    panel.sigma.value = 1.5
    panel.components.value = True
    _run(panel)
    viewer.layers.remove(_layer(viewer, " ∂/∂z("))
    _middle_slice(viewer, "z")
    viewer.canvas.grid.enabled = True  # one layer per cell, the source first
    viewer.layers.selection.active = _layer(viewer, " |∇|(")


def vesselness_shot(viewer: napari.Viewer) -> None:
    """Multi-scale vesselness and the best-scale map of the tubes-and-blobs sample."""
    viewer.open_sample(PLUGIN, "tubes_and_blobs")
    source = viewer.layers["tubes and blobs"]
    panel = _dock(viewer, "Vesselness")
    panel.image.value = source
    panel.smallest.value, panel.largest.value, panel.count.value = 1.0, 4.0, 7
    panel.best_scale.value = True
    panel.floor.value = 0.3  # the scale of tubes, not of the background's faint response
    _run(panel)
    source.projection_mode = "max"
    _layer(viewer, " vesselness(").projection_mode = "max"
    # the scale of the strongest response along each line of sight
    best = _layer(viewer, " best scale(")
    best.projection_mode = "max"
    _project_through_z(viewer)
    viewer.layers.selection.active = best


def ome_zarr_shot(viewer: napari.Viewer) -> None:
    """The batch command's OME-Zarr outputs opened over their OME-Zarr source (the example of
    docs/big-data.md), with the Density heatmap panel that places its maps the same way."""
    import tempfile
    import warnings

    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscale

    from napari_voxelwise._cli import main as batch

    folder = Path(tempfile.mkdtemp(prefix="ome-zarr-shot-"))
    rng = np.random.default_rng(1)
    embryo = rng.normal(100, 10, (4, 16, 64, 64)).astype(np.float32)
    embryo[:, 6:10, 20:44, 28:36] += 80  # a bright bar
    axes = [{"name": "t", "type": "time", "unit": "second"}] + [
        {"name": name, "type": "space", "unit": "micrometer"} for name in "zyx"
    ]
    placement = [[{"type": "scale", "scale": [30.0, 2.0, 0.5, 0.5]}]]
    group = zarr.open_group(str(folder / "embryo.ome.zarr"), mode="w", zarr_format=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        write_multiscale(
            [embryo], group, fmt=FormatV04(), axes=axes, coordinate_transformations=placement
        )
    source = str(folder / "embryo.ome.zarr")
    density_options = ["--window", "1,4,4", "--threshold", "150"]
    for arguments in (
        ["variance", source, "-o", str(folder / "variance.ome.zarr"), "--axis", "0"],
        ["density", source, "-o", str(folder / "density.ome.zarr"), *density_options],
    ):
        assert batch([*arguments, "--quiet"]) == 0, arguments
    (embryo_layer,) = viewer.open(source, plugin="napari-ome-zarr")
    (variance,) = viewer.open(str(folder / "variance.ome.zarr"), plugin="napari-ome-zarr")
    (density,) = viewer.open(str(folder / "density.ome.zarr"), plugin="napari-ome-zarr")
    embryo_layer.colormap = "gray"
    variance.colormap, variance.blending, variance.opacity = "viridis", "additive", 0.5
    density.colormap, density.blending, density.opacity = "inferno", "additive", 0.7
    density.contrast_limits = (0, 1)
    panel = _dock(viewer, "Density heatmap")
    panel.layer_combo.value = embryo_layer
    panel.window_edit.value = "1, 4, 4"
    panel.threshold_spin.value = 150
    viewer.layers.selection.active = density
    _middle_slice(viewer, "z")


#: file name -> what to show in it
SHOTS: dict[str, Callable[[napari.Viewer], None]] = {
    "statistics.png": statistics_shot,
    "density.png": density_shot,
    "masking.png": masking_shot,
    "hessian.png": hessian_shot,
    "gradient.png": gradient_shot,
    "vesselness.png": vesselness_shot,
    "ome-zarr.png": ome_zarr_shot,
}


def shoot(path: Path, arrange: Callable[[napari.Viewer], None]) -> Path:
    """Open a viewer, `arrange` it, save the whole window to `path`, close the viewer."""
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    try:
        viewer.window.resize(*WINDOW_SIZE)
        arrange(viewer)
        viewer.reset_view()
        for _ in range(3):  # let Qt lay out the dock and draw the canvas
            QApplication.processEvents()
        _close_notifications(viewer)
        viewer.window.screenshot(str(path), canvas_only=False)
    finally:
        viewer.close()
    return path


def _close_notifications(viewer: napari.Viewer) -> None:
    """Close the notification pop-ups (e.g. napari's deprecation notices) over the canvas."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    for popup in viewer.window._qt_window.findChildren(NapariQtNotification):
        popup.close()
    QApplication.processEvents()


def main(outdir: str | Path = DEFAULT_OUTDIR) -> list[Path]:
    """Write every screenshot into `outdir` (created if needed); return their paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    return [shoot(outdir / name, arrange) for name, arrange in SHOTS.items()]


if __name__ == "__main__":
    for written in main(*sys.argv[1:2]):
        print(f"{written} ({written.stat().st_size / 1024:.0f} KiB)")
