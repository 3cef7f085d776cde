"""Lazy results computed chunk by chunk: into memory, into zarr, on a distributed client."""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pytest

from napari_voxelwise import _lazy


def lazy_square(shape=(6, 10, 12), chunks=(2, 5, 7)):
    data = np.random.default_rng(0).random(shape, dtype=np.float32)
    return data, da.from_array(data, chunks=chunks) ** 2


def test_into_memory_chunk_by_chunk():
    data, result = lazy_square()
    plan = _lazy.dask_result_plan(result)
    steps = plan.steps()
    count = 0
    try:
        while True:
            next(steps)
            count += 1
    except StopIteration as stop:
        out = stop.value
    assert count == plan.total >= 2  # progress moves more than once
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, data**2)


def test_into_a_zarr_store(tmp_path):
    data, result = lazy_square()
    store = tmp_path / "out.zarr"
    out = _lazy.dask_result_plan(result, store).compute()
    assert _lazy.is_dask_array(out) and os.path.isdir(store)
    np.testing.assert_array_equal(out.compute(), data**2)
    with pytest.raises(ValueError, match="store"):
        _lazy.dask_result_plan(result, store)  # never overwrite


def test_cancel_between_chunks_leaves_the_rest():
    data, result = lazy_square(chunks=(1, 10, 12))
    computed = []
    tracked = result.map_blocks(lambda block: computed.append(1) or block, dtype=result.dtype)
    steps = _lazy.dask_result_plan(tracked).steps()
    next(steps)
    steps.close()
    assert 0 < len(computed) < data.shape[0]


def test_temporary_store_removed():
    data, result = lazy_square()
    path = _lazy.temporary_store()
    assert not os.path.exists(path) and _lazy.is_temporary_store(path)
    out = _lazy.dask_result_plan(result, path).compute()
    np.testing.assert_array_equal(out.compute(), data**2)
    folder = os.path.dirname(path)
    _lazy.remove_store(path)
    assert not os.path.exists(folder) and not _lazy.is_temporary_store(path)
    keep = os.getcwd()
    _lazy.remove_store(keep)  # not ours: left alone
    assert os.path.isdir(keep)


def test_should_store_by_size():
    _, result = lazy_square()
    assert _lazy.should_store(result.nbytes, available_bytes=result.nbytes)
    assert not _lazy.should_store(result.nbytes, available_bytes=100 * result.nbytes)


def test_distributed_client_is_used():
    import distributed

    data, result = lazy_square()
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2) as client:
        assert "Dask cluster" in _lazy.where_it_runs()
        out = _lazy.dask_result_plan(result).compute()
        assert client.scheduler_info()["workers"]
    np.testing.assert_array_equal(out, data**2)
    assert "this machine" in _lazy.where_it_runs()


def test_a_failing_chunk_raises_its_error():
    import napari_voxelwise as vw

    mask = da.from_array(np.array([1.0, np.nan, 0.0]))
    plan = _lazy.dask_result_plan(vw.apply_mask(da.ones((2, 3), chunks=1), mask))
    with pytest.raises(ValueError, match="mask contains NaN"):
        plan.compute()
