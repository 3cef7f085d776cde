"""Packaging: the npe2 manifest is found after editable and plain installs, and validates."""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

import napari_voxelwise

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = pathlib.Path(napari_voxelwise.__file__).parent


def test_manifest_in_package_is_the_top_level_file():
    """The package's napari.yaml is a link to the top-level manifest (one source of truth)."""
    inside = PACKAGE / "napari.yaml"
    assert inside.read_text() == (ROOT / "napari.yaml").read_text()


def test_manifest_validates_and_is_discovered():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution("napari-voxelwise")
    assert manifest.name == "napari-voxelwise"
    assert {s.key for s in manifest.contributions.sample_data} == {
        "noisy_stack",
        "binary_density",
        "tubes_and_blobs",
    }
    # every command's python_name resolves to a callable
    for command in manifest.contributions.commands:
        module_name, attribute = command.python_name.split(":")
        module = __import__(module_name, fromlist=[attribute])
        assert callable(getattr(module, attribute)), command.id
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-voxelwise"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in (result.stdout + result.stderr).lower()


@pytest.mark.slow
def test_plain_wheel_install_ships_the_manifest(tmp_path):
    """A wheel (what `pip install .` builds) contains the manifest as a real file, and npe2
    finds it when the package is imported from that install."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to copy the source tree")
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            "__pycache__",
            "*.egg-info",
            "build",
            "dist",
            ".pytest_cache",
            ".hypothesis",
            "site",
        ),
    )
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("napari_voxelwise-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo("napari_voxelwise/napari.yaml")
        # a regular file (not a symlink entry) with the manifest's content
        assert (info.external_attr >> 16) & 0o170000 in (0, 0o100000)
        assert archive.read(info).decode() == (ROOT / "napari.yaml").read_text()
        entry_points = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
        assert "napari_voxelwise:napari.yaml" in archive.read(entry_points).decode()
        # the batch command is a console script
        assert (
            "napari-voxelwise = napari_voxelwise._cli:main" in archive.read(entry_points).decode()
        )
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import napari_voxelwise, npe2; "
        "m = npe2.PluginManifest.from_distribution('napari-voxelwise'); "
        "print(napari_voxelwise.__file__); print(m.name, len(m.contributions.sample_data))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    output = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    ).stdout.split("\n")
    assert output[0].startswith(str(target))  # imported from the plain install
    assert output[1] == "napari-voxelwise 3"
    script = subprocess.run(
        [sys.executable, str(target / "bin" / "napari-voxelwise"), "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert script.returncode == 0, script.stderr
    assert "hessian-eigenvalues" in script.stdout


def _requirements_of(extra: str) -> list[str]:
    """The installed distribution's requirements that the extra `extra` adds."""
    requirements = importlib.metadata.requires("napari-voxelwise") or []
    return [r for r in requirements if re.search(rf"extra\s*==\s*['\"]{extra}['\"]", r)]


@pytest.mark.parametrize("extra", ["cluster", "testing"])
def test_distributed_comes_with_dask_as_one_release(extra):
    """distributed is asked for only through dask's own extra, which pins the matching release
    (a bare `distributed` let pip pair a new dask with a years-old distributed), and the
    distributed installed here imports and is dask's release."""
    requirements = " ".join(_requirements_of(extra))
    assert re.search(r"dask\[[^\]]*distributed[^\]]*\]", requirements), requirements
    for requirement in _requirements_of(extra):
        assert not requirement.startswith("distributed"), requirement

    import dask
    import distributed

    assert distributed.__version__ == dask.__version__


@pytest.mark.parametrize("extra", ["all", "testing"])
def test_napari_comes_with_its_qt6_backend(extra):
    (napari,) = [r for r in _requirements_of(extra) if r.startswith("napari[")]
    assert "pyqt6" in napari and "pyqt5" not in napari, napari


def test_the_test_run_uses_a_qt6_binding(qapp):
    """napari runs on Qt6 in the test run (the testing extra installs PyQt6, and no PyQt5)."""
    import qtpy
    from qtpy.QtWidgets import QApplication

    assert qtpy.QT6, f"Qt binding {qtpy.API_NAME} {qtpy.QT_VERSION}: install PyQt6"
    assert isinstance(qapp, QApplication)  # the test application is made with that binding
