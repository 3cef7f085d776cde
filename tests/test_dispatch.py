"""The dispatch between kernels and the portable path, and compiling in another process.

The cases that depend on an empty kernel cache run in a new process with a cache folder of
their own (``NUMBA_CACHE_DIR``): this process's numba has its kernels loaded already.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import napari_voxelwise as vw
from napari_voxelwise import _dispatch

ROOT = Path(__file__).resolve().parents[1]


def run_child(code: str, tmp_path, mode: str | None, cache: Path | None = None, **env) -> dict:
    """Run `code` in a new Python process; it prints one JSON line, returned as a dict."""
    environment = {**os.environ, **env}
    environment.pop(_dispatch.MODE_VARIABLE, None)
    if mode is not None:
        environment[_dispatch.MODE_VARIABLE] = mode
    if cache is not None:
        environment["NUMBA_CACHE_DIR"] = str(cache)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=280,
        env=environment,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "log": done.stderr}


MASKING = """
    import json, logging, time
    import numpy as np
    logging.basicConfig(level=logging.INFO)
    import napari_voxelwise as vw
    from napari_voxelwise import _dispatch

    image = np.random.default_rng(0).integers(0, 255, (6, 32, 32), dtype=np.uint8)
    inside = image[0] > 100
    expected = np.where(inside, image, 0)

    def call():
        before = _dispatch.task_counts()
        result = vw.apply_mask(image, inside)
        after = _dispatch.task_counts()
        error = float(np.abs(result.astype(int) - expected).max())
        return {path: after[path] - before[path] for path in after}, error
"""


def test_background_mode_answers_at_once_and_uses_the_kernels_once_compiled(tmp_path):
    """An empty cache: the first call runs on the portable path; the kernels are compiled by
    another process and later calls run on them, with a log line for each step."""
    code = (
        MASKING
        + """
    first, first_error = call()
    began = time.perf_counter()
    while True:
        later, later_error = call()
        if later["kernels"] or time.perf_counter() - began > 240:
            break
        time.sleep(0.2)
    compiled = _dispatch._compiler._process is not None
    print(json.dumps({"first": first, "later": later, "errors": [first_error, later_error],
                      "compiler": compiled}))
    """
    )
    report = run_child(code, tmp_path, None, cache=tmp_path / "cache")
    assert report["first"]["portable"] > 0 and report["first"]["kernels"] == 0
    assert report["later"]["kernels"] > 0 and report["later"]["portable"] == 0
    assert max(report["errors"]) == 0
    assert report["compiler"]
    assert "numba started" in report["log"]
    assert "in the background" in report["log"] and "ready" in report["log"]
    assert any((tmp_path / "cache").rglob("*.nbi"))  # compiled into the cache folder


def test_wait_mode_runs_on_kernels_compiled_elsewhere(tmp_path):
    """Mode wait: the first call runs on kernels, compiled by the compiler process and only
    loaded here (numba compiled nothing in the calling process)."""
    code = (
        MASKING
        + """
    first, error = call()
    from napari_voxelwise._kernels import masks
    # loaded from numba's cache (a kernel compiled here would count no hit)
    hits = sum(masks.masked_copy.stats.cache_hits.values())
    print(json.dumps({"first": first, "error": error, "hits": hits}))
    """
    )
    report = run_child(code, tmp_path, "wait", cache=tmp_path / "cache")
    assert report["first"]["kernels"] > 0 and report["first"]["portable"] == 0
    assert report["error"] == 0
    assert report["hits"] >= 1


def test_off_mode_compiles_nothing(tmp_path):
    code = (
        MASKING
        + """
    first, first_error = call()
    second, second_error = call()
    print(json.dumps({"paths": [first, second], "errors": [first_error, second_error],
                      "compiler": _dispatch._compiler._process is not None}))
    """
    )
    report = run_child(code, tmp_path, "off", cache=tmp_path / "cache")
    assert all(p["kernels"] == 0 and p["portable"] > 0 for p in report["paths"])
    assert max(report["errors"]) == 0
    assert not report["compiler"]
    assert not any((tmp_path / "cache").rglob("*.nbc"))


def test_a_read_only_install_still_caches_its_kernels(tmp_path):
    """From a read-only copy of the package, kernels compile into numba's user cache folder
    (not beside the package), and a later process loads them from there."""
    copy = tmp_path / "install"
    shutil.copytree(
        ROOT / "src" / "napari_voxelwise",
        copy / "napari_voxelwise",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    user_cache = tmp_path / "user-cache"
    code = (
        MASKING
        + """
    first, error = call()
    print(json.dumps({"first": first, "error": error, "file": vw.__file__}))
    """
    )
    environment = {"PYTHONPATH": str(copy), "XDG_CACHE_HOME": str(user_cache)}
    environment.pop("NUMBA_CACHE_DIR", None)
    if os.getuid() == 0:  # root writes anywhere: make the copy read-only by a mount
        script = tmp_path / "child.py"
        script.write_text(textwrap.dedent(code))
        prefix = ["unshare", "-rm", "sh", "-c"]
        mount = f"mount --bind {copy} {copy} && mount -o remount,bind,ro {copy} && "
        runs = [[*prefix, mount + f"exec {sys.executable} {script}"] for _ in range(2)]
    else:
        for path in copy.rglob("*"):
            path.chmod(0o555 if path.is_dir() else 0o444)
        copy.chmod(0o555)
        runs = [[sys.executable, "-c", textwrap.dedent(code)] for _ in range(2)]
    reports = []
    base = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    for command, mode in zip(runs, ("wait", "off"), strict=True):
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=280,
            env={**base, **environment, _dispatch.MODE_VARIABLE: mode},
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        reports.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert all(report["file"].startswith(str(copy)) for report in reports)
    # compiled by the first process (mode wait), loaded by the second (mode off)
    assert reports[0]["first"]["kernels"] > 0 and reports[1]["first"]["kernels"] > 0
    assert not list(copy.rglob("*.nbi"))
    assert list((user_cache / "numba").rglob("*.nbi"))


@pytest.mark.slow
def test_the_api_suite_passes_without_numba(tmp_path):
    """numba unimportable (a Python release it does not support yet, say): every
    computation works on the portable path."""
    files = [
        "tests/test_api.py",
        "tests/test_statistics.py",
        "tests/test_density.py",
        "tests/test_masking.py",
        "tests/test_differential.py",
    ]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *files,
            "--without-numba",
            "-m",
            "not kernels",
            "-q",
            "-n",
            "0",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout


def test_numba_types_survive_their_description():
    """What the compiler process receives rebuilds the very argument types of the call."""
    from numba import typeof
    from numba.core import types

    frozen = np.zeros((3, 4), np.float32)
    frozen.flags.writeable = False
    values = [
        frozen,
        frozen[:, ::2],
        np.zeros((2, 3, 4), np.uint16),
        np.asfortranarray(np.zeros((3, 4))),
        np.zeros(5, bool),
        3,
        2.5,
        True,
        np.uint32(7),
        np.float32(1.5),
        (0, 0, 0),
        (frozen, frozen),
    ]
    described = [typeof(value) for value in values] + [types.none, types.Omitted(None)]
    for numba_type in described:
        description = _dispatch.describe_type(numba_type)
        assert json.loads(json.dumps(description)) == description
        assert _dispatch.rebuild_type(description) == numba_type


def test_a_missing_kernel_sends_the_rest_of_the_plan_to_the_portable_path(monkeypatch):
    """In mode background the task that missed its kernel, and the plan's later tasks, run
    their portable twins; the kernel is requested once."""
    requested = []
    monkeypatch.setattr(_dispatch._background, "request", lambda r, k: requested.append(k))
    monkeypatch.setattr(_dispatch, "_mode", "background")
    ran = []

    def missing():
        ran.append("kernel")
        raise _dispatch.KernelsNotReady("m:k", {"arguments": []})

    tasks = _dispatch.tasks(
        [missing, missing, missing], [lambda i=i: ran.append(f"portable {i}") for i in range(3)]
    )
    for task in tasks:
        task()
    assert ran == ["kernel", "portable 0", "portable 1", "portable 2"]
    assert requested == ["m:k"]


def test_modes_and_warmup_arguments_are_checked():
    with pytest.raises(ValueError, match="mode"):
        vw.set_compile_mode("sometimes")
    with pytest.raises(ValueError, match="operations"):
        vw.warmup(["variance-ish"])
    with pytest.raises(TypeError, match="dtypes"):
        vw.warmup(["density"], ["complex64"])
    previous = vw.set_compile_mode("off")
    try:
        assert vw.compile_mode() == "off"
    finally:
        vw.set_compile_mode(previous)


def test_the_warmup_command(tmp_path, capsys):
    from napari_voxelwise._cli import main

    assert main(["warmup", "--operations", "masking", "--dtypes", "uint8"]) == 0
    assert "kernels compiled and loaded" in capsys.readouterr().out
    assert main(["warmup", "--operations", "masks"]) == 2
    assert "unknown operation 'masks'" in capsys.readouterr().err
