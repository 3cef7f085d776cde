"""Chunks sized from a memory budget: the helper, the batch command's --memory-limit, panels'
Dask inputs, and the peak memory of a whole batch process."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_voxelwise import _budget, _lazy
from napari_voxelwise._budget import (
    FOOTPRINTS,
    Footprint,
    budget_and_threads,
    budget_chunks,
    parse_budget,
    working_set,
)
from napari_voxelwise._cli import main

SRC = os.path.join(os.path.dirname(os.path.dirname(__file__)), "src")
MiB = 2**20

CASES = [
    # shape, dtype, operation, threads, budget, halo, fixed
    ((512, 256, 256), "float32", "hessian-eigenvalues", 2, 256 * MiB, (8, 8, 8), None),
    ((512, 256, 256), "float32", "hessian-eigenvalues", 64, 4 * 2**30, (8, 8, 8), None),
    ((300, 700, 900), "float64", "gradient", 8, 512 * MiB, (3, 3, 3), None),
    ((20, 64, 256, 256), "float32", "hessian-eigenvalues", 16, 2**30, (0, 8, 8, 8), {0: 1}),
    ((100, 256, 256, 256), "float32", "variance", 2, 2**30, None, {0: 32}),
    ((40, 512, 512), "uint16", "statistic", 4, 128 * MiB, None, {1: -1}),
    ((4000, 4000), "float32", "density", 3, 64 * MiB, (2, 2), None),
    ((1000, 2048, 2048), "uint8", "mask", 32, 2**30, None, None),
    ((7, 13, 5), "float32", "norms", 1, 10**4, None, None),
]


@pytest.mark.parametrize("shape, dtype, operation, threads, budget, halo, fixed", CASES)
def test_chunks_fit_the_budget_and_keep_their_constraints(
    shape, dtype, operation, threads, budget, halo, fixed
):
    chunks = budget_chunks(shape, dtype, operation, threads, budget, halo=halo, fixed=fixed)
    assert len(chunks) == len(shape)
    assert all(1 <= c <= n for c, n in zip(chunks, shape, strict=True))
    needed = working_set(chunks, dtype, operation, threads, shape=shape, halo=halo)
    assert needed <= budget
    for axis, size in (fixed or {}).items():
        assert chunks[axis] == (shape[axis] if size == -1 else size)
    for size, n, h in zip(chunks, shape, halo or (0,) * len(shape), strict=True):
        assert size >= min(h, n)  # never smaller than the halo
    # as large as the budget allows: doubling the first shrunk axis would not fit
    shrunk = [a for a, (c, n) in enumerate(zip(chunks, shape, strict=True)) if c < n]
    if shrunk:
        larger = list(chunks)
        larger[shrunk[-1]] = min(2 * chunks[shrunk[-1]] + 1, shape[shrunk[-1]])
        assert working_set(larger, dtype, operation, threads, shape=shape, halo=halo) > budget


def test_more_threads_or_a_smaller_budget_give_smaller_chunks():
    shape = (512, 256, 256)
    sizes = [
        math.prod(budget_chunks(shape, "float32", "hessian-eigenvalues", t, b, halo=(8,) * 3))
        for t, b in [(1, 2**30), (4, 2**30), (4, 2**28)]
    ]
    assert sizes[0] > sizes[1] > sizes[2]
    # float64 data need twice the memory: about half the voxels per chunk
    single = budget_chunks(shape, "float32", "gradient", 2, 2**28)
    double = budget_chunks(shape, "float64", "gradient", 2, 2**28)
    assert math.prod(double) < 0.6 * math.prod(single)


def test_whole_array_when_it_fits_and_smallest_chunks_when_nothing_does():
    assert budget_chunks((10, 20, 30), "float32", "variance", 2, 2**30) == (10, 20, 30)
    tiny = budget_chunks((64, 64, 64), "float32", "hessian-eigenvalues", 2, 1000, halo=(4,) * 3)
    assert tiny == (4, 4, 4)  # the halo is the smallest chunk
    assert working_set(tiny, "float32", "hessian-eigenvalues", 2, halo=(4,) * 3) > 1000


def test_a_new_operation_declares_its_memory_in_one_entry(monkeypatch):
    with pytest.raises(ValueError, match=r"no memory footprint .* 'tubeness'"):
        budget_chunks((64, 64, 64), "float32", "tubeness", 2, 2**20)
    monkeypatch.setitem(FOOTPRINTS, "tubeness", Footprint(work=200, result=4))
    heavy = budget_chunks((256, 64, 64), "float32", "tubeness", 2, 2**26, halo=(8,) * 3)
    light = budget_chunks((256, 64, 64), "float32", "hessian-eigenvalues", 2, 2**26, halo=(8,) * 3)
    assert heavy[0] < light[0]


@pytest.mark.parametrize(
    "text, expected",
    [("1GB", 10**9), ("512MiB", 512 * MiB), ("2e9", 2 * 10**9), (1000, 1000), ("64 kB", 64000)],
)
def test_budgets_are_dask_byte_strings(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["abc", "0", "-1GB", "1 parsec", ""])
def test_bad_budgets_are_refused(text):
    with pytest.raises(ValueError, match="expected a size"):
        parse_budget(text)


def test_default_budget_is_a_quarter_of_the_available_memory(monkeypatch):
    psutil = pytest.importorskip("psutil")
    monkeypatch.setattr(
        psutil, "virtual_memory", lambda: type("Memory", (), {"available": 8 * 2**30})()
    )
    assert _budget.default_budget() == 2 * 2**30
    monkeypatch.setitem(sys.modules, "psutil", None)  # not installed: the OS's free pages
    pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert _budget.default_budget() == pytest.approx(pages / 4, rel=0.2)


class FakeClient:
    def __init__(self, workers):
        self.workers = workers

    def scheduler_info(self, n_workers=5):
        return {"workers": dict(enumerate(self.workers))}


def test_cluster_budgets_follow_the_tightest_worker():
    client = FakeClient(
        [
            {"memory_limit": 16 * 2**30, "nthreads": 4},  # 4 GiB per thread
            {"memory_limit": 8 * 2**30, "nthreads": 4},  # 2 GiB per thread: the tightest
        ]
    )
    assert budget_and_threads(client) == (4 * 2**30, 4)  # half its memory limit
    assert budget_and_threads(client, 10**9) == (10**9, 4)  # an explicit budget wins
    unlimited = FakeClient([{"memory_limit": 0, "nthreads": 3}])
    budget, threads = budget_and_threads(unlimited)
    assert threads == 3 and budget > 0
    budget, threads = budget_and_threads(None, 10**9)
    assert (budget, threads) == (10**9, _budget.local_threads())


# --------------------------------------------------------------------------- the command


@pytest.fixture
def volume(tmp_path):
    path = tmp_path / "volume.npy"
    np.save(path, np.random.default_rng(3).random((96, 64, 64), dtype=np.float32))
    return path


def _chunks_written(path) -> tuple:
    return zarr.open_array(str(path), mode="r").chunks


def test_memory_limit_sizes_the_chunks(tmp_path, volume, capsys):
    expected = {}
    for limit in ("4MB", "64MB"):
        output = tmp_path / f"out-{limit}.zarr"
        arguments = ["hessian-eigenvalues", str(volume), "-o", str(output), "--sigma", "1"]
        assert main([*arguments, "--memory-limit", limit]) == 0
        chunks = budget_chunks(
            (96, 64, 64),
            "float32",
            "hessian-eigenvalues",
            _budget.local_threads(),
            parse_budget(limit),
            halo=(4, 4, 4),
        )
        assert _chunks_written(output) == (*chunks, 3)
        summary = [line for line in capsys.readouterr().out.splitlines() if "memory limit" in line]
        assert len(summary) == 1 and "x".join(map(str, chunks)) in summary[0]
        expected[limit] = chunks
    assert math.prod(expected["4MB"]) < math.prod(expected["64MB"])


def test_reductions_keep_deep_chunks_within_the_budget(tmp_path, capsys):
    np.save(tmp_path / "stack.npy", np.zeros((40, 32, 64, 64), np.float32))
    output = tmp_path / "variance.zarr"
    arguments = ["variance", str(tmp_path / "stack.npy"), "-o", str(output), "--axis", "0"]
    assert main([*arguments, "--memory-limit", "8MB"]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "memory limit" in line]
    chunks = tuple(int(n) for n in line.split("chunks ")[1].split(",")[0].split("x"))
    assert chunks[0] == 32 and chunks[1] < 32  # deep along the reduced axis; others shrunk
    threads = _budget.local_threads()
    assert working_set(chunks, "float32", "variance", threads) <= 8 * 10**6
    assert _chunks_written(output)[0] == chunks[1]


def test_explicit_chunks_win_and_warn_over_the_budget(tmp_path, volume, capsys):
    output = tmp_path / "out.zarr"
    arguments = ["hessian-eigenvalues", str(volume), "-o", str(output), "--chunks", "96,64,64"]
    assert main([*arguments, "--memory-limit", "1MB"]) == 0
    captured = capsys.readouterr()
    (warning,) = captured.err.splitlines()
    assert warning.startswith("napari-voxelwise: warning: --chunks 96x64x64 need about")
    assert "more than the memory limit" in warning
    assert _chunks_written(output) == (96, 64, 64, 3)
    assert main([*arguments, "--memory-limit", "1MB", "--overwrite", "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")  # nothing new with --quiet


@pytest.mark.parametrize("limit", ["lots", "0", "-5MB"])
def test_bad_memory_limit_exits_2_with_one_line(tmp_path, volume, capsys, limit):
    output = tmp_path / "out.zarr"
    assert main(["variance", str(volume), "-o", str(output), f"--memory-limit={limit}"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("napari-voxelwise: error: --memory-limit:")
    assert not output.exists()


#: Runs the command in a child and prints its peak RSS (KiB).
MEASURE = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:]).returncode; "
    "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "sys.exit(code)"
)


def _peak_bytes(arguments) -> int:
    environment = {**os.environ, "PYTHONPATH": SRC}
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "napari_voxelwise"]
    result = subprocess.run(
        [*command, *map(str, arguments), "--quiet"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split("PEAK_KIB")[-1].split()[0]) * 1024


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB, Linux")
def test_peak_memory_of_the_whole_process_stays_within_the_budget(tmp_path):
    # 32 MiB of input, a 64 MiB budget: in one chunk the Hessian would need ~0.4 GB
    rng = np.random.default_rng(0)
    np.save(tmp_path / "big.npy", rng.random((512, 128, 128), dtype=np.float32))
    np.save(tmp_path / "tiny.npy", rng.random((16, 16, 16), dtype=np.float32))
    options = ["--sigma", "1", "--memory-limit", "64MiB", "--overwrite"]
    runtime = _peak_bytes(
        ["hessian-eigenvalues", tmp_path / "tiny.npy", "-o", tmp_path / "t.zarr", *options]
    )
    peak = _peak_bytes(
        ["hessian-eigenvalues", tmp_path / "big.npy", "-o", tmp_path / "b.zarr", *options]
    )
    print(f"peak {peak / MiB:.0f} MiB, runtime alone {runtime / MiB:.0f} MiB")
    assert peak <= runtime + 64 * MiB + 32 * MiB, (peak / MiB, runtime / MiB)


# --------------------------------------------------------------------------- panels


def test_panels_read_zarr_layers_in_budgeted_chunks(tmp_path):
    stored = zarr.open_array(
        str(tmp_path / "a.zarr"), mode="w", shape=(64, 128, 128), chunks=(64, 128, 128), dtype="f4"
    )
    lazy = _lazy.budgeted(stored, "hessian-eigenvalues", halo=(4, 4, 4), budget=16 * MiB)
    threads = _lazy.default_workers()
    assert lazy.chunks[0][0] < 64
    largest = tuple(max(c) for c in lazy.chunks)
    needed = working_set(
        largest, "f4", "hessian-eigenvalues", threads, halo=(4,) * 3, in_flight=2 * threads
    )
    assert needed <= 16 * MiB


def test_panels_rechunk_dask_layers_only_when_over_the_budget():
    data = da.zeros((64, 128, 128), np.float32, chunks=(64, 128, 128))
    small = da.zeros((64, 128, 128), np.float32, chunks=(8, 32, 32))
    over = _lazy.budgeted(data, "gradient", halo=(1, 1, 1), budget=16 * MiB)
    assert max(over.chunks[0]) < 64
    assert _lazy.budgeted(small, "gradient", halo=(1, 1, 1), budget=16 * MiB) is small
    assert _lazy.budgeted(data, "gradient", budget=2**34) is data
