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
