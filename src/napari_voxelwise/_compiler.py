"""The compiler process: compiles numba kernels into numba's disk cache for another process.

:mod:`napari_voxelwise._dispatch` starts it as ``python -m napari_voxelwise._compiler``
so that compiling (seconds of pure Python and LLVM work holding the GIL) never runs in
the process that computes, or shows napari's viewer. It reads one JSON job per line on
its standard input and answers each with one JSON line on its standard output:

- ``{"kernels": [request, ...]}``: compile each kernel for the argument types of the
  request (see :func:`napari_voxelwise._dispatch.describe_type`);
- ``{"warmup": {"operations": [...], "dtypes": [...]}}``: run the warm-up calls of
  :mod:`napari_voxelwise._warmup` (which compile what those operations need).

The answer is ``{"seconds": s}``, or ``{"error": message}``. It runs at low priority,
and a lock file per kernel keeps two compiler processes (of two test workers, say) from
compiling one kernel at once: the second then loads it from the cache. It exits at the
end of its input.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path


@contextlib.contextmanager
def _exclusive(key: str):
    """Hold a lock on a file named after `key` (no lock where fcntl does not exist)."""
    try:
        import fcntl
    except ImportError:  # not on a POSIX system
        yield
        return
    folder = Path(tempfile.gettempdir()) / f"napari-voxelwise-compiling-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    name = hashlib.sha1(key.encode()).hexdigest()[:20]
    with open(folder / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _do(job: dict) -> None:
    from . import _dispatch, _warmup

    if "kernels" in job:
        for request in job["kernels"]:
            with _exclusive(json.dumps(request, sort_keys=True)):
                _dispatch.load(request)  # compiles here, and saves into the cache
    elif "warmup" in job:
        operations, dtypes = job["warmup"]["operations"], job["warmup"]["dtypes"]
        for operation in operations:
            for dtype in dtypes:
                with _exclusive(f"warmup {operation} {dtype}"):
                    _warmup.run([operation], [dtype])
    else:
        raise ValueError(f"unknown job {sorted(job)}")


def main() -> None:
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # anything printed goes to stderr
    with contextlib.suppress(AttributeError, OSError):
        os.nice(10)  # the user's computations first
    from . import _dispatch

    _dispatch._compiling_here = True
    _dispatch.numba_ready(wait=True)
    for line in sys.stdin:
        began = time.perf_counter()
        try:
            _do(json.loads(line))
            answer = {"seconds": time.perf_counter() - began}
        except Exception as error:
            answer = {"error": f"{type(error).__name__}: {error}"}
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
