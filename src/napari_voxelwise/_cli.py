"""The batch command ``napari-voxelwise``: the computations on files bigger than memory.

::

    napari-voxelwise variance stack.zarr -o variance.zarr --axis 0
    napari-voxelwise hessian-eigenvalues volume.tif -o eigenvalues.npy --sigma 2
    napari-voxelwise hessian-eigenvalues embryo.ome.zarr -o eigenvalues.ome.zarr --sigma 2
    python -m napari_voxelwise norms stack.npy -o norms.csv

Inputs are read lazily: ``.npy`` as a memory map (never with pickle),
``.tif``/``.tiff`` through tifffile's Zarr view, ``.zarr`` directories with
Dask. OME-Zarr images, OME-TIFF and ImageJ TIFF bring their axes and voxel
sizes (``--spacing`` overrides them), other microscope formats come through
bioio; an ``.ome.zarr`` output is an OME-Zarr image placed over its input (see
:mod:`napari_voxelwise._formats`). The computation runs through Dask (see
:mod:`napari_voxelwise._dask`) with a progress bar, locally or on a
``dask.distributed`` scheduler. ``.zarr``, ``.ome.zarr`` and ``.npy`` outputs
are written chunk by chunk, so memory stays bounded; ``.tif`` output is
assembled in memory. An existing output is replaced only with ``--overwrite``,
and only once the new one is complete.

Errors (a missing or unreadable input, an existing output, a bad option) end
the command with exit code 2 and a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from . import _budget

PROG = "napari-voxelwise"
INPUT_FORMATS = (".npy", ".tif", ".tiff", ".zarr")
OUTPUT_FORMATS = (".npy", ".tif", ".tiff", ".zarr")


class CommandError(Exception):
    """A problem reported to the user as one line, exit code 2."""


# --------------------------------------------------------------------------- argument parsing


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or comma-separated integers, got {text!r}"
        ) from None


def _float_list(text: str) -> float | tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or comma-separated numbers, got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def _sigma(text: str):
    if text.lower() == "none":
        return None
    return _float_list(text)


def _positive_list(text: str) -> tuple[float, ...]:
    values = _float_list(text)
    values = values if isinstance(values, tuple) else (values,)
    if not all(value > 0 for value in values):
        raise argparse.ArgumentTypeError(f"every scale must be > 0, got {text!r}")
    return values


def _chunks(text: str):
    if text == "auto":
        return "auto"
    return _int_list(text)


def _order(text: str) -> float:
    if text.lower() in ("inf", "infinity"):
        return math.inf
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'inf', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command (one sub-command per operation)."""
    from .density import DENSITY_EDGES, DENSITY_MODES
    from .differential import EIGENVALUE_ORDERS, RIDGES
    from .ridges import VESSELNESS_METHODS
    from .statistics import STATISTICS

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Voxel-wise computations on arrays bigger than memory (.npy, .tif, .zarr), "
            "chunk by chunk through Dask."
        ),
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "input",
        type=Path,
        help="input file: .npy, .tif/.tiff (OME, ImageJ), a .zarr folder (plain or OME-Zarr), "
        "or another microscope format that an installed bioio plugin reads",
    )
    common.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output file; its extension picks the format (.npy, .tif, .zarr); .ome.zarr: "
        "an OME-Zarr image placed over the input, with a pyramid",
    )
    common.add_argument("--component", help="array inside a .zarr group (path within the store)")
    common.add_argument(
        "--level",
        type=int,
        default=None,
        help="resolution level of an OME-Zarr input (default 0, the full resolution)",
    )
    common.add_argument(
        "--channel",
        type=int,
        default=None,
        help="the channel to compute, for an input with a channel axis (the output has none)",
    )
    common.add_argument(
        "--chunks",
        type=_chunks,
        default="auto",
        help="Dask chunks of the input: 'auto' (default) or one size per axis, e.g. 8,256,256 "
        "(-1: the whole axis)",
    )
    common.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of a dask.distributed scheduler, e.g. tcp://10.0.0.5:8786 "
        "(default: threads on this machine)",
    )
    common.add_argument(
        "--memory-limit",
        metavar="BYTES",
        help="memory the computation may use, e.g. 1GB or 512MiB; chunks are sized to it "
        "(default: a quarter of the available memory; with --scheduler, half of each "
        "worker's memory limit)",
    )
    common.add_argument(
        "--overwrite", action="store_true", help="replace an existing output (once complete)"
    )
    common.add_argument("--quiet", action="store_true", help="no progress bar")

    operations = parser.add_subparsers(dest="operation", required=True, metavar="operation")

    def operation(name: str, help_text: str):
        return operations.add_parser(name, parents=[common], help=help_text, description=help_text)

    def reduction_options(sub, default_axis=-1):
        sub.add_argument(
            "--axis", type=int, default=default_axis, help="axis to reduce (default: the last)"
        )
        sub.add_argument("--ddof", type=int, default=0, help="delta degrees of freedom")
        sub.add_argument("--skipna", action="store_true", help="leave NaNs out")

    reduction_options(operation("variance", "variance of every voxel along one axis"))
    sub = operation("statistic", "one statistic of every voxel along one axis")
    sub.add_argument("--statistic", choices=STATISTICS, required=True, help="the statistic")
    reduction_options(sub)

    sub = operation(
        "norms",
        "one norm per frame (sub-array) along one axis; the output may also be .csv "
        "(one value per line)",
    )
    sub.add_argument("--axis", type=int, default=-1, help="the frame axis (default: the last)")
    sub.add_argument(
        "--ord", type=_order, default=2.0, help="order of the norm: > 0 or 'inf' (default 2)"
    )

    sub = operation("density", "fraction of elements above a threshold per block or window")
    sub.add_argument(
        "--window",
        type=_int_list,
        default=(3,),
        help="window size: one int, or one per (trailing) axis, e.g. 3,3 (default 3)",
    )
    sub.add_argument("--mode", choices=DENSITY_MODES, default="block", help="block or sliding")
    sub.add_argument(
        "--edge", choices=DENSITY_EDGES, default="trim", help="partial blocks: trim or pad"
    )
    sub.add_argument("--threshold", type=float, default=0.0, help="'on' means > threshold")

    sub = operation("mask", "keep the voxels inside a mask, fill the others")
    sub.add_argument(
        "--mask",
        type=Path,
        required=True,
        help="mask file (.npy, .tif, .zarr), shaped like the input's trailing axes",
    )
    sub.add_argument("--fill", type=float, default=0.0, help="value outside the mask (default 0)")

    sub = operation("gradient", "gradient vectors (or magnitude) of every voxel")
    sub.add_argument(
        "--sigma",
        type=_sigma,
        default=None,
        help="Gaussian scale (one or one per axis, in spacing units); default: finite differences",
    )
    sub.add_argument("--spacing", type=_float_list, default=None, help="voxel size per axis")
    sub.add_argument("--magnitude", action="store_true", help="write the gradient's length")
    sub.add_argument("--truncate", type=float, default=4.0, help="kernel size in sigmas")

    sub = operation(
        "hessian-eigenvalues",
        "eigenvalues of every voxel's Hessian; a 4D input (or a 3D one with --frames) is "
        "processed frame by frame along axis 0",
    )
    sub.add_argument(
        "--sigma",
        type=_sigma,
        default=1.0,
        help="Gaussian scale (default 1; 'none': finite differences)",
    )
    sub.add_argument(
        "--spacing", type=_float_list, default=None, help="voxel size per spatial axis"
    )
    sub.add_argument(
        "--order", choices=EIGENVALUE_ORDERS, default="descending", help="eigenvalue order"
    )
    sub.add_argument("--frames", action="store_true", help="axis 0 holds frames")
    sub.add_argument("--truncate", type=float, default=4.0, help="kernel size in sigmas")

    sub = operation(
        "vesselness",
        "multi-scale vesselness (Frangi or Sato), the strongest response over the scales; "
        "a 4D input is filtered frame by frame along axis 0",
    )
    sub.add_argument(
        "--sigmas",
        type=_positive_list,
        required=True,
        help="comma-separated scales in spacing units, e.g. 1,2,4,8",
    )
    sub.add_argument("--method", choices=VESSELNESS_METHODS, default="frangi", help="the measure")
    sub.add_argument("--ridges", choices=RIDGES, default="bright", help="bright or dark tubes")
    sub.add_argument(
        "--spacing", type=_float_list, default=None, help="voxel size per spatial axis"
    )
    sub.add_argument("--alpha", type=float, default=0.5, help="Frangi's plate sensitivity")
    sub.add_argument("--beta", type=float, default=0.5, help="Frangi's blob sensitivity")
    sub.add_argument(
        "--gamma", type=float, default=None, help="Frangi's contrast sensitivity (default: auto)"
    )
    sub.add_argument(
        "--scale-output",
        type=Path,
        default=None,
        help="also write the best-scale map (the sigma of each voxel's strongest response)",
    )

    from ._warmup import DEFAULT_DTYPES, OPERATIONS

    help_text = (
        "compile the kernels of the computations ahead of time, into numba's cache (for "
        "cluster images, shared installs, CI); a computation whose kernels are not compiled "
        "yet runs on a slower portable path meanwhile"
    )
    sub = operations.add_parser("warmup", help=help_text, description=help_text)
    sub.add_argument(
        "--operations",
        type=_names,
        default=None,
        help=f"comma-separated, among {','.join(OPERATIONS)} (default: all)",
    )
    sub.add_argument(
        "--dtypes",
        type=_names,
        default=None,
        help=f"comma-separated input dtypes (default: {','.join(DEFAULT_DTYPES)})",
    )
    sub.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="also load them on every worker of this dask.distributed scheduler",
    )
    return parser


#: Operations computed in physical units: they take the input's voxel sizes.
DERIVATIVES = ("gradient", "hessian-eigenvalues", "vesselness")


def read_image(args, chunks):
    """The input of `args` as a lazy Dask array, and its grid (axes, voxel sizes, origin).

    Voxel sizes come from the file (OME-Zarr, OME-TIFF, ImageJ TIFF, bioio) or
    ``--spacing``; gradient, hessian-eigenvalues and vesselness compute with them. Prints
    which it uses, and whence, unless ``--quiet``.
    """
    from . import _formats

    data, file_grid = _formats.read_image(
        args.input, chunks, args.component, args.level, args.channel, read_array
    )
    grid = _formats.with_spacing(file_grid, getattr(args, "spacing", None))
    if args.operation in DERIVATIVES and args.spacing is None:
        if grid.from_file:  # the computation's spacing: all axes, or the spatial ones
            frames = args.operation != "gradient" and (
                getattr(args, "frames", False) or data.ndim == 4
            )
            args.spacing = grid.scale[1:] if frames else grid.scale
    if not args.quiet:
        print(_formats.spacing_line(args.input, grid, file_grid))
    return data, grid


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# --------------------------------------------------------------------------- reading


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def read_array(path: Path, chunks="auto", component: str | None = None, role: str = "input"):
    """`path` (.npy, .tif/.tiff, .zarr) as a lazy Dask array.

    `chunks` is "auto", one size per axis, or a function of the array's shape
    returning either.
    """
    import dask.array as da

    if not path.exists():
        raise CommandError(f"{role} {path} does not exist")
    suffix = _suffix(path)
    if suffix not in INPUT_FORMATS:
        raise CommandError(
            f"{role} {path}: unknown format {suffix or '(no extension)'}; "
            f"use one of {', '.join(INPUT_FORMATS)}"
        )
    try:
        if suffix == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        elif suffix == ".zarr":
            array = _open_zarr(path, component)
        else:
            array = _TiffSource(path)
        if callable(chunks):
            chunks = chunks(array.shape)
        if chunks != "auto" and len(chunks) != array.ndim:
            raise CommandError(
                f"--chunks has {len(chunks)} entries but {path} has {array.ndim} axes "
                f"(shape {array.shape})"
            )
        meta = np.empty((0,) * array.ndim, array.dtype)
        if suffix == ".npy":
            source = _NpySource(path, array.shape, array.dtype)
            return da.from_array(source, chunks=chunks, meta=meta)
        if suffix == ".zarr":
            return da.from_zarr(array, chunks=chunks)
        return da.from_array(array, chunks=chunks, meta=meta)
    except CommandError:
        raise
    except Exception as exc:  # any reader's failure: not a readable array
        raise CommandError(f"cannot read {path} as {suffix}: {_one_line(exc)}") from exc


class _NpySource:
    """A ``.npy`` file read region by region through a memory map opened per read.

    Unlike a ``np.memmap`` (which pickles as a full copy of its data), this
    travels to distributed worker processes as its path only.
    """

    def __init__(self, path: Path, shape, dtype):
        self.path, self.shape, self.dtype = str(path), tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        source = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return np.array(source[index])  # a copy: the map is closed at once


#: TIFF files opened by this process (by path and modification time), reused per read.
_open_tiffs: dict = {}


class _TiffSource:
    """A TIFF file read region by region through tifffile's Zarr view.

    Travels to distributed worker processes as its path (the view holds a file
    handle, which cannot); each process opens the file once.
    """

    def __init__(self, path: Path):
        self.path = str(path)
        array = self._array()
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self.chunks = array.chunks  # Dask's "auto" chunks follow the file's layout

    def _array(self):
        key = (self.path, os.stat(self.path).st_mtime_ns)
        array = _open_tiffs.get(key)
        if array is None:
            import tifffile
            import zarr

            store = tifffile.imread(self.path, aszarr=True)
            array = _open_tiffs[key] = _first_array(zarr.open(store, mode="r"), Path(self.path))
        return array

    def __getitem__(self, index):
        return np.asarray(self._array()[index])


def _open_zarr(path: Path, component: str | None):
    import zarr

    node = zarr.open(str(path), mode="r", path=component or "")
    return _first_array(node, path)


def _first_array(node, path: Path):
    """A Zarr node as an array: the array itself, or a group's only array."""
    if hasattr(node, "shape"):
        return node
    names = sorted(name for name, _ in node.arrays())
    if len(names) != 1:
        raise CommandError(
            f"{path} is a group holding {len(names)} arrays ({', '.join(names) or 'none'}); "
            "choose one with --component"
        )
    return node[names[0]]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# --------------------------------------------------------------------------- the operations

#: Depth of the chunks along a reduced axis that the command reads by default.
REDUCTION_DEPTH = _budget.REDUCTION_DEPTH


def _reduction_chunks(shape: tuple[int, ...], axis: int, whole_axis: bool = False):
    """Chunks deep along the reduced `axis` (up to REDUCTION_DEPTH), Dask's size elsewhere.

    Every chunk of a reduction leaves float64 partial results (24 bytes per
    output voxel) until they are merged; deep chunks keep them few and small
    (measured: 0.8 GB peak for a 2 GB stack, against 6 GB with Dask's default
    chunks of 2 frames). With `whole_axis` (median) the axis is one chunk.
    Chunks are read directly in this shape, no rechunk.
    """
    if not -len(shape) <= axis < len(shape):
        return "auto"  # the computation reports the bad axis
    chunks: list = ["auto"] * len(shape)
    chunks[axis] = shape[axis] if whole_axis else min(shape[axis], REDUCTION_DEPTH)
    return tuple(chunks)


def build_result(args, data, mask=None):
    """The lazy result of the operation in `args` on the Dask array `data` (and, for
    "mask", the Dask array `mask`, read from ``args.mask`` if None)."""
    from . import _dask

    operation = args.operation
    if operation == "variance":
        return _dask.voxel_variance(data, args.axis, args.ddof, args.skipna)
    if operation == "statistic":
        return _dask.axis_statistic(data, args.statistic, args.axis, args.ddof, args.skipna)
    if operation == "norms":
        return _dask.frame_norms(data, args.axis, args.ord)
    if operation == "density":
        window = args.window[0] if len(args.window) == 1 else args.window
        return _dask.density_map(data, window, args.mode, args.threshold, args.edge)
    if operation == "mask":
        if mask is None:
            mask = read_array(args.mask, role="mask")
        return _dask.apply_mask(data, mask, args.fill)
    if operation == "gradient":
        function = _dask.gradient_magnitude if args.magnitude else _dask.gradient_vectors
        return function(data, args.spacing, args.sigma, truncate=args.truncate)
    if operation == "vesselness":
        return _dask.vesselness(
            data,
            args.sigmas,
            method=args.method,
            ridges=args.ridges,
            spacing=args.spacing,
            alpha=args.alpha,
            beta=args.beta,
            gamma=args.gamma,
            return_scale=getattr(args, "scale_output", None) is not None,
        )
    # hessian-eigenvalues
    if args.frames or data.ndim == 4:
        return _dask.hessian_eigenvalues_frames(
            data, args.sigma, args.spacing, args.order, truncate=args.truncate
        )
    return _dask.hessian_eigenvalues(
        data, args.sigma, args.spacing, args.order, truncate=args.truncate
    )


# --------------------------------------------------------------------------- writing


def _check_output(args) -> None:
    _check_output_path(args, args.output)
    extra = getattr(args, "scale_output", None)
    if extra is not None:
        if extra.resolve() == args.output.resolve():
            raise CommandError(f"--scale-output {extra} is the output; choose another file")
        _check_output_path(args, extra)


def _check_output_path(args, output: Path) -> None:
    suffix = _suffix(output)
    formats = (*OUTPUT_FORMATS, ".csv") if args.operation == "norms" else OUTPUT_FORMATS
    if suffix not in formats:
        raise CommandError(
            f"output {output}: unknown format {suffix or '(no extension)'}; "
            f"use one of {', '.join(formats)}"
        )
    sources = [args.input, getattr(args, "mask", None)]
    if any(source is not None and output.resolve() == source.resolve() for source in sources):
        raise CommandError(f"output {output} is an input; choose another output")
    if output.exists() and not args.overwrite:
        raise CommandError(f"output {output} exists; use --overwrite to replace it")
    if not output.parent.is_dir():
        raise CommandError(f"output folder {output.parent} does not exist")


class _NpyTarget:
    """A ``.npy`` file that Dask writes region by region (picklable: opened per write)."""

    def __init__(self, path: Path, shape, dtype):
        self.path, self.shape, self.dtype = str(path), tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)

    def __setitem__(self, index, value):
        target = np.load(self.path, mmap_mode="r+", allow_pickle=False)
        target[index] = value
        target.flush()
        del target


def _regular(result):
    """`result` with regular chunks (equal sizes, the last one smaller), as Zarr needs."""
    regular = all(len(set(c[:-1])) <= 1 and c[-1] <= c[0] for c in result.chunks)
    return result if regular else result.rechunk(tuple(max(c) for c in result.chunks))


def _write(result, path: Path, compute) -> None:
    """Write `result` to `path` (its extension picks the format) through `compute`."""
    suffix = _suffix(path)
    if suffix in CHUNKED_FORMATS:
        compute(_store(result, path))
    elif suffix == ".csv":
        values = compute(result)
        np.savetxt(path, np.asarray(values).reshape(-1, 1), fmt="%.17g")
    else:
        import tifffile

        tifffile.imwrite(path, np.asarray(compute(result)), photometric="minisblack")


#: Output formats written chunk by chunk (the others are assembled in memory).
CHUNKED_FORMATS = (".zarr", ".npy")


def _store(result, path: Path):
    """The lazy writing of `result` to a .zarr or .npy `path` (created now, written when
    computed)."""
    import dask.array as da

    if _suffix(path) == ".zarr":
        return da.to_zarr(_regular(result), str(path), compute=False)
    np.lib.format.open_memmap(path, mode="w+", dtype=result.dtype, shape=result.shape).flush()
    target = _NpyTarget(path, result.shape, result.dtype)
    return da.store(result, target, lock=False, compute=False)


def _write_all(results, paths, compute, placements) -> None:
    """Write results of one shape and dtype (vesselness and its scales) to `paths`, in one
    pass over the input unless one is an OME-Zarr (placed as `placements` say)."""
    if len(results) == 1 or any(placements):
        for result, path, placement in zip(results, paths, placements, strict=True):
            if placement is None:
                _write(result, path, compute)
            else:
                from . import _formats

                _formats.write_ome_zarr(_regular(result), path, *placement, compute)
        return
    import dask
    import dask.array as da

    if all(_suffix(path) in CHUNKED_FORMATS for path in paths):
        compute(dask.delayed(_done)(*(_store(r, p) for r, p in zip(results, paths, strict=True))))
        return
    values = compute(da.stack(results))  # a .tif among them: assembled in memory
    for value, path in zip(values, paths, strict=True):
        _write(da.from_array(value), path, compute)


def _done(*_) -> None:
    """Joins the writing tasks of several outputs into one computation."""


def _replace(finished: Path, output: Path, scratch: Path) -> None:
    """Move `finished` to `output`; an old output is moved into `scratch` only now."""
    if output.exists() or output.is_symlink():
        os.replace(output, scratch / "replaced")
    os.replace(finished, output)


def _computer(args):
    """Functions computing a Dask collection with a progress bar, running a function on
    every worker (or here), and closing."""
    import dask

    if args.scheduler:
        try:
            from distributed import Client, progress
        except ImportError as exc:
            raise CommandError(
                "--scheduler needs Dask's distributed scheduler: "
                f'pip install "napari-voxelwise[cluster]" ({_one_line(exc)})'
            ) from exc

        try:
            # the connection timeout is Dask's setting distributed.comm.timeouts.connect
            client = Client(args.scheduler, set_as_default=False)
        except Exception as exc:
            raise CommandError(
                f"cannot connect to the scheduler {args.scheduler}: {_one_line(exc)}"
            ) from exc

        def compute(collection):
            future = client.compute(collection)
            if not args.quiet:
                with client.as_current():
                    progress(future)
                print(file=sys.stdout)
            return future.result()

        compute.client = client
        return compute, client.run, client.close

    from dask.diagnostics import ProgressBar

    def compute_local(collection):
        if args.quiet:
            return dask.compute(collection)[0]
        with ProgressBar():
            return dask.compute(collection)[0]

    compute_local.client = None
    return compute_local, lambda function: function(), lambda: None


# --------------------------------------------------------------------------- memory budget


def _memory_budget(args, compute) -> tuple[int, int, str]:
    """(bytes, threads, where) the chunks are sized for: --memory-limit, else a quarter of
    the memory available here, or half of a cluster worker's memory limit."""
    explicit = None
    if args.memory_limit is not None:
        try:
            explicit = _budget.parse_budget(args.memory_limit)
        except ValueError as exc:
            raise CommandError(f"--memory-limit: {exc}") from None
    budget, threads = _budget.budget_and_threads(compute.client, explicit)
    return budget, threads, "" if compute.client is None else "per worker"


def _derivative_halo(args, shape, finite_depth: int):
    from ._dask import derivative_halo

    frames = args.operation == "hessian-eigenvalues" and (args.frames or len(shape) == 4)
    spatial = shape[1:] if frames else shape
    halo = derivative_halo(
        spatial, args.sigma, args.spacing, truncate=args.truncate, finite_depth=finite_depth
    )
    return (0, *halo) if frames else halo


def _vesselness_halo(args, shape):
    from ._dask import derivative_halo

    frames = len(shape) == 4
    spatial = shape[1:] if frames else shape
    halo = derivative_halo(spatial, max(args.sigmas), args.spacing)
    return (0, *halo) if frames else halo


def _sliding_halo(args, shape):
    from .density import normalize_window

    if args.mode != "sliding":
        return None
    window = args.window[0] if len(args.window) == 1 else args.window
    return tuple(size - 1 for size in normalize_window(window, shape, args.mode, args.edge))


#: Voxels each chunk of an operation reads from its neighbours, per axis: a function
#: of (args, input shape); operations not named here read none.
HALOS = {
    "gradient": partial(_derivative_halo, finite_depth=1),
    "hessian-eigenvalues": partial(_derivative_halo, finite_depth=2),
    "vesselness": _vesselness_halo,
    "density": _sliding_halo,
}


def _sized_chunks(args, shape, dtype, budget: int, threads: int):
    """The input chunks of `args`'s operation within `budget` for `threads` threads, and
    their estimated working set; ("auto", None) for an operation of unknown footprint."""
    operation = args.operation
    if operation not in _budget.FOOTPRINTS:
        return "auto", None
    fixed = {}
    if operation in ("variance", "statistic"):
        whole = getattr(args, "statistic", None) == "median"
        deep = _reduction_chunks(tuple(shape), args.axis, whole_axis=whole)
        if deep != "auto":
            fixed = {axis: size for axis, size in enumerate(deep) if size != "auto"}
    if (operation == "hessian-eigenvalues" and args.frames) or (
        operation in ("hessian-eigenvalues", "vesselness") and len(shape) == 4
    ):
        fixed = {0: 1}  # one frame per chunk
    try:
        halo = HALOS[operation](args, tuple(shape)) if operation in HALOS else None
    except ValueError:  # bad scales or window: the computation reports them
        return "auto", None
    sizing = {"halo": halo, "shape": shape}
    chunks = _budget.budget_chunks(
        shape, dtype, operation, threads, budget, halo=halo, fixed=fixed
    )
    needed = _budget.working_set(chunks, dtype, operation, threads, **sizing)
    return chunks, needed


def _chunks_within_budget(args, data, compute):
    """`data` read again in chunks sized to the memory budget (unless --chunks says how),
    and the number of bytes to give Dask's ``array.chunk-size`` (for chunks that the
    computation itself makes); prints one line about them unless --quiet."""
    from dask.utils import format_bytes

    budget, threads, where = _memory_budget(args, compute)
    per = f" {where}" if where else ""
    thread_text = f"{threads} thread{'s' if threads != 1 else ''}"
    if args.chunks != "auto":
        chunks = tuple(max(sizes, default=1) for sizes in data.chunks)
        if args.operation in _budget.FOOTPRINTS:
            halo = None
            try:
                halo = HALOS[args.operation](args, data.shape) if args.operation in HALOS else None
            except ValueError:
                pass
            needed = _budget.working_set(
                chunks, data.dtype, args.operation, threads, shape=data.shape, halo=halo
            )
            if needed > budget and not args.quiet:
                print(
                    f"{PROG}: warning: --chunks {'x'.join(map(str, chunks))} need about "
                    f"{format_bytes(needed)} with {thread_text}{per}, more than the memory "
                    f"limit of {format_bytes(budget)}",
                    file=sys.stderr,
                )
        return data, max(chunks_bytes(data), 1)
    chunks, needed = _sized_chunks(args, data.shape, data.dtype, budget, threads)
    if chunks == "auto":
        return data, None
    from . import _formats

    data, _ = _formats.read_image(
        args.input, chunks, args.component, args.level, args.channel, read_array
    )
    if not args.quiet:
        excess = " (the smallest chunks; more than the limit)" if needed > budget else ""
        print(
            f"memory limit {format_bytes(budget)}{per}, {thread_text}: chunks "
            f"{'x'.join(map(str, chunks))}, about {format_bytes(needed)} in use{excess}"
        )
    return data, max(chunks_bytes(data), 1)


def chunks_bytes(data) -> int:
    """Bytes of the largest chunk of the Dask array `data`."""
    return data.dtype.itemsize * math.prod(max(sizes, default=1) for sizes in data.chunks)


def _wait_for_kernels() -> None:
    """A batch job waits for the kernels it needs to compile, rather than run the slower
    portable path (unless NAPARI_VOXELWISE_COMPILE says otherwise)."""
    from . import _dispatch

    if _dispatch.MODE_VARIABLE not in os.environ:
        _dispatch.set_compile_mode("wait")


def _prepare_kernels(options: dict, shape: tuple, dtype: str, mask_shape) -> None:
    """Run the operation of `options` on one chunk of zeros of `shape` and `dtype`.

    This compiles (once per install, in the compiler process) and loads every kernel
    the computation needs, before its graph runs: here, or in each worker of a cluster,
    so that workers do not compile mid-graph.
    """
    import dask.array as da

    _wait_for_kernels()
    args = argparse.Namespace(**options)
    data = da.zeros(shape, dtype, chunks=shape)
    mask = None if mask_shape is None else da.ones(mask_shape, bool, chunks=mask_shape)
    import dask

    dask.compute(build_result(args, data, mask), scheduler="synchronous")


def _warm_here(operations, dtypes) -> None:
    from . import _dispatch

    _wait_for_kernels()
    _dispatch.warmup(operations, dtypes)


def _run_warmup(args) -> None:
    import time

    from . import _dispatch

    began = time.perf_counter()
    warm = partial(_warm_here, args.operations, args.dtypes)
    try:
        warm()  # checks the names before any cluster is involved
    except _dispatch.CompileError as exc:
        raise CommandError(f"compiling failed: {_one_line(exc)}") from exc
    if not _dispatch.numba_ready():
        raise CommandError("numba is not available: computations take the portable path")
    if args.scheduler:
        _, on_every_worker, close = _computer(args)
        try:
            on_every_worker(warm)
        finally:
            close()
    where = " and on every worker" if args.scheduler else ""
    print(f"kernels compiled and loaded{where} in {time.perf_counter() - began:.1f} s")


def run(args) -> None:
    """Run the parsed command `args` (raises CommandError for the user's mistakes)."""
    if args.operation == "warmup":
        _run_warmup(args)
        return
    try:
        import dask
        import dask.array
    except ImportError:
        raise CommandError(
            "the batch command needs Dask, Zarr and tifffile: "
            "pip install 'napari-voxelwise[batch]'"
        ) from None
    _check_output(args)
    data, grid = read_image(args, args.chunks)
    mask = read_array(args.mask, role="mask") if args.operation == "mask" else None
    compute, on_every_worker, close = _computer(args)
    try:
        # chunks within the memory budget, also those the computation makes ("auto")
        data, chunk_bytes = _chunks_within_budget(args, data, compute)
    except BaseException:
        close()
        raise
    with dask.config.set({"array.chunk-size": chunk_bytes} if chunk_bytes else {}):
        _run_sized(args, data, grid, mask, compute, on_every_worker, close)


def _run_sized(args, data, grid, mask, compute, on_every_worker, close) -> None:
    """The rest of :func:`run`, once `data` has its chunks."""
    try:
        result = build_result(args, data, mask)
        results = list(result) if isinstance(result, tuple) else [result]
        outputs = [args.output, getattr(args, "scale_output", None)][: len(results)]
        if args.output.suffix.lower() == ".csv" and results[0].ndim != 1:
            raise CommandError("a .csv output holds a 1-D result (norms) only")
        placements = [None] * len(results)  # OME-Zarr outputs: (grid, provenance)
        for index, output in enumerate(outputs):
            if output.name.lower().endswith(".ome.zarr"):
                from . import _formats

                placed, layout = _formats.result_grid(args, grid, data.shape, results[index].ndim)
                results[index] = _formats.laid_out(results[index], layout)
                sources = [args.input] + ([args.mask] if mask is not None else [])
                placements[index] = (placed, _formats.provenance(args, sources))
    except BaseException:
        close()
        raise
    _wait_for_kernels()
    first_chunk = tuple(int(sizes[0]) for sizes in data.chunks)
    mask_shape = None if mask is None else tuple(mask.shape)
    prepare = partial(_prepare_kernels, vars(args), first_chunk, data.dtype.str, mask_shape)
    try:
        on_every_worker(prepare)
    except BaseException:
        close()
        raise
    temporaries = [
        Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
        for output in outputs
    ]
    try:
        targets = [
            temporary / output.name for temporary, output in zip(temporaries, outputs, strict=True)
        ]
        _write_all(results, targets, compute, placements)
        for target, output, temporary in zip(targets, outputs, temporaries, strict=True):
            _replace(target, output, temporary)
    finally:
        for temporary in temporaries:
            shutil.rmtree(temporary, ignore_errors=True)
        close()
    if not args.quiet:
        for output, written in zip(outputs, results, strict=True):
            print(f"wrote {output} (shape {written.shape}, {written.dtype})")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``napari-voxelwise`` and ``python -m napari_voxelwise``; the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args)
    except (CommandError, ValueError, TypeError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    return 0
