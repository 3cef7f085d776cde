"""Microscope formats in the batch command: voxel sizes read from OME-Zarr and TIFF files,
OME-Zarr outputs placed over their input (as the panels place their layers), and errors.

Inputs are written and outputs read by independent libraries (ome-zarr-py, tifffile,
napari-ome-zarr); the reference values come from our NumPy functions and the panels'
placement rules.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import tomllib
import zarr

import napari_voxelwise as vw
from conftest import random_data
from napari_voxelwise._cli import main
from napari_voxelwise._geometry import block_placement

ome_zarr = pytest.importorskip("ome_zarr")
from ome_zarr.format import FormatV04, FormatV05  # noqa: E402
from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.reader import Reader  # noqa: E402
from ome_zarr.writer import write_multiscale  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCALE = (2.0, 0.5, 0.5)
TRANSLATION = (10.0, 3.0, 4.0)


def _run(*args) -> int:
    return main([str(a) for a in args])


def write_ome_zarr_py(path, data, axes, scale, translation, fmt=None, channels=None):
    """`data` as an OME-Zarr image written by ome-zarr-py (one level)."""
    fmt = fmt or FormatV04()
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    units = {"space": "micrometer", "time": "second"}
    axes = [
        {"name": name, "type": kind, **({"unit": units[kind]} if kind in units else {})}
        for name, kind in axes
    ]
    transforms = [
        [
            {"type": "scale", "scale": list(scale)},
            {"type": "translation", "translation": list(translation)},
        ]
    ]
    metadata = {}
    if channels:
        metadata["omero"] = {
            "channels": [
                {
                    "label": label,
                    "color": "FFFFFF",
                    "window": {"min": 0, "max": 1, "start": 0, "end": 1},
                }
                for label in channels
            ]
        }
    with warnings.catch_warnings():  # its coordinate_transformations argument is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        write_multiscale(
            [data],
            group,
            fmt=fmt,
            axes=axes,
            coordinate_transformations=transforms,
            metadata=metadata,
        )
    return path


def read_with_ome_zarr_py(path):
    """(levels, axes, coordinate transformations per level, group attributes) by ome-zarr-py."""
    (node, *_) = list(Reader(parse_url(str(path)))())
    attributes = zarr.open_group(str(path), mode="r").attrs.asdict()
    return node.data, node.metadata["axes"], node.metadata["coordinateTransformations"], attributes


def _transforms(transforms):
    scale = next(t["scale"] for t in transforms if t["type"] == "scale")
    translation = next(t["translation"] for t in transforms if t["type"] == "translation")
    return np.asarray(scale), np.asarray(translation)


@pytest.fixture
def volume():
    return random_data((16, 32, 32), np.float32, seed=28)


@pytest.mark.parametrize("fmt", [FormatV04(), FormatV05()], ids=["ngff0.4", "ngff0.5"])
def test_hessian_uses_the_voxel_sizes_of_an_ome_zarr(tmp_path, volume, fmt, capsys):
    source = write_ome_zarr_py(
        tmp_path / "embryo.ome.zarr",
        volume,
        [("z", "space"), ("y", "space"), ("x", "space")],
        SCALE,
        TRANSLATION,
        fmt,
    )
    output = tmp_path / "eigenvalues.ome.zarr"
    assert _run("hessian-eigenvalues", source, "-o", output, "--sigma", 2) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "z=2 micrometer, y=0.5 micrometer, x=0.5 micrometer" in line
    assert "OME-Zarr" in line and "origin z=10, y=3, x=4" in line

    levels, axes, transforms, attributes = read_with_ome_zarr_py(output)
    eigenvalues = np.moveaxis(np.asarray(levels[0]), 0, -1)  # NGFF: the channel axis first
    reference = vw.hessian_eigenvalues(volume, 2.0, spacing=SCALE)
    np.testing.assert_allclose(eigenvalues, reference, rtol=1e-5, atol=1e-6)
    isotropic = vw.hessian_eigenvalues(volume, 2.0)
    assert not np.allclose(eigenvalues, isotropic, rtol=1e-3, atol=1e-3)

    assert [axis["name"] for axis in axes] == ["c", "z", "y", "x"]
    assert [axis.get("unit") for axis in axes[1:]] == ["micrometer"] * 3
    scale, translation = _transforms(transforms[0])
    np.testing.assert_allclose(scale[1:], SCALE)
    np.testing.assert_allclose(translation[1:], TRANSLATION)
    record = attributes["napari_voxelwise"]
    assert record["operation"] == "hessian_eigenvalues"
    assert record["parameters"]["spacing"] == list(SCALE)
    assert record["parameters"]["sigma"] == 2.0
    assert record["sources"] == [str(source)] and record["version"] == vw.__version__


def test_vesselness_and_its_scale_map_in_physical_units(tmp_path, volume, capsys):
    source = write_ome_zarr_py(
        tmp_path / "vessels.ome.zarr",
        volume,
        [("z", "space"), ("y", "space"), ("x", "space")],
        SCALE,
        TRANSLATION,
    )
    output, scales = tmp_path / "response.ome.zarr", tmp_path / "scales.ome.zarr"
    arguments = ["vesselness", source, "-o", output, "--sigmas", "1,2", "--scale-output", scales]
    assert _run(*arguments, "--quiet") == 0
    response, best = vw.vesselness(volume, [1, 2], spacing=SCALE, return_scale=True)
    for path, expected in ((output, response), (scales, best)):
        levels, _, transforms, attributes = read_with_ome_zarr_py(path)
        np.testing.assert_allclose(np.asarray(levels[0]), expected, atol=1e-5)
        scale, translation = _transforms(transforms[0])
        np.testing.assert_allclose(scale, SCALE)
        np.testing.assert_allclose(translation, TRANSLATION)
        record = attributes["napari_voxelwise"]
        assert record["operation"] == "vesselness"
        assert record["parameters"]["sigmas"] == [1.0, 2.0]
        assert record["parameters"]["spacing"] == list(SCALE)


def test_spacing_option_overrides_the_file(tmp_path, volume, capsys):
    source = write_ome_zarr_py(
        tmp_path / "in.ome.zarr",
        volume,
        [("z", "space"), ("y", "space"), ("x", "space")],
        SCALE,
        TRANSLATION,
    )
    output = tmp_path / "out.npy"
    assert _run("hessian-eigenvalues", source, "-o", output, "--sigma", 2, "--spacing", 1) == 0
    assert "from --spacing, over the file's z=2" in capsys.readouterr().out
    np.testing.assert_allclose(
        np.load(output), vw.hessian_eigenvalues(volume, 2.0), rtol=1e-5, atol=1e-6
    )


def test_variance_along_t_drops_the_t_axis(tmp_path):
    stack = random_data((5, 8, 16, 16), np.float32, seed=3)
    axes = [("t", "time"), ("z", "space"), ("y", "space"), ("x", "space")]
    source = write_ome_zarr_py(
        tmp_path / "in.ome.zarr", stack, axes, (3.0, *SCALE), (100.0, *TRANSLATION)
    )
    output = tmp_path / "variance.ome.zarr"
    assert _run("variance", source, "-o", output, "--axis", 0, "--quiet") == 0
    levels, axes, transforms, attributes = read_with_ome_zarr_py(output)
    np.testing.assert_allclose(np.asarray(levels[0]), stack.var(axis=0), rtol=1e-5)
    assert [axis["name"] for axis in axes] == ["z", "y", "x"]
    scale, translation = _transforms(transforms[0])
    np.testing.assert_allclose(scale, SCALE)
    np.testing.assert_allclose(translation, TRANSLATION)
    assert attributes["napari_voxelwise"]["operation"] == "axis_statistic"


def test_channel_is_chosen_and_dropped(tmp_path, volume, capsys):
    channels = np.stack([volume, 2 * volume])
    axes = [("c", "channel"), ("z", "space"), ("y", "space"), ("x", "space")]
    source = write_ome_zarr_py(
        tmp_path / "in.ome.zarr",
        channels,
        axes,
        (1.0, *SCALE),
        (0.0, *TRANSLATION),
        channels=["DAPI", "GFP"],
    )
    output = tmp_path / "out.ome.zarr"
    assert _run("gradient", source, "-o", output, "--magnitude", "--quiet") == 2
    error = capsys.readouterr().err.strip()
    assert "0: DAPI, 1: GFP" in error and "--channel" in error and "\n" not in error
    assert not output.exists()
    assert _run("gradient", source, "-o", output, "--magnitude", "--channel", 1, "--quiet") == 0
    levels, axes, _, _ = read_with_ome_zarr_py(output)
    reference = vw.gradient_magnitude(2 * volume, spacing=SCALE)
    np.testing.assert_allclose(np.asarray(levels[0]), reference, rtol=1e-5, atol=1e-6)
    assert [axis["name"] for axis in axes] == ["z", "y", "x"]


def test_pyramid_levels_are_block_means_placed_as_density_blocks(tmp_path):
    image = random_data((2, 300, 520), np.float32, seed=5)[0]
    source = tmp_path / "in.ome.zarr"
    write_ome_zarr_py(source, image, [("y", "space"), ("x", "space")], (0.5, 0.25), (1.0, 2.0))
    output = tmp_path / "out.ome.zarr"
    assert (
        _run("mask", source, "--mask", _mask(tmp_path, image.shape), "-o", output, "--quiet") == 0
    )
    levels, _, transforms, _ = read_with_ome_zarr_py(output)
    shapes = [level.shape for level in levels]
    assert shapes == [(300, 520), (150, 260), (150, 130)]  # axes under 256 are not halved
    level0 = np.asarray(levels[0])
    expected = level0.reshape(150, 2, 260, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(np.asarray(levels[1]), expected, rtol=1e-6)
    scale, translation = _transforms(transforms[1])
    expected_scale, expected_translation = block_placement((0.5, 0.25), (1.0, 2.0), (2, 2))
    np.testing.assert_allclose(scale, expected_scale)
    np.testing.assert_allclose(translation, expected_translation)


def _mask(tmp_path, shape):
    path = tmp_path / "mask.npy"
    np.save(path, np.ones(shape, bool))
    return path


@pytest.mark.parametrize("kind", ["ome", "imagej", "none"])
def test_tiff_voxel_sizes(tmp_path, volume, kind, capsys):
    path = tmp_path / ("in.ome.tif" if kind == "ome" else "in.tif")
    if kind == "ome":
        metadata = {
            "axes": "ZYX",
            "PhysicalSizeZ": 2.0,
            "PhysicalSizeY": 0.5,
            "PhysicalSizeX": 0.5,
            "PhysicalSizeZUnit": "µm",
        }
        tifffile.imwrite(path, volume, ome=True, metadata=metadata)
    elif kind == "imagej":
        tifffile.imwrite(
            path,
            volume,
            imagej=True,
            resolution=(2.0, 2.0),
            metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"},
        )
    else:
        tifffile.imwrite(path, volume)
    output = tmp_path / "out.ome.zarr"
    assert _run("hessian-eigenvalues", path, "-o", output, "--sigma", 2) == 0
    line = capsys.readouterr().out.splitlines()[0]
    levels, _, transforms, _ = read_with_ome_zarr_py(output)
    scale, _ = _transforms(transforms[0])
    eigenvalues = np.moveaxis(np.asarray(levels[0]), 0, -1)
    if kind == "none":
        assert "z=1, y=1, x=1" in line and "no voxel size" in line
        np.testing.assert_allclose(scale, 1.0)
        reference = vw.hessian_eigenvalues(volume, 2.0)
    else:
        assert "z=2 micrometer, y=0.5 micrometer, x=0.5 micrometer" in line
        assert ("OME-TIFF" if kind == "ome" else "ImageJ") in line
        np.testing.assert_allclose(scale[1:], SCALE)
        reference = vw.hessian_eigenvalues(volume, 2.0, spacing=SCALE)
    np.testing.assert_allclose(eigenvalues, reference, rtol=1e-5, atol=1e-6)


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path, volume, capsys):
    source = write_ome_zarr_py(
        tmp_path / "in.ome.zarr",
        volume,
        [("z", "space"), ("y", "space"), ("x", "space")],
        SCALE,
        TRANSLATION,
    )
    collection = tmp_path / "plate.ome.zarr"
    zarr.open_group(str(collection), mode="w", zarr_format=2).attrs["bioformats2raw.layout"] = 3
    vendor = tmp_path / "scan.czi"
    vendor.write_bytes(b"not a czi file")
    output = tmp_path / "out.ome.zarr"
    cases = [
        ((collection,), "no multiscales"),
        ((source, "--level", 3), "--level 3"),
        ((source, "--channel", 0), "no channel axis"),
        ((vendor,), "bioio"),
    ]
    for arguments, expected in cases:
        assert _run("variance", *arguments, "-o", output, "--axis", 0) == 2, arguments
        captured = capsys.readouterr()
        error = captured.err.strip()
        assert expected in error and error.count("\n") == 0, (arguments, error)
        assert not output.exists()
        assert not list(tmp_path.glob(".out.ome.zarr.*"))
    # an existing output is kept without --overwrite, replaced with it
    output.mkdir()
    assert _run("variance", source, "-o", output, "--axis", 0) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert list(output.iterdir()) == []
    assert _run("variance", source, "-o", output, "--axis", 0, "--overwrite", "--quiet") == 0
    assert (output / "zarr.json").exists()
    # norms give no image
    assert _run("norms", source, "-o", tmp_path / "norms.ome.zarr") == 2
    assert ".csv" in capsys.readouterr().err


def test_extras_name_the_format_libraries():
    """The writer comes with the batch extra, napari's OME-Zarr reader with all and testing,
    bioio and its OME plugins with the formats extra."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]

    def names(extra):
        return " ".join(extras[extra])

    assert "yaozarrs" in names("batch")
    for extra in ("all", "testing"):
        assert "napari-ome-zarr" in names(extra)
    assert "ome-zarr" in names("testing")  # the tests' independent writer and reader
    for package in ("bioio", "bioio-ome-tiff", "bioio-ome-zarr"):
        assert any(entry.startswith(package + ">") for entry in extras["formats"]), package
    assert "napari-voxelwise[batch" in names("all") and "batch" in names("testing")


# --------------------------------------------------------------------------- in napari

OPERATIONS = [
    ("variance", ["--axis", "0"]),
    ("statistic", ["--statistic", "max", "--axis", "0"]),
    ("density", ["--window", "1,4,4", "--threshold", "0.5"]),
    ("mask", []),
    ("gradient", ["--magnitude"]),
    ("gradient", []),
    ("hessian-eigenvalues", ["--sigma", "1.5"]),
    ("vesselness", ["--sigmas", "1,2"]),
]


def _world(layer):
    """(scale, translate) of `layer` in world coordinates (napari-ome-zarr puts the
    translation in the affine)."""
    assert np.allclose(layer.affine.linear_matrix, np.eye(layer.ndim))
    return np.asarray(layer.scale), np.asarray(layer.translate) + layer.affine.translate


def test_outputs_open_over_their_source_in_napari(make_napari_viewer, tmp_path):
    """Every operation's output, opened by napari-ome-zarr, lies where its input lies (the
    density map where the density panel puts it).

    napari-ome-zarr 0.10 reads only the first (scale) transformation of NGFF 0.4/0.5
    datasets, so it shows neither the input's nor the output's translation; the
    translations are then compared in the files (ome-zarr-py's reader)."""
    pytest.importorskip("napari_ome_zarr")
    from napari.layers import Image

    from napari_voxelwise._widgets.density import density_geometry

    stack = random_data((3, 8, 16, 16), np.float32, seed=9)
    axes = [("t", "time"), ("z", "space"), ("y", "space"), ("x", "space")]
    file_translate = np.array([100.0, *TRANSLATION])
    source = write_ome_zarr_py(
        tmp_path / "in.ome.zarr", stack, axes, (3.0, *SCALE), file_translate
    )
    mask = tmp_path / "mask.npy"
    np.save(mask, stack[0] > 0.5)
    viewer = make_napari_viewer()
    (input_layer,) = viewer.open(source, plugin="napari-ome-zarr")
    in_scale, in_translate = _world(input_layer)
    np.testing.assert_allclose(in_scale, (3.0, *SCALE))
    reader_translates = np.allclose(in_translate, file_translate)
    for index, (operation, options) in enumerate(OPERATIONS):
        output = tmp_path / f"out{index}.ome.zarr"
        extra = ["--mask", mask] if operation == "mask" else []
        assert _run(operation, source, "-o", output, *options, *extra, "--quiet") == 0
        layers = viewer.open(output, plugin="napari-ome-zarr")
        if operation == "hessian-eigenvalues":
            assert len(layers) == 3  # one layer per eigenvalue, as the panel gives
        for placed_as in ("viewer", "file"):
            translate = in_translate if placed_as == "viewer" else file_translate
            if operation in ("variance", "statistic"):  # t reduced: z, y, x remain
                expected = in_scale[1:], translate[1:]
            elif operation == "density":  # where the density panel puts its layer
                like_input = Image(stack, scale=in_scale, translate=translate)
                geometry = density_geometry(like_input, (1, 1, 4, 4), "block")
                expected = geometry["scale"], geometry["translate"]
            else:
                expected = in_scale, translate
            if placed_as == "viewer":
                for layer in layers:
                    scale, translate = _world(layer)
                    np.testing.assert_allclose(scale, expected[0], err_msg=operation)
                    if reader_translates or operation != "density":
                        np.testing.assert_allclose(translate, expected[1], err_msg=operation)
            else:
                _, _, transforms, _ = read_with_ome_zarr_py(output)
                scale, translate = _transforms(transforms[0])
                if len(scale) > len(expected[0]):  # the eigenvalue / component axis
                    scale, translate = np.delete(scale, 1), np.delete(translate, 1)
                np.testing.assert_allclose(scale, expected[0], err_msg=operation)
                np.testing.assert_allclose(translate, expected[1], err_msg=operation)
