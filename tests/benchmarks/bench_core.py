"""Benchmark the numeric core against its peers, measured in the same run.

Run from the repository root (a few minutes on a 2-core machine)::

    python tests/benchmarks/bench_core.py            # full sizes, the targets of issue #5
    python tests/benchmarks/bench_core.py --quick    # small sizes (a smoke run, seconds)
    python tests/benchmarks/bench_core.py --only hessian,density --markdown table.md

It prints one table: case, implementation, median seconds, speed relative to
the best peer (peer seconds / these seconds: above 1 is faster), time relative
to the floor (a read of the input once, or a copy of the bytes that must be
copied, measured here, in turn with our calls), peak extra memory (tracemalloc:
every NumPy buffer allocated during one call, beyond the inputs), input GB/s,
and for our rows the target and whether this run met it.

Not collected by pytest (the file name does not start with ``test_``);
``tests/test_benchmarks.py`` runs it with ``--quick`` so it keeps working.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

import napari_voxelwise as vw

MIB = 2**20


@dataclass
class Row:
    case: str
    implementation: str
    seconds: float
    peak_mib: float
    input_bytes: int
    ours: bool = False
    speed_vs_peer: float | None = None
    vs_floor: float | None = None
    target: str = ""


@dataclass
class Case:
    """One benchmark: our function, its peers and how to judge the result."""

    name: str
    input_bytes: int
    ours: object
    peers: dict = field(default_factory=dict)
    floor: object = None  # the floor's operation, timed in turn with ours
    targets: list = field(default_factory=list)  # (text, check(row, peers) -> met, (met, figure))


def timed(function, repeat: int, warm_up: bool = True) -> float:
    """Median wall time of `repeat` calls, after a warm-up call (which also compiles)."""
    if warm_up:
        function()
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_in_turn(first, second, repeat: int) -> tuple[float, float]:
    """Median wall times of `first` and `second`, called in turn `repeat` times after a warm-up.

    For the two sides of a ratio (our call and its floor, or two of our cases): timed one
    after the other, minutes apart, their ratio also measures how the shared machine's speed
    drifted in between (a window-32 density map once came out at 1.32x its window-3 case
    that way, and at 1.0x called in turn).
    """
    times: tuple[list, list] = ([], [])
    for function in (first, second):
        function()
    for _ in range(repeat):
        for function, series in zip((first, second), times, strict=True):
            gc.collect()
            start = time.perf_counter()
            function()
            series.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def peak_extra_mib(function) -> float:
    """Peak memory allocated by one call (tracemalloc sees every NumPy buffer)."""
    gc.collect()
    tracemalloc.start()
    try:
        result = function()
        del result
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / MIB


_FLOOR_POOL = ThreadPoolExecutor(2)
_READS: dict[int, object] = {}


def read_operation(nbytes: int):
    """The read floor: a call that reads `nbytes` once with two threads (np.max of each half).

    np.max is vectorised and memory-bound. np.sum is not a floor: its pairwise float32 loop
    runs at 6-7 GB/s a thread on the reference machine, half of what the memory delivers, and
    an earlier version of this script that timed it flattered every "time vs floor" by up to 2x.
    Made at each input's own size (and kept), since an input that fits the last-level cache
    is read faster than one that does not, in the benchmark's repeated calls too; timed in
    turn with our calls (`run_case`).
    """
    if nbytes not in _READS:
        data = np.ones(max(nbytes // 4, 2), np.float32)
        halves = [data[: data.size // 2], data[data.size // 2 :]]
        _READS[nbytes] = lambda: list(_FLOOR_POOL.map(np.max, halves))
    return _READS[nbytes]


def read_seconds(nbytes: int) -> float:
    """Seconds to read `nbytes` once with two threads (the bandwidth printed at the start)."""
    return timed(read_operation(nbytes), 7)


def fresh_write_seconds(nbytes: int) -> float:
    """Seconds to allocate and fill a new array of `nbytes` with two threads: the cost of a
    new result's first touch (page faults and the kernel's zeroing), in no floor above."""
    halves = (slice(0, nbytes // 8), slice(nbytes // 8, nbytes // 4))

    with ThreadPoolExecutor(2) as pool:

        def write():
            target = np.empty(nbytes // 4, np.float32)
            list(pool.map(lambda part: target[part].fill(1), halves))

        return timed(write, 7)


def copy_operation(nbytes: int):
    """The copy floor: a call that copies `nbytes` into already written memory, each half on
    its own thread (one thread's `np.copyto` took 1.8x as long here: 76 against 42 ms for
    732 MiB, so the single-threaded floor used until the thirteenth session was too lenient)."""
    source = np.ones(nbytes // 4, np.float32)
    target = np.empty_like(source)
    half = source.size // 2
    parts = [slice(0, half), slice(half, None)]
    return lambda: list(_FLOOR_POOL.map(lambda part: np.copyto(target[part], source[part]), parts))


# ------------------------------------------------------------------------------- cases


def variance_cases(scale: float) -> list[Case]:
    import dask.array as da

    rng = np.random.default_rng(0)
    n = int(256 * scale)
    cases = []
    for dtype in (np.float32, np.uint16):
        first = rng.random((8, n, n, n), dtype=np.float32)
        if dtype == np.uint16:
            first = (first * 65535).astype(np.uint16)
        last = np.ascontiguousarray(np.moveaxis(first, 0, -1))
        for stack, axis, layout in (
            (first, 0, f"(8,{n},{n},{n}) axis 0"),
            (last, -1, f"({n},{n},{n},8) axis -1"),
        ):
            output_mib = stack.size // 8 * 4 / MIB
            cases.append(
                Case(
                    name=f"voxel_variance {np.dtype(dtype).name} {layout}",
                    input_bytes=stack.nbytes,
                    ours=lambda s=stack, a=axis: vw.voxel_variance(s, axis=a),
                    peers={
                        "np.var": lambda s=stack, a=axis: np.var(s, axis=a),
                        "dask var (threads)": lambda s=stack, a=axis: (
                            da.from_array(s, chunks="auto")
                            .var(axis=a)
                            .compute(scheduler="threads")
                        ),
                    },
                    floor=read_operation(stack.nbytes),
                    targets=[
                        (
                            ">= 4x np.var",
                            lambda row, peers: row.seconds * 4 <= peers["np.var"].seconds,
                        ),
                        ("<= 2x read floor", lambda row, peers: row.vs_floor <= 2),
                        (
                            f"peak <= output + 64 MiB ({output_mib + 64:.0f})",
                            lambda row, peers, limit=output_mib + 64: row.peak_mib <= limit,
                        ),
                    ],
                )
            )
    return cases


def statistic_cases(scale: float) -> list[Case]:
    rng = np.random.default_rng(1)
    n = int(256 * scale)
    first = rng.random((8, n, n, n), dtype=np.float32)
    last = np.ascontiguousarray(np.moveaxis(first, 0, -1))
    cases = []
    for statistic in ("mean", "std", "min", "max", "median"):
        for stack, axis in ((first, 0), (last, -1)):
            cases.append(
                Case(
                    name=f"axis_statistic {statistic} float32 {stack.shape} axis {axis}",
                    input_bytes=stack.nbytes,
                    ours=lambda s=stack, a=axis, st=statistic: vw.axis_statistic(s, st, axis=a),
                    peers={
                        f"np.{statistic}": lambda s=stack, a=axis, st=statistic: getattr(np, st)(
                            s, axis=a
                        )
                    },
                    floor=read_operation(stack.nbytes),
                    targets=[(">= 2x numpy", lambda row, peers: row.speed_vs_peer >= 2)],
                )
            )
    # long lines along the last axis (more than the 16 of the per-length kernels)
    lines = first.reshape(-1, n)
    for statistic in ("mean", "var"):
        cases.append(
            Case(
                name=f"axis_statistic {statistic} float32 {lines.shape} axis -1",
                input_bytes=lines.nbytes,
                ours=lambda st=statistic: vw.axis_statistic(lines, st, axis=-1),
                peers={f"np.{statistic}": lambda st=statistic: getattr(np, st)(lines, axis=-1)},
                floor=read_operation(lines.nbytes),
                targets=[(">= 2x numpy", lambda row, peers: row.speed_vs_peer >= 2)],
            )
        )
    # a temporal median (a background estimate): 200 frames, the sorting network of 200
    series = rng.random((200, int(256 * scale), int(512 * scale)), dtype=np.float32)
    cases.append(
        Case(
            name=f"axis_statistic median float32 {series.shape} axis 0",
            input_bytes=series.nbytes,
            ours=lambda: vw.axis_statistic(series, "median", axis=0),
            peers={"np.median": lambda: np.median(series, axis=0)},
            floor=read_operation(series.nbytes),
            targets=[(">= 2x numpy", lambda row, peers: row.speed_vs_peer >= 2)],
        )
    )
    return cases


def norm_cases(scale: float) -> list[Case]:
    rng = np.random.default_rng(2)
    n = int(256 * scale)
    first = rng.random((8, n, n, n), dtype=np.float32)
    last = np.ascontiguousarray(np.moveaxis(first, 0, -1))
    cases = []
    for stack, axis, subscripts in ((first, 0, "ij,ij->i"), (last, -1, "ij,ij->j")):
        matrix = stack.reshape(8, -1) if axis == 0 else stack.reshape(-1, 8)
        cases.append(
            Case(
                name=f"frame_norms float32 {stack.shape} axis {axis}",
                input_bytes=stack.nbytes,
                ours=lambda s=stack, a=axis: vw.frame_norms(s, axis=a),
                peers={
                    "seed: map(np.linalg.norm)": lambda s=stack, a=axis: list(
                        map(np.linalg.norm, np.moveaxis(s, a, 0))
                    ),
                    "np.einsum": lambda m=matrix, sub=subscripts: np.sqrt(np.einsum(sub, m, m)),
                },
                floor=read_operation(stack.nbytes),
                targets=[("<= 1.5x read floor", lambda row, peers: row.vs_floor <= 1.5)],
            )
        )
    cases.append(
        Case(
            name=f"frame_norms ord inf float32 {first.shape} axis 0",
            input_bytes=first.nbytes,
            ours=lambda: vw.frame_norms(first, axis=0, ord=np.inf),
            peers={
                "seed: map(np.linalg.norm)": lambda: [
                    np.linalg.norm(frame.ravel(), np.inf) for frame in first
                ]
            },
            floor=read_operation(first.nbytes),
        )
    )
    return cases


def density_cases(scale: float) -> list[Case]:
    from scipy import ndimage as ndi
    from scipy.signal import convolve2d
    from skimage.measure import block_reduce

    rng = np.random.default_rng(3)
    side2, side3, window = int(8192 * scale), int(512 * scale), 4
    image2 = rng.random((side2, side2)) < 0.3
    image3 = rng.random((side3, side3, side3)) < 0.3
    cases = []
    for image in (image2, image3):
        blocks = tuple(n // window for n in image.shape)
        reshaped = tuple(x for b in blocks for x in (b, window))
        axes = tuple(range(1, 2 * image.ndim, 2))
        cases.append(
            Case(
                name=f"density_map block {window} {image.shape} bool",
                input_bytes=image.nbytes,
                ours=lambda im=image: vw.density_map(im, window),
                peers={
                    "reshape-mean": lambda im=image, r=reshaped, ax=axes: im.reshape(r).mean(
                        axis=ax
                    ),
                    "skimage block_reduce": lambda im=image: block_reduce(
                        im, (window,) * im.ndim, np.mean
                    ),
                },
                floor=read_operation(image.nbytes),
                targets=[
                    (
                        ">= 2x block_reduce",
                        lambda row, peers: (
                            row.seconds * 2 <= peers["skimage block_reduce"].seconds
                        ),
                    ),
                    ("<= 2x read floor", lambda row, peers: row.vs_floor <= 2),
                ],
            )
        )
    for size in (3, 32):
        peers = {
            "ndi.uniform_filter": lambda s=size: ndi.uniform_filter(image2.astype(np.float32), s),
        }
        if size <= 3:  # a direct 32x32 convolution costs ~1000 multiply-adds a pixel (minutes)
            peers["signal.convolve2d"] = lambda s=size: (
                convolve2d(image2, np.ones((s, s)), "valid") / s**2
            )
        targets = [
            (
                ">= 1.5x uniform_filter",
                lambda row, peers: row.seconds * 1.5 <= peers["ndi.uniform_filter"].seconds,
            )
        ]
        if size == 32:

            def window_32_vs_3(row, peers):
                window3, window32 = timed_in_turn(
                    lambda: vw.density_map(image2, 3, mode="sliding"),
                    lambda: vw.density_map(image2, 32, mode="sliding"),
                    7,
                )
                return window32 <= 1.3 * window3, f" ({window32 / window3:.2f}x)"

            targets.append(("<= 1.3x the window-3 time, calls in turn", window_32_vs_3))
        cases.append(
            Case(
                name=f"density_map sliding {size} {image2.shape} bool",
                input_bytes=image2.nbytes,
                ours=lambda s=size: vw.density_map(image2, s, mode="sliding"),
                peers=peers,
                floor=read_operation(image2.nbytes),
                targets=targets,
            )
        )
    return cases


def mask_cases(scale: float) -> list[Case]:
    rng = np.random.default_rng(4)
    frames = max(8, int(1000 * scale))
    points = rng.random((frames, 3000, 128), dtype=np.float32)
    mask = rng.random((frames, 3000)) < 0.5

    def per_frame_loop():
        selected = [p[m] for p, m in zip(points, mask, strict=True)]
        longest = max(len(s) for s in selected)
        packed = np.full((frames, longest, 128), np.nan, np.float32)
        for f, s in enumerate(selected):
            packed[f, : len(s)] = s
        return packed

    image = rng.random((8, *(int(256 * scale),) * 3), dtype=np.float32)
    volume_mask = rng.random(image.shape[1:]) < 0.5
    return [
        Case(
            name=f"mask_filter {points.shape} float32, half selected",
            input_bytes=points.nbytes,
            ours=lambda: vw.mask_filter(points, mask),
            peers={"seed: per-frame loop + padding": per_frame_loop},
            floor=copy_operation(points.nbytes // 2),
            targets=[
                (">= 3x the loop", lambda row, peers: row.speed_vs_peer >= 3),
                ("<= 2x copy floor", lambda row, peers: row.vs_floor <= 2),
            ],
        ),
        Case(
            name=f"apply_mask {image.shape} float32, 3D mask",
            input_bytes=image.nbytes,
            ours=lambda: vw.apply_mask(image, volume_mask),
            peers={"np.where": lambda: np.where(volume_mask, image, 0)},
            floor=copy_operation(image.nbytes),
        ),
    ]


def hessian_cases(scale: float) -> list[Case]:
    from skimage.feature import hessian_matrix, hessian_matrix_eigvals

    rng = np.random.default_rng(5)

    def skimage_way(volume):
        return hessian_matrix_eigvals(
            hessian_matrix(volume, sigma=2, use_gaussian_derivatives=True)
        )

    def seed_way(volume):
        hessian = np.array([np.gradient(g) for g in np.gradient(volume)])
        return np.linalg.eigvalsh(np.moveaxis(hessian, (0, 1), (-2, -1)))

    cases = []
    for side in (int(128 * scale), int(256 * scale)):
        volume = rng.random((side,) * 3, dtype=np.float32)
        peers = {"skimage hessian_matrix + eigvals": lambda v=volume: skimage_way(v)}
        if side <= 128:
            peers["seed: np.gradient twice + eigvalsh"] = lambda v=volume: seed_way(v)
        cases.append(
            Case(
                name=f"hessian_eigenvalues 3D sigma 2 {volume.shape} float32",
                input_bytes=volume.nbytes,
                ours=lambda v=volume: vw.hessian_eigenvalues(v, sigma=2.0),
                peers=peers,
                targets=[
                    (
                        ">= 10x scikit-image",
                        lambda row, peers: (
                            row.seconds * 10 <= peers["skimage hessian_matrix + eigvals"].seconds
                        ),
                    ),
                    (
                        "peak <= 1/5 scikit-image's",
                        lambda row, peers: (
                            row.peak_mib * 5 <= peers["skimage hessian_matrix + eigvals"].peak_mib
                        ),
                    ),
                ],
            )
        )
    image = rng.random((int(4096 * scale),) * 2, dtype=np.float32)
    cases.append(
        Case(
            name=f"hessian_eigenvalues 2D sigma 2 {image.shape} float32",
            input_bytes=image.nbytes,
            ours=lambda: vw.hessian_eigenvalues(image, sigma=2.0),
            peers={"skimage hessian_matrix + eigvals": lambda: skimage_way(image)},
            targets=[(">= 5x scikit-image", lambda row, peers: row.speed_vs_peer >= 5)],
        )
    )
    return cases


def vesselness_cases(scale: float) -> list[Case]:
    """Multi-scale Frangi vesselness (sigmas 1-4) against scikit-image's frangi."""
    from skimage.filters import frangi

    rng = np.random.default_rng(6)
    sigmas = [1.0, 2.0, 3.0, 4.0]
    volume = rng.random((int(128 * scale),) * 3, dtype=np.float32)
    image = rng.random((int(1024 * scale),) * 2, dtype=np.float32)
    peer = "skimage frangi"
    return [
        Case(
            name=f"vesselness frangi sigmas 1-4 {volume.shape} float32",
            input_bytes=volume.nbytes,
            ours=lambda: vw.vesselness(volume, sigmas),
            peers={peer: lambda: frangi(volume, sigmas, black_ridges=False)},
            targets=[
                (">= 10x scikit-image", lambda row, peers: row.speed_vs_peer >= 10),
                (
                    "peak <= 1/5 scikit-image's",
                    lambda row, peers: row.peak_mib * 5 <= peers[peer].peak_mib,
                ),
            ],
        ),
        Case(
            name=f"vesselness frangi sigmas 1-4 {image.shape} float32",
            input_bytes=image.nbytes,
            ours=lambda: vw.vesselness(image, sigmas),
            peers={peer: lambda: frangi(image, sigmas, black_ridges=False)},
            targets=[(">= 5x scikit-image", lambda row, peers: row.speed_vs_peer >= 5)],
        ),
    ]


def gradient_cases(scale: float) -> list[Case]:
    """Gradients and Hessians, finite differences (np.gradient's) and Gaussian (sigma 2)."""
    from scipy import ndimage as ndi
    from skimage.feature import hessian_matrix

    rng = np.random.default_rng(7)
    volume = rng.random((int(256 * scale),) * 3, dtype=np.float32)
    small = rng.random((int(128 * scale),) * 3, dtype=np.float32)

    def numpy_magnitude(v):
        return np.sqrt(sum(np.square(g) for g in np.gradient(v)))

    def seed_hessian(v):
        return np.array([np.gradient(g) for g in np.gradient(v)])

    def seed_eigenvalues(v):
        return np.linalg.eigvalsh(np.moveaxis(seed_hessian(v), (0, 1), (-2, -1)))

    def case(name, data, ours, peer_name, peer):
        return Case(
            name=f"{name} {data.shape} float32",
            input_bytes=data.nbytes,
            ours=ours,
            peers={peer_name: peer},
            targets=[("faster than the best peer", lambda row, peers: row.speed_vs_peer > 1)],
        )

    return [
        case(
            "gradient_vectors",
            volume,
            lambda: vw.gradient_vectors(volume),
            "np.stack(np.gradient)",
            lambda: np.stack(np.gradient(volume), axis=-1),
        ),
        case(
            "gradient_magnitude",
            volume,
            lambda: vw.gradient_magnitude(volume),
            "np.gradient, sqrt of squares",
            lambda: numpy_magnitude(volume),
        ),
        case(
            "gradient_magnitude sigma 2",
            volume,
            lambda: vw.gradient_magnitude(volume, sigma=2.0),
            "ndi.gaussian_gradient_magnitude",
            lambda: ndi.gaussian_gradient_magnitude(volume, 2.0),
        ),
        case(
            "hessian_matrix differences",
            volume,
            lambda: vw.hessian_matrix(volume, sigma=None),
            "seed: np.gradient twice",
            lambda: seed_hessian(volume),
        ),
        case(
            "hessian_matrix sigma 2",
            small,
            lambda: vw.hessian_matrix(small, sigma=2.0),
            "skimage hessian_matrix",
            lambda: hessian_matrix(small, sigma=2, use_gaussian_derivatives=True),
        ),
        case(
            "hessian_eigenvalues differences",
            small,
            lambda: vw.hessian_eigenvalues(small, sigma=None),
            "seed: np.gradient twice + eigvalsh",
            lambda: seed_eigenvalues(small),
        ),
    ]


def dask_cases(scale: float) -> list[Case]:
    """Statistics of a Dask array chunked two frames deep (Dask's own reductions as peers)."""
    import dask.array as da

    n = int(256 * scale)
    stack = np.random.default_rng(8).random((8, n, n, n), dtype=np.float32)
    lazy = da.from_array(stack, chunks=(2, n // 4, n, n))
    cases = []
    for statistic in ("var", "mean", "max"):
        cases.append(
            Case(
                name=f"axis_statistic {statistic} of Dask {stack.shape} chunks {lazy.chunksize}",
                input_bytes=stack.nbytes,
                ours=lambda st=statistic: vw.axis_statistic(lazy, st, axis=0).compute(),
                peers={
                    f"dask {statistic} (threads)": lambda st=statistic: getattr(lazy, st)(
                        axis=0
                    ).compute()
                },
                targets=[("faster than Dask", lambda row, peers: row.speed_vs_peer > 1)],
            )
        )
    return cases


def eigen_agreement(scale: float) -> float:
    """Largest |ours - eigvalsh| relative to each voxel's largest |eigenvalue| (128^3 volume)."""
    volume = np.random.default_rng(6).random((int(128 * scale),) * 3, dtype=np.float32)
    ours = vw.hessian_eigenvalues(volume, sigma=2.0).astype(np.float64)
    reference = np.linalg.eigvalsh(vw.hessian_matrix(volume, sigma=2.0).astype(np.float64))
    reference = reference[..., ::-1]
    scale_ = np.abs(reference).max(axis=-1, keepdims=True)
    return float((np.abs(ours - reference) / scale_).max())


# ------------------------------------------------------------------------------- running


def run_case(case: Case, repeat: int, slow_repeat: int) -> list[Row]:
    rows = []
    floor_seconds = None
    for implementation, function, ours in [
        ("napari-voxelwise", case.ours, True),
        *[(k, v, False) for k, v in case.peers.items()],
    ]:
        first = time.perf_counter()
        function()  # warm-up (compiles kernels on a first call)
        elapsed = time.perf_counter() - first
        calls = slow_repeat if elapsed > 2 else repeat
        if ours and case.floor is not None:
            seconds, floor_seconds = timed_in_turn(function, case.floor, calls)
        else:
            seconds = timed(function, calls, warm_up=False)
        rows.append(
            Row(
                case.name,
                implementation,
                seconds,
                peak_extra_mib(function),
                case.input_bytes,
                ours=ours,
            )
        )
    ours_row, peer_rows = rows[0], rows[1:]
    if peer_rows:
        best = min(r.seconds for r in peer_rows)
        for row in rows:
            row.speed_vs_peer = best / row.seconds
    if floor_seconds:
        for row in rows:
            row.vs_floor = row.seconds / floor_seconds
    peers_by_name = {r.implementation: r for r in peer_rows}
    results = []
    for text, check in case.targets:
        outcome = check(ours_row, peers_by_name)  # met, or (met, a figure to print)
        met, figure = outcome if isinstance(outcome, tuple) else (outcome, "")
        results.append(f"{text}{figure}: {'met' if met else 'MISSED'}")
    ours_row.target = "; ".join(results)
    return rows


def format_table(rows: list[Row], markdown: bool = False) -> str:
    header = [
        "case",
        "implementation",
        "median s",
        "speed vs best peer",
        "time vs floor",
        "peak extra MiB",
        "GB/s",
        "target (this run)",
    ]
    lines = []
    for row in rows:
        lines.append(
            [
                row.case if row.ours else "",
                row.implementation,
                f"{row.seconds:.4f}",
                "" if row.speed_vs_peer is None else f"{row.speed_vs_peer:.2f}x",
                "" if row.vs_floor is None else f"{row.vs_floor:.2f}x",
                f"{row.peak_mib:.0f}",
                f"{row.input_bytes / row.seconds / 1e9:.2f}",
                row.target,
            ]
        )
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines]
    return "\n".join(out)


FAMILIES = (
    "variance",
    "statistic",
    "norms",
    "density",
    "mask",
    "hessian",
    "vesselness",
    "gradient",
    "dask",
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--only",
        default=",".join(FAMILIES),
        help=f"comma-separated families among {', '.join(FAMILIES)}",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per implementation")
    parser.add_argument("--markdown", help="also write the table as Markdown to this file")
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = set(families) - set(FAMILIES)
    if unknown:
        parser.error(f"unknown families {sorted(unknown)}; choose among {FAMILIES}")
    scale = 0.125 if args.quick else 1.0
    repeat = 2 if args.quick else args.repeat
    # the steady state: every call on the kernels (compiled first where missing)
    if hasattr(vw, "set_compile_mode"):
        vw.set_compile_mode("wait")
    slow_repeat = 1

    print(
        f"napari-voxelwise {vw.__version__}, numpy {np.__version__}, "
        f"{len(os.sched_getaffinity(0))} cores, python {sys.version.split()[0]}"
    )
    nbytes = int(512 * MIB * scale)
    print(f"read bandwidth (2 threads, np.max): {nbytes / read_seconds(nbytes) / 1e9:.1f} GB/s")
    result = nbytes // 8  # the float32 result of a (8, n, n, n) float32 stack reduced along t
    print(
        f"a new {result / MIB:.0f} MiB result, allocated and written (2 threads): "
        f"{fresh_write_seconds(result) * 1e3:.1f} ms\n"
    )

    rows: list[Row] = []
    builders = {
        "variance": variance_cases,
        "statistic": statistic_cases,
        "norms": norm_cases,
        "density": density_cases,
        "mask": mask_cases,
        "hessian": hessian_cases,
        "vesselness": vesselness_cases,
        "gradient": gradient_cases,
        "dask": dask_cases,
    }
    for family in families:
        for case in builders[family](scale):
            rows += run_case(case, repeat, slow_repeat)
            print(
                format_table([r for r in rows if r.case == case.name]).split("\n", 2)[-1],
                flush=True,
            )
    print("\n" + format_table(rows))
    if "hessian" in families:
        print(
            f"\nHessian eigenvalues vs np.linalg.eigvalsh: largest error relative to the "
            f"voxel's largest eigenvalue = {eigen_agreement(scale):.1e} (target 1e-4)"
        )
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(format_table(rows, markdown=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
