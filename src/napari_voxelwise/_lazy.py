"""Run a lazy (Dask) result chunk by chunk, into memory or into a zarr store.

The public functions return a lazy Dask array for Dask input. Panels need more:
progress per chunk, cancel between chunks, and results that do not fit in
memory written to disk. :func:`dask_result_plan` gives all three as a
:class:`~napari_voxelwise._plan.Plan`, so the runner treats it like any other.
Work goes to the active ``dask.distributed`` client when there is one
(:func:`where_it_runs` says which). No Qt, no napari here.
"""

from __future__ import annotations

import atexit
import itertools
import math
import os
import shutil
import sys
import tempfile

import numpy as np

from ._plan import Plan, default_workers
from ._validation import is_dask_array

#: results larger than this fraction of the available memory go to a zarr store
IN_MEMORY_FRACTION = 0.25
#: temporary stores made here (store path -> its folder), removed at exit at the latest
_temporary_stores: dict[str, str] = {}


def active_client():
    """The current ``dask.distributed`` client, or None (never imports distributed)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:  # no client
        return None


def where_it_runs() -> str:
    """A short text for the panels: this machine's threads, or the cluster's scheduler."""
    client = active_client()
    if client is not None:
        return f"Runs on the Dask cluster at {client.scheduler.address}"
    return f"Runs on this machine ({default_workers()} threads)"


def should_store(nbytes: int, available_bytes: int) -> bool:
    """Whether results of `nbytes` are too large to compute into memory comfortably."""
    return nbytes > IN_MEMORY_FRACTION * available_bytes


def temporary_store(prefix: str = "napari-voxelwise-") -> str:
    """A path for a new zarr store in a new temporary folder.

    The store does not exist yet (:func:`dask_result_plan` creates it); its
    folder is removed by :func:`remove_store`, or when Python exits.
    """
    folder = tempfile.mkdtemp(prefix=prefix)
    path = os.path.join(folder, "result.zarr")
    _temporary_stores[path] = folder
    return path


def is_temporary_store(path) -> bool:
    """Whether `path` is a store made by :func:`temporary_store` and not removed yet."""
    return path in _temporary_stores


def remove_store(path: str) -> None:
    """Remove a temporary store made by :func:`temporary_store` (others are left alone)."""
    folder = _temporary_stores.pop(path, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _remove_all_stores() -> None:
    for path in list(_temporary_stores):
        remove_store(path)


atexit.register(_remove_all_stores)


def budgeted(data, operation: str, *, halo=None, fixed=None, budget: int | None = None):
    """`data` as a Dask array whose chunks fit a memory budget for `operation`.

    The budget is `budget` bytes (default: a quarter of the memory available, or half
    a worker's memory limit on an active ``dask.distributed`` cluster), shared by the
    threads that compute (this machine's, or one worker's) and the ``2 x threads``
    chunks that :func:`dask_result_plan` holds per step; chunks are sized by
    :func:`napari_voxelwise._budget.budget_chunks` (`halo`, `fixed` are its). A Zarr
    (or other) array is read in those chunks; a Dask array is rechunked only where its
    chunks exceed them.
    """
    import dask.array as da

    from . import _budget

    client = active_client()
    budget, threads = _budget.budget_and_threads(client, budget)
    if client is None:
        threads = default_workers()
    sizing = {"halo": halo, "in_flight": 2 * threads}
    chunks = _budget.budget_chunks(
        data.shape, data.dtype, operation, threads, budget, fixed=fixed, **sizing
    )
    if not is_dask_array(data):
        return da.from_array(data, chunks=chunks)
    present = tuple(max(sizes, default=1) for sizes in data.chunks)
    needed = _budget.working_set(
        present, data.dtype, operation, threads, shape=data.shape, **sizing
    )
    if needed <= budget:
        return data
    return data.rechunk(tuple(min(c, p) for c, p in zip(chunks, present, strict=True)))


def dask_result_plan(
    result, store: str | os.PathLike | None = None, description: str = ""
) -> Plan:
    """A plan that computes the Dask array `result` a few chunks per step.

    Parameters
    ----------
    result : dask.array.Array
        The lazy result (a public function's output for Dask input).
    store : path, optional
        Write the result to a new zarr store there (it must not exist) and
        return it as a lazy Dask array over that store; by default the result
        is computed into a NumPy array.
    description : str
        Progress bar text.

    Returns
    -------
    Plan
        Its result is a NumPy array, or a Dask array reading the zarr store.
        Steps compute ``2 x workers`` chunks at once (on the distributed
        client when one is active), so cancel takes effect between them.
    """
    if not is_dask_array(result):
        raise TypeError(f"result must be a Dask array, got {type(result).__name__}")
    if store is not None and os.path.exists(store):
        raise ValueError(f"store {os.fspath(store)!r} already exists; choose a new path")
    indices = list(itertools.product(*(range(n) for n in result.numblocks)))
    starts = [np.cumsum((0, *chunks)) for chunks in result.chunks]
    batch = 2 * default_workers()
    total = math.ceil(len(indices) / batch) if indices else 1

    def slices(index):
        return tuple(
            slice(int(bounds[i]), int(bounds[i + 1]))
            for bounds, i in zip(starts, index, strict=True)
        )

    def run():
        import dask

        if store is None:
            out = np.empty(result.shape, result.dtype)
        else:
            import zarr

            out = zarr.open_array(
                os.fspath(store),
                mode="w-",
                shape=result.shape,
                chunks=tuple(max(1, c[0]) for c in result.chunks) or None,
                dtype=result.dtype,
            )
        client = active_client()
        for first in range(0, len(indices), batch):
            group = indices[first : first + batch]
            parts = [result.blocks[index] for index in group]
            if client is not None:
                values = client.gather(client.compute(parts))
            else:
                values = dask.compute(*parts, scheduler="threads")
            for index, value in zip(group, values, strict=True):
                out[slices(index)] = value
            yield
        if not indices:
            yield
        if store is None:
            return out
        import dask.array as da

        return da.from_zarr(os.fspath(store))

    return Plan(total, run, description)
