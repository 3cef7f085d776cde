"""The chunked, threaded paths give what one chunk gives, on awkward shapes.

Tasks are forced to be tiny (a few hundred bytes) so that chunk boundaries
fall everywhere: inside blocks, next to halos, on size-1 axes and on
non-contiguous views.
"""

from __future__ import annotations

import numpy as np
import pytest

import napari_voxelwise as vw
from napari_voxelwise import _plan

SHAPES = [(7, 13, 5), (1, 17, 9), (11, 1, 6), (5, 6, 1), (3, 2, 29)]
VIEWS = {
    "contiguous": lambda a: a,
    "transposed": lambda a: a.transpose(2, 0, 1),
    "stepped": lambda a: a[::2, :, ::-1],
}

CALLS = {
    "voxel_variance": lambda a: vw.voxel_variance(a, axis=1, ddof=0),
    "axis_statistic cv": lambda a: vw.axis_statistic(a, "cv", axis=-1),
    "axis_statistic max": lambda a: vw.axis_statistic(a, "max", axis=0),
    "axis_statistic median": lambda a: vw.axis_statistic(a, "median", axis=1),
    "skipna mean": lambda a: vw.axis_statistic(a, "mean", axis=0, skipna=True),
    "frame_norms": lambda a: vw.frame_norms(a, axis=-1),
    "density block pad": lambda a: vw.density_map(a, (2, 3), threshold=0.5, edge="pad"),
    "density sliding": lambda a: vw.density_map(a, (1, 2), mode="sliding", threshold=0.5),
    "apply_mask": lambda a: vw.apply_mask(a, a[0] > 0.5, fill_value=np.nan),
    "mask_filter": lambda a: vw.mask_filter(a, a[..., 0] > 0.3)[0],
    "gradient": lambda a: (
        vw.gradient_vectors(a) if min(a.shape) > 1 else vw.gradient_magnitude(a, sigma=1.0)
    ),
    "gradient magnitude": lambda a: vw.gradient_magnitude(a, spacing=(0.5, 1.0, 3.0)),
    "hessian differences": lambda a: vw.hessian_matrix(a, sigma=None, spacing=(2.0, 1.0, 0.5)),
    "eigenvalues differences": lambda a: vw.hessian_eigenvalues(a, sigma=None),
    "hessian gaussian": lambda a: vw.hessian_matrix(a, sigma=1.3, spacing=(1.0, 2.0, 1.0)),
    "eigenvalues": lambda a: vw.hessian_eigenvalues(a, sigma=1.0, order="abs"),
}


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_many_small_chunks_equal_one_chunk(name, view, shape, monkeypatch):
    data = VIEWS[view](np.random.default_rng(0).random(shape).astype(np.float32))
    data[data > 0.97] = np.nan  # some NaNs to carry through the chunks
    try:
        whole = CALLS[name](data)
    except ValueError as error:  # e.g. a window larger than a size-1 axis
        with pytest.raises(ValueError, match=str(error).split()[0]):
            monkeypatch.setattr(_plan, "TASK_BYTES", 256)
            CALLS[name](data)
        return
    monkeypatch.setattr(_plan, "TASK_BYTES", 256)
    for workers in (1, 3):
        chunked = CALLS[name](data) if workers == 1 else _with_workers(name, data, workers)
        if name == "frame_norms":  # partial sums merge in another order
            np.testing.assert_allclose(chunked, whole, rtol=1e-12)
        else:
            np.testing.assert_array_equal(chunked, whole)


def _with_workers(name, data, workers):
    """Call `name` with an explicit thread count (through the default-workers hook)."""
    original = _plan.default_workers
    try:
        _plan.default_workers = lambda: workers
        return CALLS[name](data)
    finally:
        _plan.default_workers = original


def test_task_count_is_respected(monkeypatch):
    """With tiny tasks a plan really has many steps (the test above is not vacuous)."""
    from napari_voxelwise.statistics import statistic_plan

    monkeypatch.setattr(_plan, "TASK_BYTES", 256)
    data = np.ones((7, 13, 5), np.float32)
    assert statistic_plan(data, "var", axis=1, workers=1).total > 1
