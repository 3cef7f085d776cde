"""The batch command ``napari-voxelwise``: every operation end to end, and its errors."""

from __future__ import annotations

import os
import subprocess
import sys

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

import napari_voxelwise as vw
from conftest import random_data
from napari_voxelwise._cli import main

SRC = os.path.join(os.path.dirname(os.path.dirname(__file__)), "src")


@pytest.fixture
def stack():
    return random_data((14, 12, 10), np.float32, seed=21)


def _read(path) -> np.ndarray:
    path = str(path)
    if path.endswith(".npy"):
        return np.load(path)
    if path.endswith(".zarr"):
        return da.from_zarr(path).compute()
    if path.endswith(".csv"):
        return np.loadtxt(path)
    return tifffile.imread(path)


def _run(*args) -> int:
    return main([str(a) for a in args])


def test_variance_npy_to_zarr(tmp_path, stack, capsys):
    np.save(tmp_path / "in.npy", stack)
    assert _run("variance", tmp_path / "in.npy", "-o", tmp_path / "out.zarr", "--axis", 0) == 0
    np.testing.assert_allclose(
        _read(tmp_path / "out.zarr"), vw.voxel_variance(stack, axis=0), rtol=1e-5
    )
    assert "wrote" in capsys.readouterr().out


def test_statistic_zarr_component_to_npy_quietly(tmp_path, stack, capsys):
    store = str(tmp_path / "in.zarr")
    zarr.open_group(store, mode="w")
    raw = zarr.open_array(
        store, path="raw", mode="w", shape=stack.shape, chunks=(4, 12, 10), dtype="f4"
    )
    raw[...] = stack
    zarr.open_array(store, path="other", mode="w", shape=(2,), dtype="f4")
    output = tmp_path / "median.npy"
    arguments = ["statistic", tmp_path / "in.zarr", "-o", output, "--statistic", "median"]
    assert _run(*arguments, "--component", "raw", "--axis", 1, "--quiet") == 0
    np.testing.assert_array_equal(_read(output), vw.axis_statistic(stack, "median", axis=1))
    assert capsys.readouterr().out == ""
    # a group of several arrays needs --component
    assert _run(*arguments[:-2], "--statistic", "max", "--overwrite") == 2
    assert "--component" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_norms(tmp_path, stack, suffix):
    np.save(tmp_path / "in.npy", stack)
    output = tmp_path / f"norms{suffix}"
    assert (
        _run("norms", tmp_path / "in.npy", "-o", output, "--ord", "inf", "--chunks", "5,5,5") == 0
    )
    np.testing.assert_array_equal(_read(output), vw.frame_norms(stack, ord=np.inf))


def test_density_tif_to_tif(tmp_path, stack):
    tifffile.imwrite(tmp_path / "in.tif", stack)
    output = tmp_path / "density.tif"
    options = ["--window", "3,4", "--mode", "block", "--edge", "pad", "--threshold", "2.5"]
    assert _run("density", tmp_path / "in.tif", "-o", output, *options) == 0
    expected = vw.density_map(stack, (3, 4), "block", 2.5, "pad")
    np.testing.assert_array_equal(_read(output), expected)


def test_mask_with_mask_file(tmp_path, stack):
    np.save(tmp_path / "in.npy", stack)
    mask = stack[0] > 3
    tifffile.imwrite(tmp_path / "mask.tif", mask.astype(np.uint8))
    output = tmp_path / "masked.zarr"
    arguments = ["mask", tmp_path / "in.npy", "--mask", tmp_path / "mask.tif", "--fill", "nan"]
    assert _run(*arguments, "-o", output) == 0
    np.testing.assert_array_equal(_read(output), vw.apply_mask(stack, mask, np.nan))


@pytest.mark.parametrize("magnitude", [False, True])
def test_gradient(tmp_path, stack, magnitude):
    np.save(tmp_path / "in.npy", stack)
    output = tmp_path / "gradient.npy"
    arguments = ["gradient", tmp_path / "in.npy", "-o", output, "--sigma", "1.5"]
    arguments += ["--spacing", "2,1,1", "--chunks", "5,6,10"]
    assert _run(*arguments, *(["--magnitude"] if magnitude else [])) == 0
    function = vw.gradient_magnitude if magnitude else vw.gradient_vectors
    np.testing.assert_array_equal(_read(output), function(stack, (2.0, 1.0, 1.0), 1.5))


def test_hessian_eigenvalues_of_a_volume_and_of_frames(tmp_path, stack):
    tifffile.imwrite(tmp_path / "in.tif", stack)
    output = tmp_path / "eigenvalues.npy"
    arguments = ["hessian-eigenvalues", tmp_path / "in.tif", "-o", output]
    assert _run(*arguments, "--sigma", "1", "--order", "ascending") == 0
    expected = vw.hessian_eigenvalues(stack, 1.0, order="ascending")
    np.testing.assert_array_equal(_read(output), expected)
    # a 4D stack: one 3D volume per frame along axis 0
    frames = np.stack([stack, stack[::-1]])
    np.save(tmp_path / "frames.npy", frames)
    output = tmp_path / "frames.zarr"
    assert (
        _run("hessian-eigenvalues", tmp_path / "frames.npy", "-o", output, "--sigma", "none") == 0
    )
    expected = np.stack([vw.hessian_eigenvalues(frame, None) for frame in frames])
    np.testing.assert_array_equal(_read(output), expected)


@pytest.mark.parametrize("scale_suffix", [".npy", ".tif"])
def test_vesselness_with_its_scale_map(tmp_path, scale_suffix, capsys):
    volume = vw.hessian_eigenvalues(random_data((16, 18, 20), np.float32, seed=3), 1.5)[..., 0]
    np.save(tmp_path / "in.npy", volume)
    output, scales = tmp_path / "vessels.zarr", tmp_path / f"scales{scale_suffix}"
    arguments = ["vesselness", tmp_path / "in.npy", "-o", output, "--sigmas", "1,2,3"]
    arguments += ["--spacing", "2,1,1", "--scale-output", scales, "--chunks", "8,9,20"]
    assert _run(*arguments) == 0
    response, best = vw.vesselness(volume, [1, 2, 3], spacing=(2, 1, 1), return_scale=True)
    np.testing.assert_allclose(_read(output), response, atol=1e-6)
    np.testing.assert_array_equal(_read(scales), best)
    assert f"wrote {scales}" in capsys.readouterr().out
    # Sato, no scale map, a 4D input frame by frame
    frames = np.stack([volume, volume[::-1]])
    np.save(tmp_path / "frames.npy", frames)
    output = tmp_path / "sato.npy"
    assert (
        _run(
            "vesselness",
            tmp_path / "frames.npy",
            "-o",
            output,
            "--sigmas",
            "2",
            "--method",
            "sato",
        )
        == 0
    )
    np.testing.assert_allclose(_read(output), vw.vesselness(frames, 2, method="sato"), atol=1e-6)


def test_vesselness_refuses_an_existing_scale_output(tmp_path, capsys):
    np.save(tmp_path / "in.npy", np.zeros((8, 9, 10), np.float32))
    (tmp_path / "scales.npy").write_bytes(b"keep")
    arguments = ["vesselness", tmp_path / "in.npy", "-o", tmp_path / "out.npy", "--sigmas", "1"]
    assert _run(*arguments, "--scale-output", tmp_path / "scales.npy") == 2
    assert "scales.npy exists" in capsys.readouterr().err
    assert not (tmp_path / "out.npy").exists()
    assert (tmp_path / "scales.npy").read_bytes() == b"keep"


def test_overwrite_replaces_and_refuses_without_flag(tmp_path, stack, capsys):
    np.save(tmp_path / "in.npy", stack)
    for output in (tmp_path / "out.npy", tmp_path / "out.zarr"):
        assert _run("statistic", tmp_path / "in.npy", "-o", output, "--statistic", "max") == 0
        before = _read(output)
        arguments = ["statistic", tmp_path / "in.npy", "-o", output, "--statistic", "min"]
        assert _run(*arguments) == 2
        error = capsys.readouterr().err
        assert "exists; use --overwrite" in error and "Traceback" not in error
        np.testing.assert_array_equal(_read(output), before)  # untouched
        assert _run(*arguments, "--overwrite") == 0
        np.testing.assert_array_equal(_read(output), vw.axis_statistic(stack, "min"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "out.npy", "out.zarr"]


def test_failed_run_keeps_the_old_output_and_leaves_nothing(tmp_path, stack, capsys):
    np.save(tmp_path / "in.npy", stack)
    mask = np.ones(stack.shape[1:])
    mask[0, 0] = np.nan  # refused when the mask's chunk is computed
    np.save(tmp_path / "mask.npy", mask)
    output = tmp_path / "out.zarr"
    assert _run("variance", tmp_path / "in.npy", "-o", output) == 0
    arguments = ["mask", tmp_path / "in.npy", "--mask", tmp_path / "mask.npy", "-o", output]
    assert _run(*arguments, "--overwrite", "--quiet") == 2
    assert "mask contains NaN" in capsys.readouterr().err
    np.testing.assert_allclose(_read(output), vw.voxel_variance(stack), rtol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "mask.npy", "out.zarr"]


@pytest.mark.parametrize(
    ("make_input", "arguments", "message"),
    [
        (None, ["variance"], "does not exist"),
        (lambda p: p.with_suffix(".txt").write_text("1 2"), ["variance"], "unknown format .txt"),
        (lambda p: p.write_bytes(b"not an array"), ["variance"], "cannot read"),
        (
            lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
            ["variance"],
            "cannot read",
        ),
        ("stack", ["variance", "--ddof", "14", "--axis", "0"], "ddof=14 must be smaller"),
        ("stack", ["density", "--window", "20"], "larger than the image"),
        ("stack", ["statistic", "--statistic", "max", "--chunks", "4,4"], "--chunks has 2"),
        ("stack", ["hessian-eigenvalues", "--frames"], "3D or 4D"),
    ],
)
def test_errors_exit_2_with_one_line(tmp_path, stack, capsys, make_input, arguments, message):
    path = tmp_path / "in.npy"
    if make_input == "stack":
        np.save(path, stack[0] if "--frames" in arguments else stack)
    elif make_input is not None:
        make_input(path)
        if not path.exists():
            path = path.with_suffix(".txt")
    output = tmp_path / "out.npy"
    assert _run(arguments[0], path, "-o", output, *arguments[1:]) == 2
    error = capsys.readouterr().err
    assert error.startswith("napari-voxelwise: error: ")
    assert message in error
    assert error.count("\n") == 1
    assert not output.exists()


def test_unknown_output_format_and_bad_option_values(tmp_path, stack, capsys):
    np.save(tmp_path / "in.npy", stack)
    assert _run("variance", tmp_path / "in.npy", "-o", tmp_path / "out.h5") == 2
    assert "unknown format .h5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse: a value of the wrong type
        _run("density", tmp_path / "in.npy", "-o", tmp_path / "d.npy", "--window", "three")
    assert exit_info.value.code == 2
    assert "expected an integer" in capsys.readouterr().err


def test_module_help_runs_in_a_subprocess():
    environment = {**os.environ, "PYTHONPATH": SRC}
    result = subprocess.run(
        [sys.executable, "-m", "napari_voxelwise", "--help"],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for operation in ("variance", "statistic", "norms", "density", "mask", "gradient"):
        assert operation in result.stdout
    assert "hessian-eigenvalues" in result.stdout


def test_reductions_read_chunks_deep_along_the_reduced_axis(tmp_path):
    """Deep chunks keep the float64 partial results of a reduction few (bounded memory)."""
    from functools import partial

    from napari_voxelwise._cli import REDUCTION_DEPTH, _reduction_chunks, read_array

    np.save(tmp_path / "in.npy", np.zeros((70, 40, 30), np.float32))
    lazy = read_array(tmp_path / "in.npy", partial(_reduction_chunks, axis=-3))
    assert lazy.chunks[0] == (REDUCTION_DEPTH, REDUCTION_DEPTH, 70 - 2 * REDUCTION_DEPTH)
    assert _reduction_chunks((5, 4), axis=0) == (5, "auto")


def test_every_operation_documents_its_output_formats(capsys):
    for operation in ("variance", "norms", "hessian-eigenvalues"):
        with pytest.raises(SystemExit):
            main([operation, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "its extension picks the format (.npy, .tif, .zarr)" in text
        assert ("(one value per line)" in text) == (operation == "norms")


def test_median_reads_the_whole_axis_per_chunk(tmp_path):
    from functools import partial

    from napari_voxelwise._cli import _reduction_chunks, read_array

    np.save(tmp_path / "in.npy", np.zeros((70, 40, 30), np.float32))
    chunks = partial(_reduction_chunks, axis=1, whole_axis=True)
    assert read_array(tmp_path / "in.npy", chunks).chunks[1] == (40,)
