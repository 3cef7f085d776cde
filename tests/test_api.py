"""The public API as a whole: exports, docstring examples, purity and import weight."""

from __future__ import annotations

import ast
import doctest
import importlib
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import napari_voxelwise

CORE_MODULES = ["statistics", "density", "masking", "differential"]
SOURCE = pathlib.Path(napari_voxelwise.__file__).parent


def test_public_api_is_exported():
    expected = {
        "voxel_variance",
        "axis_statistic",
        "frame_norms",
        "density_map",
        "mask_filter",
        "apply_mask",
        "gradient_vectors",
        "gradient_magnitude",
        "hessian_matrix",
        "hessian_eigenvalues",
        "frangi_vesselness",
    }
    assert expected <= set(napari_voxelwise.__all__)
    for name in expected:
        function = getattr(napari_voxelwise, name)
        assert callable(function)
        doc = function.__doc__
        assert "Parameters" in doc and "Returns" in doc and "Examples" in doc, name


@pytest.mark.parametrize("module", [*CORE_MODULES, "_dispatch"])
def test_docstring_examples_run(module):
    """Every example in the docstrings runs and prints what it shows."""
    imported = importlib.import_module(f"napari_voxelwise.{module}")
    result = doctest.testmod(
        imported, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False
    )
    assert result.attempted > 0
    assert result.failed == 0


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path",
    [
        *(
            SOURCE / f"{m}.py"
            for m in [*CORE_MODULES, "_plan", "_blocks", "_validation", "_dask", "_cli", "_lazy"]
        ),
        *sorted((SOURCE / "_kernels").glob("*.py")),
    ],
    ids=lambda p: str(p.relative_to(SOURCE)),
)
def test_core_imports_neither_qt_nor_napari(path):
    forbidden = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt")
    assert not {n for n in _imports(path) if n.split(".")[0] in forbidden}


def test_importing_the_package_is_light():
    """Importing the plugin loads neither Numba, SciPy, Dask, Qt nor napari."""
    code = (
        "import sys, napari_voxelwise; "
        "heavy = ('numba', 'scipy', 'qtpy', 'napari', 'magicgui', 'dask'); "
        "heavy = [m for m in heavy if m in sys.modules]; "
        "print(heavy)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert output == "[]"


def test_importing_the_kernel_codes_loads_no_numba():
    """`napari_voxelwise._kernels` itself (codes, limits, NumPy helpers) loads neither Numba
    nor llvmlite: the core reads it before deciding which kernel, if any, to compile."""
    code = (
        "import sys, napari_voxelwise._kernels as k; "
        "k.median_network(9); k.median_tile(9, 4); k.by_squaring(3.0); "
        "print([m for m in ('numba', 'llvmlite') if m in sys.modules])"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert output == "[]"


def _read_only(array):
    array = np.array(array)
    array.flags.writeable = False
    return array


CALLS = {
    "voxel_variance": lambda a: napari_voxelwise.voxel_variance(a, axis=0),
    "axis_statistic": lambda a: napari_voxelwise.axis_statistic(a, "median", axis=1),
    "frame_norms": lambda a: napari_voxelwise.frame_norms(a, axis=2),
    "density_map": lambda a: napari_voxelwise.density_map(a, 2, threshold=0.5),
    "density_sliding": lambda a: napari_voxelwise.density_map(a, 2, mode="sliding"),
    "apply_mask": lambda a: napari_voxelwise.apply_mask(a, _read_only(a[0] > 0.5)),
    "mask_filter": lambda a: napari_voxelwise.mask_filter(a, _read_only(a[..., 0] > 0.5))[0],
    "gradient_vectors": lambda a: napari_voxelwise.gradient_vectors(a),
    "gradient_magnitude": lambda a: napari_voxelwise.gradient_magnitude(a, sigma=1.0),
    "hessian_matrix": lambda a: napari_voxelwise.hessian_matrix(a, sigma=1.0),
    "hessian_fd": lambda a: napari_voxelwise.hessian_matrix(a, sigma=None),
    "hessian_eigenvalues": lambda a: napari_voxelwise.hessian_eigenvalues(a, sigma=1.0),
    "frangi_vesselness": lambda a: napari_voxelwise.frangi_vesselness(a),
}


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_read_only_inputs_work_and_results_are_new_arrays(name, dtype):
    """No function writes into its input (a read-only array would raise) or returns a view."""
    data = _read_only((np.random.default_rng(0).random((6, 7, 3)) * 200).astype(dtype))
    result = CALLS[name](data)
    assert isinstance(result, np.ndarray)
    assert not np.shares_memory(result, data)
    result[...] = 0  # the result is writable and separate


#: the kernels' arguments that come from the caller's arrays (the others are outputs or
#: buffers), by ``module.kernel`` in `napari_voxelwise._kernels`
KERNEL_INPUTS = {
    "moments.sum_statistic": ["x"],
    "moments.variance_statistic": ["x"],
    "moments.cv_statistic": ["x"],
    "line_moments.moment_statistic_lines": ["x"],
    "line_moments.moment_statistic_short_lines": ["x"],
    "integer_moments.integer_moment_statistic": ["x"],
    "integer_moments.integer_moment_statistic_short_lines": ["x"],
    "integer_moments.integer_moment_statistic_paired_lines": ["words"],
    "moments.moment_statistic_skipna": ["x"],
    "extrema.extremum_statistic": ["x"],
    "extrema.extremum_lines": ["x"],
    "extrema.extremum_short_lines": ["x"],
    "median.median_statistic": ["x", "first", "second"],
    "norms.frame_norm_partials": ["x"],
    "norms.frame_norm_partials_flat": ["flat"],
    "density.group_sums": ["src"],
    "density.window_sums": ["src"],
    "density.block_density": ["src"],
    "masks.pack_selected": ["points", "mask"],
    "masks.masked_copy": ["image", "inside"],
    "filters.correlate_lines": ["src"],
    "filters.difference_lines": ["src"],
}


@pytest.mark.kernels
def test_kernels_are_compiled_for_read_only_inputs_only():
    """Writable inputs reach the kernels as read-only views (copies of strided parts too), so
    a writable and a read-only array share one compiled kernel: numba compiles one per
    read-only flag, about a second each."""
    import inspect

    data = (np.random.default_rng(0).random((6, 8, 3)) * 200).astype(np.float32)
    for call in CALLS.values():  # writable inputs, contiguous and strided
        call(data)
        call(data[:, ::-1])
    napari_voxelwise.voxel_variance(data[:, ::2], axis=-1)  # strided short lines: copied
    napari_voxelwise.voxel_variance(data.astype(np.uint16)[:, ::2, :2], axis=-1)  # word pairs
    napari_voxelwise.axis_statistic(data, "max", axis=-1)
    napari_voxelwise.axis_statistic(data, "mean", axis=0)  # sum_statistic
    napari_voxelwise.axis_statistic(data, "cv", axis=0)  # cv_statistic
    napari_voxelwise.axis_statistic(data, "median", axis=0)  # median_statistic
    napari_voxelwise.axis_statistic(data, "mean", axis=-1, skipna=True)
    checked = set()
    for qualified, inputs in KERNEL_INPUTS.items():
        module, name = qualified.split(".")
        kernel = getattr(importlib.import_module(f"napari_voxelwise._kernels.{module}"), name)
        parameters = list(inspect.signature(kernel.py_func).parameters)
        for signature in kernel.signatures:
            for argument in inputs:
                assert not signature[parameters.index(argument)].mutable, (name, signature)
                checked.add(name)
    assert checked >= {
        "sum_statistic",
        "variance_statistic",
        "cv_statistic",
        "moment_statistic_short_lines",
        "integer_moment_statistic_paired_lines",
        "extremum_short_lines",
        "median_statistic",
        "frame_norm_partials_flat",
        "block_density",
        "window_sums",
        "pack_selected",
        "masked_copy",
        "correlate_lines",
        "difference_lines",
    }, checked


def test_no_eval_exec_or_pickle_in_the_package():
    """User input never reaches eval, exec or pickle (np.load only with allow_pickle=False)."""
    package = pathlib.Path(napari_voxelwise.__file__).parent
    for source in package.rglob("*.py"):
        text = source.read_text()
        assert "eval(" not in text and "exec(" not in text, source
        for unsafe in ("import pickle", "pickle.load", "allow_pickle=True", "np.load(path)"):
            assert unsafe not in text, (source, unsafe)
        for line in text.splitlines():
            if "np.load(" in line:
                assert "allow_pickle=False" in line, (source, line)
