"""Peak memory of the batch command under a memory budget, on inputs of growing size.

Run from the repository root::

    python tests/benchmarks/bench_bigdata.py --quick          # small sizes, a smoke run
    python tests/benchmarks/bench_bigdata.py                   # 0.25, 0.5, 1 and 2 GB inputs
    python tests/benchmarks/bench_bigdata.py --gigabytes 1,4 --memory-limit 2GB --workdir /scratch
    python tests/benchmarks/bench_bigdata.py --footprints      # memory per voxel of each operation

It writes Zarr arrays of random float32 data on disk (uncompressed), then runs
``python -m napari_voxelwise OPERATION ... --memory-limit LIMIT`` in a new
process for each case, and reports the peak resident memory (RSS) of that whole
process: ``ru_maxrss`` of a parent that only waits for it, so no peak is missed
between polls and nothing escapes as it would with tracemalloc. The runtime's
own memory (Python, NumPy, Dask, Zarr, the compiled kernels) is the peak of the
same command on a tiny input. For every case it prints whether the peak stays
within the budget plus 300 MB, and for every operation whether the peak is flat
in the input size (largest minus smallest peak within a fifth of the budget).

* ``variance``: along axis 0 of a (t, S, S, S) stack (S = 256, 32 with
  --quick) whose length t gives the size, stored in chunks of (1, S/4, S, S).
* ``hessian-eigenvalues``: sigma 2 on a (L, S, S) volume whose length L gives
  the size, stored in chunks of (64, S, S); output (L, S, S, 3) float32.
* ``vesselness``: sigmas 1,2 on the same volume, when the package has
  ``napari_voxelwise.vesselness`` and the command its ``vesselness``
  operation (skipped with a printed line otherwise).

``--footprints`` measures instead, for each operation, the peak bytes per voxel
of one 64 x 256 x 256 float32 chunk (the process's high-water mark, VmHWM,
minus its memory before), next to the footprint the command sizes chunks with
(``napari_voxelwise._budget.FOOTPRINTS``); Linux only.

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

SOURCE = Path(__file__).resolve().parents[2] / "src"

#: Runs a command and prints the peak RSS (KiB) of its process tree's largest process.
MEASURE = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:]).returncode; "
    "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "sys.exit(code)"
)

#: The runtime's own memory allowed above the budget.
RUNTIME_ALLOWANCE = 300e6

#: Operation -> (input kind, its command-line options).
OPERATIONS = {
    "variance": ("stack", ["--axis", "0"]),
    "hessian-eigenvalues": ("volume", ["--sigma", "2"]),
    "vesselness": ("volume", ["--sigmas", "1,2"]),
}

#: Operation -> its options for --footprints (one chunk, no halo).
FOOTPRINT_OPTIONS = {
    "variance": ["--axis", "0"],
    "statistic": ["--statistic", "median", "--axis", "0"],
    "norms": ["--axis", "0"],
    "density": ["--mode", "sliding"],
    "mask": ["--mask", "MASK"],
    "gradient": ["--sigma", "2"],
    "hessian-eigenvalues": ["--sigma", "2"],
    "vesselness": ["--sigmas", "1,2"],
}


def write_array(path: Path, shape: tuple[int, ...], chunks: tuple[int, ...]) -> None:
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
        array[start:stop] = rng.standard_normal((stop - start, *shape[1:]), dtype=np.float32)


def environment() -> dict:
    """The measured package (this checkout's, or --source) first on the children's path."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{SOURCE}{os.pathsep}{path}" if path else str(SOURCE)}


def peak_of(command: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in bytes, stdout) of `command` run in a new process."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *command],
        capture_output=True,
        text=True,
        env=environment(),
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stderr}")
    output, _, peak = result.stdout.rpartition("PEAK_KIB")
    return seconds, int(peak.split()[0]) * 1024, output


def run_command(operation: str, source: Path, output: Path, options: list, limit: str):
    """(seconds, peak RSS in bytes, the command's summary line) of one batch command."""
    command = [sys.executable, "-m", "napari_voxelwise", operation, str(source), "-o"]
    command += [str(output), *options, "--overwrite"]
    if limit != "none":  # "none": the command's default (and older versions without the option)
        command += ["--memory-limit", limit]
    seconds, peak, printed = peak_of(command)
    summary = next((line for line in printed.splitlines() if "memory limit" in line), "")
    return seconds, peak, summary


def available(operation: str) -> str | None:
    """None if the package and its command have `operation`, else why not."""
    if operation != "vesselness":
        return None
    code = "import napari_voxelwise as vw; raise SystemExit(not hasattr(vw, 'vesselness'))"
    if subprocess.run([sys.executable, "-c", code], env=environment()).returncode:
        return "napari_voxelwise.vesselness does not exist in this checkout"
    command = [sys.executable, "-m", "napari_voxelwise", "vesselness", "--help"]
    if subprocess.run(command, capture_output=True, env=environment()).returncode:
        return "the command has no vesselness operation in this checkout"
    return None


def input_shape(kind: str, nbytes: float, side: int) -> tuple[int, ...]:
    if kind == "stack":
        return (max(2, round(nbytes / (4 * side**3))), side, side, side)
    return (max(16, round(nbytes / (4 * side**2))), side, side)


def stored_chunks(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    side = shape[-1]
    if kind == "stack":
        return (1, max(1, side // 4), side, side)
    return (min(64, shape[0]), side, side)


def measure_budgets(args) -> int:
    from dask.utils import parse_bytes

    side = 32 if args.quick else 256
    sizes = [
        float(text)
        for text in (args.gigabytes or ("0.01,0.02" if args.quick else "0.25,0.5,1,2")).split(",")
    ]
    limit = args.memory_limit or ("64MB" if args.quick else "1GB")
    budget = parse_bytes("1GB" if limit == "none" else limit)
    workdir = Path(tempfile.mkdtemp(prefix="bench-bigdata-", dir=args.workdir))
    rows, skipped = [], []
    try:
        tiny = workdir / "tiny.zarr"
        write_array(tiny, (16, 32, 32), (16, 32, 32))
        runtime = 0.0
        for operation in args.operations:
            why = available(operation)
            if why is not None:
                print(f"skipped {operation}: {why}")
                skipped.append(operation)
                continue
            kind, options = OPERATIONS[operation]
            tiny_options = ["--axis", "0"] if kind == "stack" else options
            _, own, _ = run_command(
                operation, tiny, workdir / "tiny-out.zarr", tiny_options, limit
            )
            runtime = max(runtime, own)
            for gigabytes in sizes:
                shape = input_shape(kind, gigabytes * 1e9, side)
                source = workdir / f"{kind}-{gigabytes:g}GB.zarr"
                if not source.exists():
                    write_array(source, shape, stored_chunks(kind, shape))
                output = workdir / f"{operation}.zarr"
                seconds, peak, summary = run_command(operation, source, output, options, limit)
                nbytes = 4 * int(np.prod(shape))
                rows.append((operation, shape, nbytes, peak, seconds, summary))
                shutil.rmtree(output, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    header = ("operation", "input shape", "input GB", "peak RSS MB", "within", "seconds")
    table = [header]
    for operation, shape, nbytes, peak, seconds, _ in rows:
        within = "yes" if peak <= budget + RUNTIME_ALLOWANCE else "NO"
        table.append(
            (
                operation,
                "x".join(map(str, shape)),
                f"{nbytes / 1e9:.2f}",
                f"{peak / 1e6:.0f}",
                within,
                f"{seconds:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print(
        f"\nbudget (--memory-limit {limit}): {budget / 1e6:.0f} MB; within: peak <= budget + "
        f"{RUNTIME_ALLOWANCE / 1e6:.0f} MB; runtime alone (tiny input): {runtime / 1e6:.0f} MB; "
        f"{os.cpu_count()} CPUs"
    )
    failures = 0
    for operation in dict.fromkeys(row[0] for row in rows):
        peaks = [row[3] for row in rows if row[0] == operation]
        summary = [row[5] for row in rows if row[0] == operation][-1]
        spread = max(peaks) - min(peaks)
        flat = spread <= 0.2 * budget
        print(
            f"{operation}: peak RSS {min(peaks) / 1e6:.0f} to {max(peaks) / 1e6:.0f} MB over "
            f"{len(peaks)} sizes: {'flat' if flat else 'NOT flat'} (spread {spread / 1e6:.0f} MB;"
            f" flat: <= {0.2 * budget / 1e6:.0f} MB, a fifth of the budget); chunks: "
            f"{summary.partition('chunks ')[2] or '?'}"
        )
        failures += not flat
    failures += sum(row[3] > budget + RUNTIME_ALLOWANCE for row in rows)
    return failures


# --------------------------------------------------------------------------- footprints

#: Measures, in a new process, the peak bytes per voxel of one chunk of one operation.
FOOTPRINT_CHILD = r"""
import sys, numpy as np, dask.array as da
from napari_voxelwise import _cli

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

shape = tuple(int(n) for n in sys.argv[1].split(","))
args = _cli.build_parser().parse_args(sys.argv[2:])
mask = da.ones(shape[1:], bool) if args.operation == "mask" else None
_cli._wait_for_kernels()
small = da.zeros((shape[0], 16, 16), np.float32)  # compiles and loads the kernels first
_cli.build_result(args, small, None if mask is None else mask[:16, :16]).compute(
    scheduler="synchronous"
)
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # resets the high-water mark
block = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
result = _cli.build_result(args, da.from_array(block, chunks=-1), mask)
result = result.compute(scheduler="synchronous")
print("PER_VOXEL", (status("VmHWM") - before) / block.size, result.nbytes / block.size)
"""


def measure_footprints(args) -> int:
    sys.path.insert(0, str(SOURCE))
    from napari_voxelwise._budget import FOOTPRINTS

    shape = (16, 64, 64) if args.quick else (64, 256, 256)
    print(f"bytes per voxel of one {'x'.join(map(str, shape))} float32 chunk")
    print("operation            measured work  declared work  measured result  declared result")
    for operation, options in FOOTPRINT_OPTIONS.items():
        if operation not in args.operations and args.operations != list(OPERATIONS):
            continue
        why = available(operation)
        if why is None and operation not in FOOTPRINTS:
            why = "no footprint declared in napari_voxelwise._budget.FOOTPRINTS"
        if why is not None:
            print(f"skipped {operation}: {why}")
            continue
        options = ["--mask", "unused.npy"] if operation == "mask" else options
        command = [operation, "in.npy", "-o", "out.npy", *options]
        result = subprocess.run(
            [sys.executable, "-c", FOOTPRINT_CHILD, ",".join(map(str, shape)), *command],
            capture_output=True,
            text=True,
            env=environment(),
        )
        if result.returncode != 0:
            print(f"{operation}: failed: {result.stderr.strip().splitlines()[-1]}")
            continue
        work, output = (float(v) for v in result.stdout.split("PER_VOXEL")[-1].split())
        declared = FOOTPRINTS[operation]
        print(
            f"{operation:<20} {work:>13.1f}  {declared.work:>13.1f}  {output:>15.2f}  "
            f"{declared.result:>15.2f}"
        )
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gigabytes",
        default=None,
        help="comma-separated input sizes in GB (default 0.25,0.5,1,2; 0.01,0.02 with --quick)",
    )
    parser.add_argument(
        "--memory-limit",
        default=None,
        help="the command's budget (default 1GB; 64MB --quick; 'none': the command's default, "
        "judged against 1GB)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="the package's source folder to measure (default: this checkout's src)",
    )
    parser.add_argument(
        "--operations",
        type=lambda text: text.split(","),
        default=list(OPERATIONS),
        help=f"comma-separated, among {','.join(OPERATIONS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument(
        "--footprints", action="store_true", help="measure each operation's bytes per voxel"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where the data go")
    parser.add_argument("--keep", action="store_true", help="keep the data afterwards")
    args = parser.parse_args(argv)
    if args.source is not None:
        global SOURCE
        SOURCE = args.source.resolve()
    if args.footprints:
        return measure_footprints(args)
    return 1 if measure_budgets(args) else 0


if __name__ == "__main__":
    sys.exit(main())
