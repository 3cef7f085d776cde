"""Chunk sizes from a memory budget: how big a Dask chunk may be for an operation.

Every thread of a Dask computation holds one chunk's *working memory* while its
task runs: the chunk with its halo (the voxels read from the neighbours), the
temporaries of the computation and the result chunk. Around the tasks, chunks
already read and results not yet written wait in memory. With `threads`
threads and `in_flight` chunks waiting (by default as many as threads), a
chunking of `chunks` needs about::

    scale * (threads * work * prod(chunk + 2 * halo)
             + in_flight * (input itemsize + result) * prod(chunk))

bytes, where ``work`` and ``result`` are the operation's :class:`Footprint`
(bytes per voxel for float32 data; ``scale`` is 2 for float64 data, whose
results and temporaries are twice as large). :func:`budget_chunks` picks the
largest regular chunks for which this stays within a budget, shrinking the
leading axes first (trailing axes whole keep reads from Zarr, TIFF and ``.npy``
contiguous).

The footprints were measured, not guessed: the peak resident memory (VmHWM) of
a process computing one chunk of 64 x 256 x 256 float32 voxels, minus its
memory before (``tests/benchmarks/bench_bigdata.py --footprints`` measures them
again). A new operation declares its own with one entry in :data:`FOOTPRINTS`.

Pure Python and NumPy: no Dask needed to size chunks, no Qt, no napari.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Footprint:
    """Memory of one operation, in bytes per voxel of float32 data.

    Attributes
    ----------
    work : float
        Peak bytes per voxel of a chunk (halo included) while its task runs:
        the chunk itself, the computation's temporaries and its result chunk.
    result : float
        Bytes of result per input voxel (a result chunk waiting to be written).
    """

    work: float
    result: float


#: Memory per voxel of each operation of the batch command (and of the panels).
#: ``work``: measured on a 64 x 256 x 256 float32 chunk (rounded up); operations that
#: read a halo also hold the chunk joined to its halo (4) and the result trimmed back
#: to the chunk (a copy of ``result``) in the chunked path, added here. ``result``: the
#: size of the output per input voxel.
FOOTPRINTS: dict[str, Footprint] = {
    # moments keep float64 partial results of every chunk until merged: 12 measured + 4
    "variance": Footprint(work=16, result=0),
    "statistic": Footprint(work=16, result=0),
    "norms": Footprint(work=9, result=0),
    "density": Footprint(work=17 + 4, result=4),  # sliding mode; block mode measured 8.5
    "mask": Footprint(work=17, result=4),
    "gradient": Footprint(work=32 + 4 + 12, result=12),  # vectors; the magnitude measured 20
    "hessian-eigenvalues": Footprint(work=34 + 4 + 12, result=12),
    # the response and the scale map travel together: 8 bytes of result
    "vesselness": Footprint(work=34 + 4 + 8, result=8),
}

#: Depth of the chunks along a reduced axis (its partial results stay few and small).
REDUCTION_DEPTH = 32
#: Fraction of the available memory used when no budget is given.
DEFAULT_FRACTION = 0.25
#: Fraction of a cluster worker's memory limit that its chunks may use by default
#: (distributed starts spilling to disk at 60%).
WORKER_FRACTION = 0.5


def footprint(operation: str | Footprint) -> Footprint:
    """The :class:`Footprint` of `operation` (a name in :data:`FOOTPRINTS`, or one)."""
    if isinstance(operation, Footprint):
        return operation
    try:
        return FOOTPRINTS[operation]
    except KeyError:
        raise ValueError(
            f"no memory footprint is known for operation {operation!r}; "
            f"known: {', '.join(sorted(FOOTPRINTS))}"
        ) from None


def available_memory() -> int:
    """Bytes of memory available now (psutil when installed, else the OS's free pages)."""
    try:
        import psutil
    except ImportError:
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):  # not on a POSIX system
            return 4 * 2**30
    return int(psutil.virtual_memory().available)


def default_budget() -> int:
    """The default memory budget: a quarter of the memory available now."""
    return int(DEFAULT_FRACTION * available_memory())


def parse_budget(text: str | int) -> int:
    """Bytes from Dask's byte strings (``"1GB"``, ``"512 MiB"``, ``2e9``); a ValueError if
    `text` is not one, or not more than 0."""
    from dask.utils import parse_bytes

    try:
        if isinstance(text, str) and not text.strip():
            raise ValueError("empty")
        value = parse_bytes(text)
    except (ValueError, TypeError, KeyError):
        raise ValueError(
            f"expected a size in bytes such as 1GB, 512MiB or 2e9, got {text!r}"
        ) from None
    if value <= 0:
        raise ValueError(f"expected a size of more than 0 bytes, got {text!r}")
    return int(value)


def local_threads() -> int:
    """Threads of Dask's local threaded scheduler (its ``num_workers`` setting, else cores)."""
    import dask
    import dask.system

    return int(dask.config.get("num_workers", None) or dask.system.CPU_COUNT)


def worker_capacity(client) -> tuple[int | None, int] | None:
    """(memory limit or None, threads) of the cluster's worker with the least memory per
    thread, or None without workers."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # older distributed: all workers
        info = client.scheduler_info()
    workers = list(info.get("workers", {}).values())
    if not workers:
        return None
    limited = [w for w in workers if w.get("memory_limit")]
    if not limited:
        return None, max(int(w.get("nthreads") or 1) for w in workers)
    tightest = min(limited, key=lambda w: w["memory_limit"] / max(int(w.get("nthreads") or 1), 1))
    return int(tightest["memory_limit"]), max(int(tightest.get("nthreads") or 1), 1)


def budget_and_threads(client=None, budget: int | None = None) -> tuple[int, int]:
    """(bytes, threads) to size chunks for: on this machine, Dask's threads and `budget`
    (default :func:`default_budget`); with a ``dask.distributed`` `client`, per worker: the
    threads of its worker with the least memory per thread, and `budget` (default half that
    worker's memory limit, or :func:`default_budget` for workers without one)."""
    capacity = None if client is None else worker_capacity(client)
    if capacity is None:
        return (default_budget() if budget is None else int(budget)), local_threads()
    limit, threads = capacity
    if budget is None:
        budget = int(WORKER_FRACTION * limit) if limit else default_budget()
    return int(budget), threads


def _scale(dtype) -> int:
    """2 for float64 (and other 8-byte) data, whose results are float64; else 1."""
    return 2 if np.dtype(dtype).itemsize >= 8 else 1


def working_set(
    chunks: Sequence[int],
    dtype,
    operation: str | Footprint,
    threads: int,
    *,
    shape: Sequence[int] | None = None,
    halo: Sequence[int] | None = None,
    in_flight: int | None = None,
) -> int:
    """Estimated peak bytes of computing chunks of `chunks` with `threads` threads.

    Parameters
    ----------
    chunks : sequence of int
        The (largest) chunk size along each axis.
    dtype : dtype
        The input's dtype.
    operation : str or Footprint
        An operation of :data:`FOOTPRINTS`, or its footprint.
    threads : int
        Tasks running at once.
    shape : sequence of int, optional
        The array's shape: an axis held whole by one chunk reads no halo.
    halo : sequence of int, optional
        Voxels each chunk reads from each neighbour, per axis (default none).
    in_flight : int, optional
        Input and result chunks waiting in memory besides the running tasks
        (default: `threads`).

    Returns
    -------
    int
        Bytes.
    """
    work = footprint(operation)
    ndim = len(chunks)
    halo = (0,) * ndim if halo is None else tuple(halo)
    shape = (None,) * ndim if shape is None else tuple(shape)
    extended = math.prod(
        c if n is not None and c >= n else c + 2 * h
        for c, h, n in zip(chunks, halo, shape, strict=True)
    )
    voxels = math.prod(chunks)
    in_flight = threads if in_flight is None else in_flight
    itemsize = np.dtype(dtype).itemsize
    total = threads * work.work * extended + in_flight * (itemsize + work.result) * voxels
    return math.ceil(_scale(dtype) * total)


def budget_chunks(
    shape: Sequence[int],
    dtype,
    operation: str | Footprint,
    threads: int,
    budget: int,
    *,
    halo: Sequence[int] | None = None,
    fixed: Mapping[int, int] | None = None,
    in_flight: int | None = None,
) -> tuple[int, ...]:
    """The largest regular chunks of an array of `shape` whose :func:`working_set` fits in
    `budget` bytes.

    Parameters
    ----------
    shape : sequence of int
        The array's shape.
    dtype : dtype
        Its dtype.
    operation : str or Footprint
        An operation of :data:`FOOTPRINTS` (its memory per voxel), or its footprint.
    threads : int
        Tasks running at once (threads of the local scheduler, or of one worker).
    budget : int
        Bytes the computation may use (besides the process's own).
    halo : sequence of int, optional
        Voxels each chunk reads from each neighbour, per axis; chunks are never
        smaller than their halo.
    fixed : mapping of int to int, optional
        Chunk sizes that must not change, by axis (a reduced axis deep or whole,
        one frame along axis 0); -1 is the whole axis.
    in_flight : int, optional
        Chunks waiting in memory besides the running tasks (default `threads`).

    Returns
    -------
    tuple of int
        One chunk size per axis; all chunks of an axis are that size except a
        smaller last one (regular, as Zarr needs). Axes are shrunk from the
        first; where even the smallest chunks exceed the budget, the smallest
        chunks.

    Examples
    --------
    >>> budget_chunks((512, 256, 256), "float32", "hessian-eigenvalues", 2, 2**30,
    ...               halo=(8, 8, 8))
    (103, 256, 256)
    >>> budget_chunks((40, 256, 256, 256), "float32", "variance", 2, 2**30, fixed={0: 32})
    (32, 12, 256, 256)
    """
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    halo = (0,) * ndim if halo is None else tuple(int(h) for h in halo)
    if len(halo) != ndim:
        raise ValueError(f"halo has {len(halo)} entries for {ndim} axes")
    fixed = {axis % ndim: size for axis, size in (fixed or {}).items()} if ndim else {}
    threads = max(1, int(threads))
    chunks = [
        max(1, min(n, n if fixed.get(a, -1) == -1 else int(fixed[a]))) for a, n in enumerate(shape)
    ]

    def fits(sizes) -> bool:
        needed = working_set(
            sizes, dtype, operation, threads, shape=shape, halo=halo, in_flight=in_flight
        )
        return needed <= budget

    for axis in (a for a in range(ndim) if a not in fixed):
        if fits(chunks):
            break
        smallest = max(1, min(halo[axis], shape[axis]))
        low, high = smallest, shape[axis]  # the largest size in [low, high] that fits
        chunks[axis] = low
        if not fits(chunks):
            continue  # this axis at its smallest is not enough: shrink the next one too
        while low < high:
            middle = (low + high + 1) // 2
            chunks[axis] = middle
            if fits(chunks):
                low = middle
            else:
                high = middle - 1
        chunks[axis] = low
    return tuple(
        size if axis in fixed else _balanced(size, n, halo[axis])
        for axis, (size, n) in enumerate(zip(chunks, shape, strict=True))
    )


def _balanced(size: int, length: int, halo: int) -> int:
    """A chunk size giving as many chunks as `size` does along an axis of `length`, of
    nearly equal sizes (less waste at the end), not smaller than `halo`."""
    if length <= 0:
        return max(size, 1)
    count = -(-length // size)
    balanced = -(-length // count)
    return balanced if balanced >= min(halo, length) else size
