"""The benchmark script runs (small sizes), so the performance page can always be regenerated."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).parent / "benchmarks" / "bench_core.py"


@pytest.mark.slow
def test_benchmark_script_prints_its_table(tmp_path):
    markdown = tmp_path / "table.md"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--repeat",
            "1",
            "--only",
            "variance,density,mask,hessian,gradient,dask",
            "--markdown",
            str(markdown),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout
    for column in ("median s", "speed vs best peer", "time vs floor", "peak extra MiB", "GB/s"):
        assert column in output
    for case in (
        "voxel_variance",
        "density_map block",
        "mask_filter",
        "hessian_eigenvalues",
        "gradient_vectors",
        "of Dask",
    ):
        assert case in output
    assert "np.var" in output and "skimage block_reduce" in output
    assert "eigvalsh" in output
    table = markdown.read_text().splitlines()
    assert table[0].startswith("| case |") and len(table) > 10


def _bench_core():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_core", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_core", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_our_call_and_its_floor_are_timed_in_turn():
    # Ratios to the floor come from calls made in turn, so that the machine's speed drifting
    # between two measurements minutes apart does not tilt them.
    bench = _bench_core()
    calls = []
    case = bench.Case(
        name="case",
        input_bytes=8,
        ours=lambda: calls.append("ours"),
        peers={"peer": lambda: calls.append("peer")},
        floor=lambda: calls.append("floor"),
    )
    ours_row, peer_row = bench.run_case(case, repeat=3, slow_repeat=1)
    ours_and_floor = [c for c in calls if c != "peer"]
    # run_case's warm-up call, one warm-up each, three pairs, one call for the peak memory
    assert ours_and_floor == ["ours"] + ["ours", "floor"] * 4 + ["ours"]
    assert ours_row.vs_floor is not None and ours_row.vs_floor > 0
    assert peer_row.vs_floor is not None and peer_row.speed_vs_peer > 0
    assert calls.count("peer") == 1 + 3 + 1  # a warm-up, three timed calls, the peak call


def test_a_target_can_print_the_figure_it_judged():
    bench = _bench_core()
    case = bench.Case(
        name="case",
        input_bytes=8,
        ours=lambda: None,
        targets=[("fast", lambda row, peers: (False, " (1.32x)")), ("safe", lambda r, p: True)],
    )
    (row,) = bench.run_case(case, repeat=1, slow_repeat=1)
    assert row.target == "fast (1.32x): MISSED; safe: met"


@pytest.mark.parametrize(
    "floor, numpy_name", [("read_operation", "max"), ("copy_operation", "copyto")]
)
def test_floors_use_both_cores(monkeypatch, floor, numpy_name):
    # A floor on one thread is too lenient for calls that run on two (a one-thread copy took
    # 1.6x to 1.9x as long as a two-thread one on the reference machine).
    import threading

    bench = _bench_core()
    operation = getattr(bench, floor)(1 << 20)
    both_running = threading.Barrier(2, timeout=10)  # broken if one thread did both halves
    sizes = []
    real = getattr(bench.np, numpy_name)

    def recording(array, *args, **kwargs):
        sizes.append(array.size)
        both_running.wait()
        return real(array, *args, **kwargs)

    monkeypatch.setattr(bench.np, numpy_name, recording)
    operation()
    assert sizes == [(1 << 20) // 8] * 2  # two halves of the float32 array


@pytest.mark.slow
def test_first_use_script_prints_its_table(tmp_path):
    # Small inputs, two cases, each in two new processes on a temporary numba cache.
    import tempfile

    script = SCRIPT.parent / "bench_first_use.py"
    markdown = tmp_path / "first_use.md"
    before = set(pathlib.Path(tempfile.gettempdir()).glob("napari-voxelwise-first-use-*"))
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--only", "api", "--repeat", "2",
         "--markdown", str(markdown)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header = (
        "case  cache  first s  second s  portable s  kernels s  kernels ready after s  first path"
    )
    assert " ".join(header.split()) in " ".join(result.stdout.split())
    rows = [line for line in result.stdout.splitlines() if line.startswith("apply_mask")]
    assert [row.split()[2] for row in rows] == ["empty", "filled"]
    assert "error" not in result.stdout
    assert "numba" in result.stdout.splitlines()[1]
    table = markdown.read_text()
    assert "| case | cache | first s |" in table and "frangi_vesselness" in table
    after = set(pathlib.Path(tempfile.gettempdir()).glob("napari-voxelwise-first-use-*"))
    assert after <= before  # its cache folders are gone


def test_bigdata_script_reports_peak_memory_against_the_budget():
    # one small input, the Hessian only: two batch processes (the runtime alone, the case)
    script = SCRIPT.parent / "bench_bigdata.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--gigabytes", "0.01",
         "--operations", "hessian-eigenvalues,vesselness"],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    assert " ".join("operation input shape input GB peak RSS MB within".split()) in " ".join(
        output.split()
    )
    (row,) = [line for line in output.splitlines() if line.startswith("hessian-eigenvalues  ")]
    assert row.split()[4] == "yes"  # within the budget plus the runtime's own
    assert "budget (--memory-limit 64MB): 64 MB" in output
    assert "runtime alone (tiny input)" in output
    assert "hessian-eigenvalues: peak RSS" in output and "chunks:" in output
    vesselness = "vesselness: peak RSS" in output or "skipped vesselness:" in output
    assert vesselness  # measured where the API exists, else a line says why not
