"""The documentation: every page's code runs as written, and the site builds strictly."""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))]


def code_blocks(page: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (ROOT / page).read_text(), re.S)


def runnable_shell_lines(page: str) -> list[str]:
    """The batch commands of a page (installs and `napari` itself are not run here)."""
    lines = []
    for block in code_blocks(page, "bash"):
        for line in block.splitlines():
            if line.startswith(("napari-voxelwise ", "python -m napari_voxelwise")):
                lines.append(line)
    return lines


@pytest.mark.parametrize("page", [p for p in PAGES if code_blocks(p, "python")])
def test_python_blocks_run(page, make_napari_viewer, tmp_path, monkeypatch, capsys):
    """Each page's python blocks run in order in one namespace (the console's way).

    A page that uses ``viewer`` gets a real viewer with the plugin's samples open.
    """
    monkeypatch.chdir(tmp_path)  # pages may write files
    namespace: dict = {}
    blocks = code_blocks(page, "python")
    if any("viewer" in block for block in blocks):
        viewer = make_napari_viewer()
        for key in ("tubes_and_blobs", "noisy_stack", "binary_density"):
            viewer.open_sample("napari-voxelwise", key)
        namespace["viewer"] = viewer
    for block in blocks:
        exec(compile(block, f"{page} block", "exec"), namespace)  # our own documentation
    if page == "README.md":
        layers = namespace["viewer"].layers
        np.testing.assert_allclose(layers["l1"].scale, layers["tubes and blobs"].scale)
    if page == "docs/cookbook.md":
        assert "hessian_eigenvalues:" in capsys.readouterr().out


@pytest.mark.parametrize("page", [p for p in PAGES if runnable_shell_lines(p)])
def test_batch_commands_run(page, tmp_path, monkeypatch):
    """The batch commands shown on a page run as written (after its python blocks made inputs)."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in code_blocks(page, "python"):
        exec(compile(block, page, "exec"), namespace)  # our own documentation
    for line in runnable_shell_lines(page):
        command = shlex.split(line)
        # this interpreter's tools, whether or not its environment is activated
        if command[0] == "napari-voxelwise":
            command = [sys.executable, "-m", "napari_voxelwise", *command[1:]]
        elif command[0] == "python":
            command = [sys.executable, *command[1:]]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (line, done.stderr)


def test_docs_build_strictly(tmp_path):
    """``mkdocs build --strict``: a broken link or API reference fails."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").read_text().count("voxel_variance") > 2
