"""Per-voxel statistics along one axis of a stack, and one norm per frame.

The answers to "variance of every voxel of a (x, y, z, k) stack along k" and
"the L2 norm of each of the d sub-volumes of an (a, b, c, d) array".
"""

from __future__ import annotations

import math
import numbers
from functools import partial

import numpy as np

from . import _device, _dispatch, _gpu, _portable
from . import _validation as check
from ._blocks import boxes, frozen, nd_blocks, view_3d
from ._plan import Plan, resolve_workers, task_count

__all__ = ["STATISTICS", "axis_statistic", "frame_norms", "voxel_variance"]

#: Statistics understood by :func:`axis_statistic`.
STATISTICS = ("var", "std", "mean", "min", "max", "sum", "median", "cv")


def voxel_variance(
    stack, axis=-1, ddof=0, skipna=False, *, workers=None, device="auto"
) -> np.ndarray:
    """Variance of every voxel along one axis of a stack.

    Equal to ``np.var(stack.astype(np.float64), axis=axis, ddof=ddof)`` (to the
    rounding of the output dtype), computed in one read of the stack with
    float64 accumulation over cache-sized tiles (exact integer sums for
    integers of up to 16 bits and axes of up to 46340 values), on all cores,
    without an input-sized temporary.

    Parameters
    ----------
    stack : array_like, shape (..., k, ...)
        Real numbers (bool, integer or float) with at least one dimension.
    axis : int, optional
        The axis to reduce (default: the last one, ``k`` in a (x, y, z, k) stack).
    ddof : int, optional
        Delta degrees of freedom: the divisor is ``k - ddof``; must be < ``k``.
    skipna : bool, optional
        If True, NaNs are left out (like ``np.nanvar``); voxels with at most
        `ddof` valid values give NaN. If False (default), NaN propagates.
    workers : int, optional
        Threads to use; default: all cores (1 inside this package's own threads).
    device : {"auto", "cpu", "gpu"}, optional
        Where to compute: ``"cpu"``; ``"gpu"`` (CuPy and a CUDA device: a NumPy
        input is moved in pieces that fit the device and the result comes back
        as NumPy; a CuPy input gives a CuPy result); ``"auto"`` (default): the
        GPU for CuPy input, the CPU for NumPy input.

    Returns
    -------
    variance : ndarray
        ``stack.shape`` without `axis`; float64 for float64 input, float32 otherwise.

    Raises
    ------
    ValueError, TypeError
        On empty or non-numeric input, an axis out of range, or a bad `ddof`.

    Examples
    --------
    >>> import numpy as np
    >>> stack = np.random.default_rng(0).random((10, 10, 10, 5))
    >>> variance = voxel_variance(stack, axis=3)
    >>> variance.shape
    (10, 10, 10)
    >>> bool(np.allclose(variance, stack.var(axis=3)))
    True
    """
    if check.is_dask_array(stack):  # a lazy Dask result (see _dask.py)
        return _gpu.on_dask(
            device,
            stack,
            lambda data: check.dask_functions().voxel_variance(data, axis, ddof, skipna),
        )
    if _device.resolve(device, stack) == "gpu":
        return _gpu.statistic_plan(stack, "var", axis, ddof, skipna).compute()
    return statistic_plan(stack, "var", axis, ddof, skipna, workers=workers).compute()


def axis_statistic(
    stack, statistic, axis=-1, ddof=0, skipna=False, *, workers=None, device="auto"
) -> np.ndarray:
    """One statistic of every voxel along one axis of a stack.

    Parameters
    ----------
    stack : array_like, shape (..., k, ...)
        Real numbers (bool, integer or float) with at least one dimension.
    statistic : {"var", "std", "mean", "min", "max", "sum", "median", "cv"}
        ``cv`` is the coefficient of variation ``std / mean`` (inf or NaN where
        the mean is 0). ``var``, ``std`` and ``cv`` use `ddof`.
    axis : int, optional
        The axis to reduce (default: the last one).
    ddof : int, optional
        Delta degrees of freedom for var, std and cv; must be < ``k``.
    skipna : bool, optional
        Leave NaNs out (like ``np.nanmean`` etc.); a voxel with no valid value
        gives NaN (0 for ``sum``). If False (default), NaN propagates.
    workers : int, optional
        Threads to use; default: all cores.
    device : {"auto", "cpu", "gpu"}, optional
        Where to compute: ``"cpu"``; ``"gpu"`` (CuPy and a CUDA device: a NumPy
        input is moved in pieces that fit the device and the result comes back
        as NumPy; a CuPy input gives a CuPy result); ``"auto"`` (default): the
        GPU for CuPy input, the CPU for NumPy input.

    Returns
    -------
    result : ndarray
        ``stack.shape`` without `axis`. ``min`` and ``max`` keep the input
        dtype; the others are float64 for float64 input and float32 otherwise,
        accumulated in float64 (var, std and cv of integers of up to 16 bits
        in exact integer sums).

    Examples
    --------
    >>> import numpy as np
    >>> stack = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    >>> axis_statistic(stack, "max", axis=0).tolist() == stack.max(axis=0).tolist()
    True
    >>> axis_statistic(stack, "mean", axis=-1)
    array([[ 1.5,  5.5,  9.5],
           [13.5, 17.5, 21.5]], dtype=float32)
    """
    if check.is_dask_array(stack):  # a lazy Dask result (see _dask.py)
        dask = check.dask_functions()
        return _gpu.on_dask(
            device, stack, lambda data: dask.axis_statistic(data, statistic, axis, ddof, skipna)
        )
    if _device.resolve(device, stack) == "gpu":
        return _gpu.statistic_plan(stack, statistic, axis, ddof, skipna).compute()
    return statistic_plan(stack, statistic, axis, ddof, skipna, workers=workers).compute()


def frame_norms(stack, axis=-1, ord=2, *, workers=None, device="auto") -> np.ndarray:
    """One norm per index along `axis`: the norm of each sub-array ("frame").

    For an (a, b, c, d) array and ``axis=-1`` this is the L2 norm of each of the
    ``d`` (a, b, c) sub-arrays, equal to
    ``[np.linalg.norm(m.ravel(), ord) for m in np.moveaxis(stack, axis, 0)]``,
    computed in one read of the stack without a Python loop over frames.

    Parameters
    ----------
    stack : array_like
        Real numbers with at least one dimension.
    axis : int, optional
        The frame axis (default: the last one).
    ord : float, optional
        Order of the vector norm of each flattened frame: any positive number
        (2 is the Euclidean norm, 1 the sum of absolute values) or ``np.inf``
        (the largest absolute value).
    workers : int, optional
        Threads to use; default: all cores.
    device : {"auto", "cpu", "gpu"}, optional
        Where to compute: ``"cpu"``; ``"gpu"`` (CuPy and a CUDA device: a NumPy
        input is moved in pieces that fit the device and the result comes back
        as NumPy; a CuPy input gives a CuPy result); ``"auto"`` (default): the
        GPU for CuPy input, the CPU for NumPy input.

    Returns
    -------
    norms : ndarray of float64, shape (stack.shape[axis],)
        Accumulated in float64, except for float32 stacks with ``ord`` 1 or 2,
        whose absolute values or squares are summed in float32 over blocks of
        256 values first (20% faster out of cache; relative errors of 3e-10 to
        3e-9 measured on 4-million-voxel frames, at most 1.5e-5 in theory, where
        NumPy's float32 ``np.linalg.norm`` errs by 4e-6 on the same frames).
        A block whose float32 sum would overflow or underflow is summed in float64.

    Examples
    --------
    >>> import numpy as np
    >>> mat = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    >>> norms = frame_norms(mat)
    >>> bool(np.allclose(norms, [np.linalg.norm(m) for m in np.moveaxis(mat, -1, 0)]))
    True
    """
    if check.is_dask_array(stack):  # a lazy Dask result (see _dask.py)
        return _gpu.on_dask(
            device, stack, lambda data: check.dask_functions().frame_norms(data, axis, ord)
        )
    if _device.resolve(device, stack) == "gpu":
        return _gpu.frame_norms_plan(stack, axis, ord).compute()
    return frame_norms_plan(stack, axis, ord, workers=workers).compute()


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _kernel_view(stack: np.ndarray) -> np.ndarray:
    """The stack as the kernels read it: bool as uint8 (same bytes), others unchanged."""
    return stack.view(np.uint8) if stack.dtype == np.bool_ else stack


def _nan_median(block: np.ndarray, axis: int) -> np.ndarray:
    """Median ignoring NaNs along `axis`; NaN where a line has no valid value.

    Written with a sort instead of ``np.nanmedian`` so that all-NaN lines give
    NaN without a warning (warnings filters are not thread-safe).
    """
    ordered = np.sort(block, axis=axis)  # NaNs sort last
    valid = np.count_nonzero(~np.isnan(ordered), axis=axis, keepdims=True)
    low = np.take_along_axis(ordered, np.maximum(valid - 1, 0) // 2, axis=axis)
    high = np.take_along_axis(ordered, np.maximum(valid, 1) // 2, axis=axis)
    median = np.squeeze((low.astype(np.float64) + high) / 2, axis=axis)
    median[np.squeeze(valid, axis=axis) == 0] = np.nan
    return median


def _task_bytes(nbytes: int, statistic: str = "") -> int:
    """Work size to cut into tasks: the streaming kernels read ~10 GB/s per core, so a
    task of TASK_BYTES would take well under a millisecond and the pool's overhead per
    task (tens of microseconds) would show; count their bytes as a quarter (tasks of
    ~16 MiB, a few milliseconds). The median (a sorting network, or NumPy's selection
    beyond `_kernels.MEDIAN_NETWORK_ROWS` values) keeps the default size.
    """
    return nbytes if statistic == "median" else nbytes // 4


#: Shortest line whose minimum or maximum NumPy's own reduction takes (vectorised along
#: a line, it beats our loop from lines of about 128 on; 2x to 10x slower below 64).
_NUMPY_EXTREMUM_LINES = 128

#: Bytes of lines copied at a time when they are not contiguous (a cache-sized block).
_COPIED_BYTES = 2**20


def _reduce_lines(kernel, x3, o0, o1, out2) -> None:
    """Run ``kernel(lines, p0, p1, results)`` (a line kernel's ``o0..o1`` range) on lines
    ``o0..o1`` of ``x3`` (outer, n, 1) into ``out2[:, 0]``: at once when they are
    C-contiguous, else copied a few at a time (`_COPIED_BYTES`), since the kernels read
    them from a flat array."""
    lines, results, n = x3[:, :, 0], out2[:, 0], x3.shape[1]
    if lines.flags.c_contiguous:
        kernel(lines, o0, o1, results)
        return
    step = max(1, _COPIED_BYTES // (n * lines.itemsize))
    for c0 in range(o0, o1, step):
        c1 = min(c0 + step, o1)
        kernel(frozen(np.ascontiguousarray(lines[c0:c1])), 0, c1 - c0, results[c0:c1])


def _box_reducer(statistic: str, ddof: int, skipna: bool):
    """Function ``reduce(x3, o0, o1, j0, j1, out2)`` computing one box of the result."""
    if statistic == "median":
        func = _nan_median if skipna else np.median

        from . import _kernels
        from ._kernels.median import median_statistic

        def reduce_median(x3, o0, o1, j0, j1, out2):
            n = x3.shape[1]
            if n > _kernels.MEDIAN_NETWORK_ROWS:
                out2[o0:o1, j0:j1] = func(x3[o0:o1, :, j0:j1], axis=1)
                return
            first, second = _kernels.median_network(n)
            exact = np.float32 if x3.dtype.itemsize <= 2 or x3.dtype == np.float32 else np.float64
            tile = _kernels.median_tile(n, np.dtype(exact).itemsize)
            rows = np.empty((n, tile), exact)  # values exact in this dtype
            median_statistic(x3, o0, o1, j0, j1, first, second, skipna, rows, out2)

        return reduce_median

    from . import _kernels

    if statistic in ("min", "max"):
        from ._kernels.extrema import extremum_lines, extremum_short_lines, extremum_statistic

        want_max = statistic == "max"
        if want_max:
            ufunc = np.fmax if skipna else np.maximum
        else:
            ufunc = np.fmin if skipna else np.minimum

        def reduce_extremum(x3, o0, o1, j0, j1, out2):
            n, inner = x3.shape[1], x3.shape[2]
            if inner == 1 and n >= _NUMPY_EXTREMUM_LINES:  # NumPy's reduction, our threads
                ufunc.reduce(x3[o0:o1, :, j0:j1], axis=1, out=out2[o0:o1, j0:j1])
            elif inner == 1 and n <= _kernels.SHORT_LINES:  # one kernel per line length

                def kernel(lines, p0, p1, into):
                    extremum_short_lines(lines, (0,) * n, p0, p1, want_max, skipna, into)

                _reduce_lines(kernel, x3, o0, o1, out2)
            elif inner == 1:
                extremum_lines(x3, o0, o1, want_max, skipna, out2)
            else:
                extremum_statistic(x3, o0, o1, j0, j1, want_max, skipna, out2)

        return reduce_extremum

    from ._kernels.integer_moments import (
        integer_moment_statistic,
        integer_moment_statistic_paired_lines,
        integer_moment_statistic_short_lines,
    )
    from ._kernels.line_moments import moment_statistic_lines, moment_statistic_short_lines
    from ._kernels.moments import (
        cv_statistic,
        moment_statistic_skipna,
        sum_statistic,
        variance_statistic,
    )

    code = {
        "mean": _kernels.STAT_MEAN,
        "var": _kernels.STAT_VAR,
        "std": _kernels.STAT_STD,
        "cv": _kernels.STAT_CV,
        "sum": _kernels.STAT_SUM,
    }[statistic]

    def reduce_moments(x3, o0, o1, j0, j1, out2):
        # Variances of integers of up to 16 bits are computed exactly in integer sums.
        exact = (
            statistic in ("var", "std", "cv")
            and x3.dtype.kind in "iu"
            and x3.dtype.itemsize <= 2
            and x3.shape[1] <= _kernels.EXACT_INTEGER_LINES
        )
        if skipna:
            moment_statistic_skipna(x3, o0, o1, j0, j1, ddof, code, out2)
        elif x3.shape[2] == 1:  # lines (a stack reduced along its last axis)
            n = x3.shape[1]
            if n > _kernels.SHORT_LINES:

                def kernel(part, p0, p1, into):
                    moment_statistic_lines(part, p0, p1, ddof, code, into)

            elif exact and x3.dtype.itemsize == 2 and n % 2 == 0:  # 16-bit pairs as words

                def kernel(part, p0, p1, into):
                    flip = _kernels.SIGNED_HALVES if part.dtype.kind == "i" else np.uint32(0)
                    words = part.view(np.uint32)
                    integer_moment_statistic_paired_lines(
                        words, (0,) * (n // 2), flip, p0, p1, ddof, code, into
                    )
            else:  # short lines: one kernel per length
                short = (
                    integer_moment_statistic_short_lines if exact else moment_statistic_short_lines
                )

                def kernel(part, p0, p1, into):
                    short(part, (0,) * n, p0, p1, ddof, code, into)

            _reduce_lines(kernel, x3, o0, o1, out2)
        elif exact:
            integer_moment_statistic(x3, o0, o1, j0, j1, ddof, code, out2)
        elif code in (_kernels.STAT_MEAN, _kernels.STAT_SUM):
            mean = code == _kernels.STAT_MEAN
            sum_statistic(x3, o0, o1, j0, j1, mean, out2)
        elif code in (_kernels.STAT_VAR, _kernels.STAT_STD):
            std = code == _kernels.STAT_STD
            variance_statistic(x3, o0, o1, j0, j1, ddof, std, out2)
        else:
            cv_statistic(x3, o0, o1, j0, j1, ddof, out2)

    return reduce_moments


def statistic_plan(stack, statistic, axis=-1, ddof=0, skipna=False, *, workers=None) -> Plan:
    """Checked, ready-to-run plan of :func:`axis_statistic` (see there)."""
    statistic = check.check_choice(statistic, "statistic", STATISTICS)
    stack = check.as_numeric_array(stack, "stack")
    axis = check.normalize_axis(axis, stack.ndim)
    length = stack.shape[axis]
    ddof = check.check_int(ddof, "ddof", minimum=0)
    if statistic in ("var", "std", "cv") and ddof >= length:
        raise ValueError(f"ddof={ddof} must be smaller than the length of axis {axis} ({length})")
    skipna = _check_bool(skipna, "skipna") and stack.dtype.kind == "f"
    workers = resolve_workers(workers)

    out_shape = stack.shape[:axis] + stack.shape[axis + 1 :]
    if statistic in ("min", "max"):
        out_dtype = stack.dtype
    else:
        out_dtype = check.result_float_dtype(stack.dtype)
    out = np.empty(out_shape, out_dtype)
    outer, inner = math.prod(stack.shape[:axis]), math.prod(stack.shape[axis + 1 :])
    out2 = _kernel_view(out).reshape(outer, inner)
    reduce = _box_reducer(statistic, ddof, skipna) if _dispatch.numba_ready() else None
    portable = partial(_portable_box, statistic, ddof, skipna)
    count = task_count(_task_bytes(stack.nbytes, statistic), outer * inner, workers)

    data = _kernel_view(stack)
    x3 = view_3d(data, axis) if data.dtype != np.float16 else None
    if x3 is not None:
        pieces = [(x3, *box, out2) for box in boxes(outer, inner, count)]
    else:
        # Not viewable as (outer, n, inner), or float16: copy one block at a time.
        work_dtype = check.compute_dtype(data.dtype)

        def reduce_block(reducer, index):
            block = np.ascontiguousarray(data[index], dtype=work_dtype)
            block3 = view_3d(block, axis)
            result = np.empty((block3.shape[0], block3.shape[2]), check.compute_dtype(out_dtype))
            reducer(block3, 0, block3.shape[0], 0, block3.shape[2], _kernel_view(result))
            out_index = index[:axis] + index[axis + 1 :]
            out[out_index] = result.reshape(out[out_index].shape)

        pieces = [(index,) for index in nd_blocks(stack.shape, count, axis)]
        reduce = reduce and partial(reduce_block, reduce)
        portable = partial(reduce_block, portable)
    tasks = _dispatch.tasks(
        reduce and [partial(reduce, *piece) for piece in pieces],
        [partial(portable, *piece) for piece in pieces],
    )
    return Plan.from_tasks(tasks, lambda: out, workers, f"{statistic} along axis {axis}")


def _portable_box(statistic, ddof, skipna, x3, o0, o1, j0, j1, out2) -> None:
    """The portable twin of a `_box_reducer` function."""
    box = x3[o0:o1, :, j0:j1]
    out2[o0:o1, j0:j1] = _portable.axis_statistic(box, statistic, 1, ddof, skipna)


def _check_ord(ord) -> float:
    if isinstance(ord, bool | np.bool_) or not isinstance(ord, numbers.Real):
        raise TypeError(f"ord must be a number (a positive float or np.inf), got {ord!r}")
    ord = float(ord)
    if not ord > 0:
        raise ValueError(f"ord must be positive (or np.inf), got {ord}")
    return ord


#: Values of the float64 scratch of `_add_numpy_powers` (1 MiB, in cache).
_POWER_CHUNK = 2**17


def _add_numpy_powers(x3, o0, o1, j0, j1, power, partial_sums) -> None:
    """Add ``sum(|x| ** power)`` of each frame of the box ``x3[o0:o1, :, j0:j1]`` to
    `partial_sums`, with NumPy's float64 power on cache-sized chunks (NaN and inf as
    ``np.linalg.norm``). Chunks run along the inner axis, or over several outer rows
    when the inner axis is short (lines along the last axis)."""
    frames, inner = x3.shape[1], j1 - j0
    per_frame = max(1, _POWER_CHUNK // frames)
    if inner >= per_frame:
        chunks = [
            (o, o + 1, c, min(c + per_frame, j1))
            for o in range(o0, o1)
            for c in range(j0, j1, per_frame)
        ]
    else:
        rows = max(1, per_frame // inner)
        chunks = [(a, min(a + rows, o1), j0, j1) for a in range(o0, o1, rows)]
    for a, b, c, d in chunks:
        part = np.abs(x3[a:b, :, c:d], dtype=np.float64)
        np.power(part, power, out=part)
        partial_sums += part.sum(axis=(0, 2))


def frame_norms_plan(stack, axis=-1, ord=2, *, workers=None) -> Plan:
    """Checked, ready-to-run plan of :func:`frame_norms` (see there)."""
    from . import _kernels

    stack = check.as_numeric_array(stack, "stack")
    axis = check.normalize_axis(axis, stack.ndim)
    power = _check_ord(ord)
    workers = resolve_workers(workers)
    if power == 2:
        kind = _kernels.NORM_SQUARES
    elif power == 1:
        kind = _kernels.NORM_ABS
    elif math.isinf(power):
        kind = _kernels.NORM_MAX
    else:
        kind = _kernels.NORM_POWER

    length = stack.shape[axis]
    count = task_count(_task_bytes(stack.nbytes), stack.size // length, workers)
    data = _kernel_view(stack)
    # float32 partial sums (see _kernels.norms._single_sums); None compiles no such branch
    single = True if data.dtype == np.float32 else None
    x3 = view_3d(data, axis) if data.dtype != np.float16 else None
    # Each task accumulates its own partial sums per frame; they are merged at the end.
    partials: list[tuple[slice, np.ndarray]] = []
    # Orders the kernels cannot raise by repeated squaring (2.7, say) take NumPy's power,
    # vectorised where numba's is one `pow` call per value (5x slower on this machine).
    numpy_powers = kind == _kernels.NORM_POWER and not _kernels.by_squaring(power)
    kernels = not numpy_powers and _dispatch.numba_ready()

    def accumulate(x, o0, o1, j0, j1, frames: slice):
        from ._kernels.norms import frame_norm_partials

        partial_sums = np.zeros(x.shape[1])
        frame_norm_partials(x, o0, o1, j0, j1, kind, power, single, partial_sums)
        partials.append((frames, partial_sums))  # list.append is atomic

    def accumulate_portable(x, o0, o1, j0, j1, frames: slice):
        if numpy_powers:
            partial_sums = np.zeros(x.shape[1])
            _add_numpy_powers(x, o0, o1, j0, j1, power, partial_sums)
        else:
            partial_sums = _portable.frame_norm_partials(x[o0:o1, :, j0:j1], 1, power)
        partials.append((frames, partial_sums))

    whole = slice(0, length)
    if x3 is not None and x3.shape[2] == 1 and x3.flags.c_contiguous and not numpy_powers:
        # frames interleaved (reduced along the last axis): one long vectorised loop per task
        flat = x3.reshape(-1)

        def accumulate_flat(o0, o1):
            from ._kernels.norms import frame_norm_partials_flat

            partial_sums = np.zeros(length)
            frame_norm_partials_flat(
                flat, o0 * length, o1 * length, length, kind, power, single, partial_sums
            )
            partials.append((whole, partial_sums))

        pieces = [(x3, o0, o1, 0, 1, whole) for o0, o1, _, _ in boxes(x3.shape[0], 1, count)]
        kernel_tasks = [partial(accumulate_flat, *piece[1:3]) for piece in pieces]
        portable_tasks = [partial(accumulate_portable, *piece) for piece in pieces]
    elif x3 is not None:
        pieces = [(x3, *box, whole) for box in boxes(x3.shape[0], x3.shape[2], count)]
        kernel_tasks = [partial(accumulate, *piece) for piece in pieces]
        portable_tasks = [partial(accumulate_portable, *piece) for piece in pieces]
    else:
        work_dtype = check.compute_dtype(data.dtype)

        def accumulate_block(accumulator, index):
            block3 = view_3d(np.ascontiguousarray(data[index], dtype=work_dtype), axis)
            accumulator(block3, 0, block3.shape[0], 0, block3.shape[2], index[axis])

        indices = nd_blocks(stack.shape, count)
        kernel_tasks = [partial(accumulate_block, accumulate, index) for index in indices]
        portable_tasks = [partial(accumulate_block, accumulate_portable, i) for i in indices]

    def finish():
        totals = np.zeros(length)
        for frames, partial_sums in partials:
            if kind == _kernels.NORM_MAX:
                np.maximum(totals[frames], partial_sums, out=totals[frames])
            else:
                totals[frames] += partial_sums
        if kind == _kernels.NORM_SQUARES:
            return np.sqrt(totals)
        if kind == _kernels.NORM_POWER:
            return totals ** (1.0 / power)
        return totals

    tasks = _dispatch.tasks(kernel_tasks if kernels else None, portable_tasks)
    return Plan.from_tasks(tasks, finish, workers, f"norm of each frame along axis {axis}")
