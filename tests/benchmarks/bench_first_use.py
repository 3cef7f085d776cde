"""Benchmark first use: what a new process meets before numba's kernels are compiled.

Run from the repository root::

    python tests/benchmarks/bench_first_use.py --only api      # minutes: every case compiles
    xvfb-run -a -s "-screen 0 1600x1000x24" python tests/benchmarks/bench_first_use.py --only gui
    python tests/benchmarks/bench_first_use.py --quick --only api --markdown first_use.md

Every case runs in two new processes sharing a new, empty numba cache folder
(``NUMBA_CACHE_DIR``, removed afterwards), in the default compile mode ("background"):
the first meets an empty cache and waits (here, not in the library) until the background
compiler has filled it; the second meets the filled cache.

``api``: one public function per case, called right after ``import napari_voxelwise``.
"first s" is that first call (numba's background start begins inside it), "second s" the
next one, "portable s" the median inside ``_dispatch.portable_path()``, "kernels s" the
median once a call ran on kernels only, "kernels ready after s" the time from the first
call's start to the start of the first call that ran on kernels only (calls repeated every
0.5 s; by ``_dispatch.task_counts()``). "first path" is what the first call ran on
(kernels, portable, mixed, or NumPy for a function without kernels); "numba up s" is when
numba's background start ended, from the first call's start. Targets: empty cache, no
caller waits for compiling (first <= 2 x portable + 0.3 s); filled cache, first <=
kernels + 0.5 s.

``gui``: one panel per case in a real ``napari.Viewer`` on the plugin's sample: docked,
its widgets set, 1 s of event loop (the panel starts preparing its kernels when it opens),
then ``panel.run()`` (the Run button) with a 10 ms QTimer on the GUI thread recording the
gaps between its ticks. "click->layer s" is the click to the first result layer; "longest
stall s" the longest gap from the click until one event-loop turn after the run ended, "in
it" what that gap held (the synchronous ``panel.run()``, result layers added, or none),
"longest other stall s" the longest gap in which no layer was added.
Then napari's own cost of a new layer, median of 3: "add layer s", ``viewer.add_image`` of
a (40, 128, 128) float32 image; "draw s", a synchronous ``canvas.native.repaint()`` and one
``processEvents()``. Targets: click->layer <= 1 s; longest stall <= add layer + draw (the
10 ms ticks are a stall's resolution). "kernels ready after s" (from
docking): the measured run's click if it ran on kernels only, else the start of the first of
the runs repeated every 0.5 s that did. "run path" counts the tasks of the whole process
during the run (the panel's background warm-up may add its own).

``--repeat N``: calls per median (default 5); ``--quick``: small inputs, a few cases.
The API part needs no display; the GUI part exits with a message without one.

Not collected by pytest; ``tests/test_benchmarks.py`` runs it with ``--quick --only api``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata

#: name -> (setup, call): the setup makes the inputs with NumPy only; `n`, `b` are sizes
API_CASES = {
    "voxel_variance float32 (10,{n},{n},{n}) axis 0": (
        "x = rng.random((10, n, n, n), dtype=np.float32)",
        "vw.voxel_variance(x, axis=0)",
    ),
    "voxel_variance uint16 (10,{n},{n},{n}) axis 0": (
        "x = (rng.random((10, n, n, n)) * 65535).astype(np.uint16)",
        "vw.voxel_variance(x, axis=0)",
    ),
    "axis_statistic max (10,{n},{n},{n}) axis 0": (
        "x = rng.random((10, n, n, n), dtype=np.float32)",
        "vw.axis_statistic(x, 'max', axis=0)",
    ),
    "axis_statistic median (10,{n},{n},{n}) axis 0": (
        "x = rng.random((10, n, n, n), dtype=np.float32)",
        "vw.axis_statistic(x, 'median', axis=0)",
    ),
    "axis_statistic mean ({n},{n},{n},5) axis -1": (
        "x = rng.random((n, n, n, 5), dtype=np.float32)",
        "vw.axis_statistic(x, 'mean', axis=-1)",
    ),
    "frame_norms (10,{n},{n},{n}) axis 0": (
        "x = rng.random((10, n, n, n), dtype=np.float32)",
        "vw.frame_norms(x, axis=0)",
    ),
    "density_map block 4 ({b},{b}) bool": (
        "x = rng.random((b, b)) < 0.3",
        "vw.density_map(x, 4, 'block')",
    ),
    "density_map sliding 16 ({b},{b}) bool": (
        "x = rng.random((b, b)) < 0.3",
        "vw.density_map(x, 16, 'sliding')",
    ),
    "apply_mask ({n},{n2},{n2})": (
        "x = rng.random((n, 2 * n, 2 * n), dtype=np.float32); m = x > 0.5",
        "vw.apply_mask(x, m)",
    ),
    "mask_filter (200,3000,8)": (
        "x = rng.random((200, 3000, 8), dtype=np.float32); m = rng.random((200, 3000)) < 0.3",
        "vw.mask_filter(x, m)",
    ),
    "gradient_vectors ({n},{n2},{n2})": (
        "x = rng.random((n, 2 * n, 2 * n), dtype=np.float32)",
        "vw.gradient_vectors(x)",
    ),
    "hessian_matrix sigma 2 ({n},{n2},{n2})": (
        "x = rng.random((n, 2 * n, 2 * n), dtype=np.float32)",
        "vw.hessian_matrix(x, 2.0)",
    ),
    "hessian_eigenvalues sigma 2 ({n},{n2},{n2})": (
        "x = rng.random((n, 2 * n, 2 * n), dtype=np.float32)",
        "vw.hessian_eigenvalues(x, 2.0)",
    ),
    "frangi_vesselness ({n},{n2},{n2},3)": (
        "x = rng.standard_normal((n, 2 * n, 2 * n, 3), dtype=np.float32)",
        "vw.frangi_vesselness(x)",
    ),
    "vesselness sigmas 1,2,4 ({n},{n2},{n2})": (
        "x = rng.random((n, 2 * n, 2 * n), dtype=np.float32)",
        "vw.vesselness(x, [1.0, 2.0, 4.0], return_scale=True)",
    ),
}
QUICK_API = (
    "apply_mask ({n},{n2},{n2})",
    "frangi_vesselness ({n},{n2},{n2},3)",
)

#: panel -> (sample, settings run with `panel`, `viewer`, `source`: the sample's layer);
#: the mask filter's settings use a Labels layer "bright" (source > 0.5) added before docking
GUI_CASES = {
    "Voxel statistics": (
        "noisy_stack",
        "panel.layer_combo.value = source; panel.axis_combo.value = 0\n"
        "panel.statistic_combo.value = 'var'",
    ),
    "Density heatmap": (
        "binary_density",
        "panel.layer_combo.value = source; panel.window_edit.value = '4, 8'\n"
        "panel.mode_combo.value = 'block'",
    ),
    "Mask filter": (
        "tubes_and_blobs",
        "panel.target.value = source; panel.mask.value = viewer.layers['bright']",
    ),
    "Hessian eigenvalues": (
        "tubes_and_blobs",
        "panel.image.value = source; panel.sigma.value = 2",
    ),
    "Gradient": ("tubes_and_blobs", "panel.image.value = source; panel.sigma.value = 1.5"),
    "Vesselness": ("tubes_and_blobs", "panel.image.value = source"),
}
QUICK_GUI = ("Density heatmap",)
#: seconds a process waits for the background compiler to fill the cache
KERNELS_TIMEOUT = 240

_COMMON = r"""
import json, statistics, sys, threading, time
spec = json.loads(sys.argv[1])
import numpy as np

def path_of(before, after):
    kernels = after["kernels"] - before["kernels"]
    portable = after["portable"] - before["portable"]
    if kernels and portable:
        return "mixed"
    return "kernels" if kernels else "portable" if portable else "NumPy"

def report(figures):
    try:
        _dispatch._compiler.close()  # no compiler left writing into the cache folder
    except Exception:
        pass
    print(json.dumps(figures), flush=True)
"""

_API = r"""
rng = np.random.default_rng(0)
names = {"np": np, "rng": rng, **spec["sizes"]}
exec(spec["setup"], names)
began = time.perf_counter()
import napari_voxelwise as vw
from napari_voxelwise import _dispatch
figures = {"import": time.perf_counter() - began}
names["vw"] = vw
call = eval("lambda: " + spec["call"], names)
numba_up = []
started = getattr(_dispatch, "_numba_started", None)
if started is not None:
    threading.Thread(target=lambda: (started.wait(), numba_up.append(time.perf_counter())),
                     daemon=True).start()

def timed():
    before = _dispatch.task_counts()
    start = time.perf_counter()
    call()
    return time.perf_counter() - start, path_of(before, _dispatch.task_counts())

def median():
    return statistics.median(timed()[0] for _ in range(spec["repeat"]))

def wait_for_kernels():  # the start of the first call on kernels only, from the first call
    while time.perf_counter() - first_start < spec["timeout"]:
        start = time.perf_counter()
        if timed()[1] == "kernels":
            return start - first_start
        time.sleep(0.5)
    return None

first_start = time.perf_counter()
figures["first"], figures["first path"] = timed()
figures["second"], _ = timed()
kernels = figures["first path"] != "NumPy"
if spec["cache"] == "empty":
    with _dispatch.portable_path():
        figures["portable"] = median()
    figures["ready"] = wait_for_kernels() if kernels else None
    figures["kernels"] = median() if figures["ready"] is not None else None
else:
    figures["ready"] = wait_for_kernels() if kernels else None
    figures["kernels"] = median() if figures["ready"] is not None else None
    with _dispatch.portable_path():
        figures["portable"] = median()
figures["numba up"] = numba_up[0] - first_start if numba_up else None
report(figures)
"""

_GUI = r"""
import napari
from qtpy.QtCore import QElapsedTimer, QEventLoop, QTimer
from qtpy.QtWidgets import QApplication
from napari_voxelwise import _dispatch

def spin(seconds):
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()

events = []
_dispatch.add_listener(lambda event, description: events.append(event))
viewer = napari.Viewer(show=True)
viewer.window.resize(1400, 900)
viewer.open_sample("napari-voxelwise", spec["sample"])
source = viewer.layers[0]
if "bright" in spec["settings"]:
    viewer.add_labels((source.data > 0.5).astype("uint8"), name="bright", scale=source.scale)
    viewer.layers.selection.active = source
spin(0.5)
docked = time.perf_counter()
dock, panel = viewer.window.add_plugin_dock_widget("napari-voxelwise", spec["panel"])
exec(spec["settings"], {"panel": panel, "viewer": viewer, "source": source})
spin(1.0)

clock, ticks, added, loop = QElapsedTimer(), [], [], QEventLoop()
viewer.layers.events.inserted.connect(lambda event: added.append(clock.nsecsElapsed() / 1e9))
ended = []
def tick():
    ticks.append(clock.nsecsElapsed() / 1e9)
    if ended:
        loop.quit()  # one more event-loop turn after the run ended
    elif not panel.runner.running:
        ended.append(ticks[-1])
timer = QTimer()
timer.setInterval(10)
timer.timeout.connect(tick)
before = _dispatch.task_counts()
timer.start()
clock.start()
clicked = time.perf_counter()
panel.run()
QTimer.singleShot(300_000, loop.quit)
loop.exec()
timer.stop()
times = [0.0, *ticks]
gaps = [(b - a, a, b) for a, b in zip(times, times[1:])]
stall, since, until = max(gaps)
inside = sum(since <= t <= until for t in added)
figures = {
    "click": added[0] if added else None,
    "stall": stall,
    "holds": "panel.run()" if since == 0 else f"layer adds: {inside}" if inside else "none",
    "other": max((g for g, a, b in gaps if not any(a <= t <= b for t in added)), default=0),
    "run path": path_of(before, _dispatch.task_counts()),
}

adds, draws = [], []
canvas = viewer.window._qt_viewer.canvas.native
for _ in range(3):
    data = np.random.random((40, 128, 128)).astype("float32")
    start = time.perf_counter()
    layer = viewer.add_image(data)
    adds.append(time.perf_counter() - start)
    start = time.perf_counter()
    canvas.repaint()
    QApplication.processEvents()
    draws.append(time.perf_counter() - start)
    viewer.layers.remove(layer)
    spin(0.1)
figures["add"], figures["draw"] = statistics.median(adds), statistics.median(draws)

figures["ready"] = clicked - docked if figures["run path"] == "kernels" else None
while figures["ready"] is None and time.perf_counter() - docked < spec["timeout"]:
    before = _dispatch.task_counts()
    start = time.perf_counter()
    panel.run()
    panel.runner.wait(120_000)
    if path_of(before, _dispatch.task_counts()) == "kernels":
        figures["ready"] = start - docked
        break
    spin(0.5)
queue = getattr(getattr(_dispatch, "_background", None), "_queue", None)
idle = 0  # and nothing more compiling, so the next process meets a filled cache
while idle < 2 and time.perf_counter() - docked < spec["timeout"]:
    busy = events.count("compiling") > events.count("ready") + events.count("failed")
    idle = 0 if busy or (queue is not None and not queue.empty()) else idle + 1
    spin(0.5)
viewer.close()
report(figures)
"""

CHILD_API, CHILD_GUI = _COMMON + _API, _COMMON + _GUI


def run_child(code: str, spec: dict, cache: str) -> dict:
    """Run `code` in a new process with numba's cache in `cache`: its figures, or an error."""
    environment = {**os.environ, "NUMBA_CACHE_DIR": cache}
    environment.pop("NAPARI_VOXELWISE_COMPILE", None)  # the default mode, "background"
    try:
        result = subprocess.run(
            [sys.executable, "-c", code, json.dumps(spec)],
            env=environment,
            capture_output=True,
            text=True,
            timeout=spec["timeout"] + 180,
        )
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        tail = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        return {"error": tail[0][:120]}
    return json.loads(lines[-1])


CACHES = ("empty", "filled")


def both_caches(code: str, spec: dict) -> list[tuple[str, dict]]:
    """The figures of `code` on an empty cache, then on the cache the first run filled."""
    cache = tempfile.mkdtemp(prefix="napari-voxelwise-first-use-")
    try:
        return [(kind, run_child(code, {**spec, "cache": kind}, cache)) for kind in CACHES]
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def seconds(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def ready(figures: dict) -> str:
    """When kernels were ready; '-' for a function without kernels, '>T' past the timeout."""
    if figures["ready"] is not None:
        return seconds(figures["ready"])
    without_kernels = figures.get("first path", figures.get("run path")) == "NumPy"
    return "-" if without_kernels else f">{KERNELS_TIMEOUT}"


def api_row(case: str, cache: str, f: dict) -> list[str]:
    if "error" in f:
        return [case, cache, *["-"] * 8, "error: " + f["error"], "-"]
    if cache == "empty":
        limit = 2 * f["portable"] + 0.3
        target = f"first <= 2 x portable + 0.3 = {limit:.3f}"
    else:  # a function without kernels (or kernels never ready): its steady time
        steady = "kernels" if f["kernels"] is not None else "steady"
        limit = (f["kernels"] if f["kernels"] is not None else f["portable"]) + 0.5
        target = f"first <= {steady} + 0.5 = {limit:.3f}"
    cells = [f["first"], f["second"], f["portable"], f["kernels"]]
    return [
        case,
        cache,
        *map(seconds, cells),
        ready(f),
        f["first path"],
        seconds(f["import"]),
        seconds(f["numba up"]),
        target,
        "yes" if f["first"] <= limit else "MISSED",
    ]


API_COLUMNS = [
    "case", "cache", "first s", "second s", "portable s", "kernels s", "kernels ready after s",
    "first path", "import s", "numba up s", "target", "met?",
]  # fmt: skip
GUI_COLUMNS = [
    "case", "cache", "click->layer s", "longest stall s", "in it", "longest other stall s",
    "add layer s", "draw s", "run path", "kernels ready after s", "target", "met?",
]  # fmt: skip


def gui_row(case: str, cache: str, f: dict) -> list[str]:
    if "error" in f or f["click"] is None:
        return [case, cache, *["-"] * 8, "error: " + f.get("error", "no result layer"), "-"]
    cost = f["add"] + f["draw"]
    met = [f["click"] <= 1.0, f["stall"] <= cost]
    target = f"click->layer <= 1.0; stall <= add + draw = {cost:.3f}"
    missed = [name for name, ok in zip(("click->layer", "stall"), met, strict=True) if not ok]
    verdict = "MISSED: " + ", ".join(missed) if missed else "yes"
    cells = [seconds(f["click"]), seconds(f["stall"]), f["holds"], seconds(f["other"])]
    cells += [seconds(f["add"]), seconds(f["draw"]), f["run path"], ready(f)]
    return [case, cache, *cells, target, verdict]


def format_table(columns: list[str], rows: list[list[str]], markdown: bool = False) -> str:
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def machine() -> list[str]:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            models = (line.split(":", 1)[1] for line in handle if line.startswith("model name"))
            model = next(models).strip()
    except (OSError, StopIteration):
        pass
    versions = []
    for package in ("numba", "numpy", "napari"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} missing")
    load = ""
    if os.path.exists("/proc/loadavg"):
        with open("/proc/loadavg") as handle:
            load = f", load average {' '.join(handle.read().split()[:3])}"
    return [
        f"machine: {os.cpu_count()} CPUs, {model}{load}",
        f"python {platform.python_version()}, {', '.join(versions)}",
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few cases")
    parser.add_argument("--only", default="api,gui", help="comma-separated parts: api, gui")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per median")
    parser.add_argument("--markdown", help="also write the tables as Markdown to this file")
    args = parser.parse_args(argv)
    parts = [part.strip() for part in args.only.split(",") if part.strip()]
    if set(parts) - {"api", "gui"}:
        parser.error(f"unknown parts {sorted(set(parts) - {'api', 'gui'})}; choose api, gui")
    if "gui" in parts and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        print(
            'The gui part needs a display: run it under xvfb-run -a -s "-screen 0 1600x1000x24",'
            " or pass --only api.",
            file=sys.stderr,
        )
        return 2
    sizes = {"n": 16, "b": 256} if args.quick else {"n": 64, "b": 2048}
    common = {"repeat": args.repeat, "timeout": KERNELS_TIMEOUT, "sizes": sizes}
    header = machine()
    print("\n".join(header), flush=True)
    tables = []
    if "api" in parts:
        rows = []
        for case in QUICK_API if args.quick else API_CASES:
            setup, call = API_CASES[case]
            name = case.format(**sizes, n2=2 * sizes["n"])
            spec = {**common, "setup": setup, "call": call}
            for cache, figures in both_caches(CHILD_API, spec):
                rows.append(api_row(name, cache, figures))
                print("  " + " | ".join(rows[-1]), flush=True)
        tables.append(("API, first call in a new process", API_COLUMNS, rows))
    if "gui" in parts:
        rows = []
        for panel in QUICK_GUI if args.quick else GUI_CASES:
            sample, settings = GUI_CASES[panel]
            spec = {**common, "panel": panel, "sample": sample, "settings": settings}
            for cache, figures in both_caches(CHILD_GUI, spec):
                rows.append(gui_row(f"{panel} ({sample})", cache, figures))
                print("  " + " | ".join(rows[-1]), flush=True)
        tables.append(("GUI, first Run of a panel in a new viewer", GUI_COLUMNS, rows))
    for title, columns, rows in tables:
        print(f"\n{title}\n{format_table(columns, rows)}")
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write("\n\n".join(header) + "\n")
            for title, columns, rows in tables:
                handle.write(f"\n### {title}\n\n{format_table(columns, rows, True)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
