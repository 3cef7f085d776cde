"""Peak memory of the batch command on stacks of growing length: it should stay flat.

Run from the repository root::

    python tests/benchmarks/bench_bigdata.py --quick          # small sizes, a smoke run
    python tests/benchmarks/bench_bigdata.py                   # 2 and 4 GB stacks
    python tests/benchmarks/bench_bigdata.py --gigabytes 1,2,4 --workdir /scratch

It writes Zarr arrays of random float32 data on disk, then runs
``python -m napari_voxelwise`` in a subprocess for each case and prints a
table: case, input shape and size, peak resident memory of the subprocess
(``ru_maxrss`` of a fresh parent that only waits for it, so no peak is missed
between polls), seconds, and input MB/s.

* ``variance``: the variance along the stack axis of a (t, S, S, S) stack
  (S = 256, 64 with --quick) whose length t gives the requested size, read
  stored in Zarr chunks of (1, S/4, S, S), read in the command's default chunks
  for reductions (32 deep along the reduced axis, 128 MiB); output .zarr (S, S, S).
* ``hessian-eigenvalues``: the Hessian eigenvalues (sigma 1) of a 3D volume
  (L, S, S) with L chosen for a tenth of the requested size (a full 4 GB
  stack would write 12 GB of eigenvalues and take long on a small machine);
  output .zarr (L, S, S, 3); Dask chunks (64, S, S).

Not collected by pytest (the name does not start with ``test_``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Runs a command and prints the peak RSS (KiB) of its process tree's largest process.
MEASURE = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:]).returncode; "
    "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "sys.exit(code)"
)


def write_stack(path: Path, shape: tuple[int, ...], chunks: tuple[int, ...]) -> None:
    """Random float32 data in an uncompressed Zarr array, written one chunk row at a time."""
    import zarr

    options = {"shape": shape, "chunks": chunks, "dtype": "f4"}
    if hasattr(zarr, "create_array"):  # zarr 3
        array = zarr.create_array(str(path), **options, compressors=None, overwrite=True)
    else:
        array = zarr.open_array(str(path), mode="w", **options, compressor=None)
    rng = np.random.default_rng(0)
    step = chunks[0]
    for start in range(0, shape[0], step):
        stop = min(start + step, shape[0])
        block = rng.standard_normal((stop - start, *shape[1:]), dtype=np.float32)
        array[start:stop] = block


def run_case(arguments: list[str], environment: dict) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of ``python -m napari_voxelwise *arguments``."""
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "napari_voxelwise"]
    start = time.perf_counter()
    result = subprocess.run(
        [*command, *arguments, "--quiet"], capture_output=True, text=True, env=environment
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(arguments)}\n{result.stderr}")
    peak_kib = int(result.stdout.split("PEAK_KIB")[-1].split()[0])
    return seconds, peak_kib / 1024


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gigabytes",
        default=None,
        help="comma-separated stack sizes in GB (default 2,4; 0.05,0.1 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the data go")
    parser.add_argument("--keep", action="store_true", help="keep the data afterwards")
    args = parser.parse_args(argv)

    side = 64 if args.quick else 256
    default_sizes = "0.05,0.1" if args.quick else "2,4"
    sizes = [float(text) for text in (args.gigabytes or default_sizes).split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench-bigdata-", dir=args.workdir))
    source = Path(__file__).resolve().parents[2] / "src"
    environment = {
        **os.environ,
        "PYTHONPATH": f"{source}{os.pathsep}" + os.environ.get("PYTHONPATH", ""),
    }
    frame_bytes = side**3 * 4
    slice_bytes = side**2 * 4
    rows = []
    try:
        for gigabytes in sizes:
            frames = max(2, round(gigabytes * 1e9 / frame_bytes))
            stack = workdir / f"stack-{gigabytes:g}GB.zarr"
            shape = (frames, side, side, side)
            write_stack(stack, shape, (1, side // 4, side, side))
            seconds, peak = run_case(
                [
                    "variance",
                    str(stack),
                    "-o",
                    str(workdir / "variance.zarr"),
                    "--axis",
                    "0",
                    "--overwrite",
                ],
                environment,
            )
            rows.append(("variance (axis 0)", shape, frames * frame_bytes, peak, seconds))
            shutil.rmtree(stack)

            length = max(16, round(gigabytes * 1e8 / slice_bytes))
            volume = workdir / f"volume-{gigabytes:g}GB.zarr"
            shape = (length, side, side)
            write_stack(volume, shape, (min(64, length), side, side))
            seconds, peak = run_case(
                [
                    "hessian-eigenvalues",
                    str(volume),
                    "-o",
                    str(workdir / "eigenvalues.zarr"),
                    "--sigma",
                    "1",
                    "--chunks",
                    f"64,{side},{side}",
                    "--overwrite",
                ],
                environment,
            )
            rows.append(
                ("hessian-eigenvalues (sigma 1)", shape, length * slice_bytes, peak, seconds)
            )
            shutil.rmtree(volume)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    header = ("case", "input shape", "input MB", "peak RSS MiB", "seconds", "input MB/s")
    table = [header]
    for case, shape, nbytes, peak, seconds in sorted(rows, key=lambda r: (r[0], r[2])):
        table.append(
            (
                case,
                "x".join(map(str, shape)),
                f"{nbytes / 1e6:.0f}",
                f"{peak:.0f}",
                f"{seconds:.1f}",
                f"{nbytes / 1e6 / seconds:.0f}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    baseline = _baseline_mib(environment)
    print(
        f"\n{os.cpu_count()} CPUs; baseline RSS (Python, NumPy, Dask, Numba): {baseline:.0f} MiB"
    )


def _baseline_mib(environment: dict) -> float:
    """Peak RSS of a process that only imports what the command imports."""
    code = "import dask.array, zarr, numba, scipy.ndimage, napari_voxelwise._dask"
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    return int(result.stdout.split("PEAK_KIB")[-1].split()[0]) / 1024


if __name__ == "__main__":
    main()
