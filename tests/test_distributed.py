"""On a dask.distributed cluster: Zarr-backed arrays through the API and the batch command."""

from __future__ import annotations

import logging
import sys

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster

import napari_voxelwise as vw
from conftest import random_data
from napari_voxelwise._cli import main


@pytest.fixture(scope="module")
def cluster():
    # threads (processes=False) keep this fast; that the tasks could travel to worker
    # processes is checked by test_task_graphs_survive_pickling
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as local_cluster:
        yield local_cluster


@pytest.fixture
def stack_on_disk(tmp_path):
    stack = random_data((16, 20, 18), np.float32, seed=31)
    path = tmp_path / "stack.zarr"
    on_disk = zarr.open_array(
        str(path), mode="w", shape=stack.shape, chunks=(5, 8, 18), dtype="f4"
    )
    on_disk[...] = stack
    return stack, path


def test_api_on_a_cluster_equals_numpy(cluster, stack_on_disk):
    stack, path = stack_on_disk
    lazy = da.from_zarr(str(path))
    with Client(cluster) as client:
        variance, eigenvalues = client.compute(
            [vw.voxel_variance(lazy, axis=0), vw.hessian_eigenvalues(lazy, sigma=1.5)], sync=True
        )
        assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_allclose(variance, vw.voxel_variance(stack, axis=0), rtol=1e-5)
    np.testing.assert_array_equal(eigenvalues, vw.hessian_eigenvalues(stack, sigma=1.5))


def test_batch_command_on_a_cluster(cluster, stack_on_disk, tmp_path):
    stack, path = stack_on_disk
    address = cluster.scheduler_address
    variance_path = tmp_path / "variance.zarr"
    eigenvalues_path = tmp_path / "eigenvalues.npy"
    assert main(["variance", str(path), "-o", str(variance_path), "--scheduler", address]) == 0
    arguments = ["hessian-eigenvalues", str(path), "-o", str(eigenvalues_path), "--sigma", "1.5"]
    assert main([*arguments, "--scheduler", address, "--quiet"]) == 0
    np.testing.assert_allclose(
        da.from_zarr(str(variance_path)).compute(), vw.voxel_variance(stack), rtol=1e-5
    )
    np.testing.assert_array_equal(
        np.load(eigenvalues_path), vw.hessian_eigenvalues(stack, sigma=1.5)
    )


def test_unreachable_scheduler_is_a_clear_error(stack_on_disk, tmp_path, capsys):
    _, path = stack_on_disk
    output = tmp_path / "out.zarr"
    arguments = ["variance", str(path), "-o", str(output), "--scheduler", "tcp://127.0.0.1:1"]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main(arguments) == 2
    assert "cannot connect to the scheduler" in capsys.readouterr().err
    assert not output.exists()


def test_scheduler_without_distributed_says_how_to_get_it(
    stack_on_disk, tmp_path, capsys, monkeypatch
):
    """Without distributed installed, --scheduler says which extra brings it; nothing written."""
    _, path = stack_on_disk
    output = tmp_path / "out.zarr"
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    arguments = ["variance", str(path), "-o", str(output), "--scheduler", "tcp://127.0.0.1:1"]
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert 'pip install "napari-voxelwise[cluster]"' in error
    assert error.count("\n") == 1
    assert not output.exists()


def test_task_graphs_survive_pickling(stack_on_disk):
    """What a cluster with worker processes does to every task: pickle it, run it elsewhere."""
    import cloudpickle

    stack, path = stack_on_disk
    lazy = da.from_zarr(str(path))
    results = {
        "variance": (vw.voxel_variance(lazy, axis=0), vw.voxel_variance(stack, axis=0)),
        "eigenvalues": (vw.hessian_eigenvalues(lazy), vw.hessian_eigenvalues(stack)),
        "density": (vw.density_map(lazy, 4, "sliding"), vw.density_map(stack, 4, "sliding")),
        "frangi": (
            vw.frangi_vesselness(vw.hessian_eigenvalues(lazy)),
            vw.frangi_vesselness(vw.hessian_eigenvalues(stack)),
        ),
    }
    for name, (result, expected) in results.items():
        travelled = cloudpickle.loads(cloudpickle.dumps(result))
        computed = travelled.compute(scheduler="synchronous")
        np.testing.assert_allclose(computed, expected, rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("suffix", [".npy", ".tif"])
def test_file_inputs_travel_as_their_path(tmp_path, suffix):
    """A worker process gets the file's name, not its data (a np.memmap would pickle it all,
    tifffile's Zarr view holds a file handle that cannot be pickled)."""
    import cloudpickle
    import tifffile

    from napari_voxelwise._cli import read_array

    stack = random_data((64, 64, 64), np.float32, seed=32)  # 1 MiB
    path = tmp_path / f"in{suffix}"
    if suffix == ".npy":
        np.save(path, stack)
    else:
        tifffile.imwrite(path, stack)
    lazy = read_array(path, (16, 64, 64))
    assert len(cloudpickle.dumps(lazy)) < 50_000
    travelled = cloudpickle.loads(cloudpickle.dumps(vw.voxel_variance(lazy, axis=0)))
    np.testing.assert_allclose(
        travelled.compute(scheduler="synchronous"), vw.voxel_variance(stack, axis=0), rtol=1e-5
    )
