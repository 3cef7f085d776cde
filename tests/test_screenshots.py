"""The documentation's screenshot script runs, and every image shows something."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
from skimage import io

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "make_screenshots.py"
NAMES = [
    "statistics.png",
    "density.png",
    "masking.png",
    "hessian.png",
    "gradient.png",
    "vesselness.png",
    "ome-zarr.png",
]


def load_script():
    spec = importlib.util.spec_from_file_location("make_screenshots", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_screenshots_show_the_panels_and_their_results(qapp, tmp_path):
    script = load_script()
    written = script.main(tmp_path / "images")

    assert [path.name for path in written] == NAMES
    width, height = script.WINDOW_SIZE
    for path in written:
        assert path.parent == tmp_path / "images"
        image = io.imread(path)[..., :3]
        rows, columns = image.shape[:2]
        # the whole window (any device pixel ratio from 1 to 2), not the canvas only
        assert height * 0.5 <= rows <= height * 2.5, (path.name, image.shape)
        assert width * 0.5 <= columns <= width * 2.5, (path.name, image.shape)
        # the canvas (the middle of the window) shows data, not one flat colour
        middle = image[rows // 4 : 3 * rows // 4, columns // 3 : 2 * columns // 3]
        colours = np.unique(middle.reshape(-1, 3), axis=0)
        assert len(colours) > 50, (path.name, len(colours))
        assert middle.std() > 10, (path.name, middle.std())
        # the dock on the right holds the panel: not empty either
        dock = image[rows // 20 : rows // 3, -columns // 5 :]
        assert dock.std() > 10, (path.name, dock.std())
