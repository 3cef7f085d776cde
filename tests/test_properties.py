"""Property-based tests: random shapes, dtypes, axes, windows and sigmas.

Every public function either matches its NumPy/SciPy reference or raises a
ValueError/TypeError whose message names a parameter; never another exception,
a silent wrong shape or a crash; and it never changes its input. The number of
examples is bounded so that CI stays fast, and the same on every run; set
``VOXELWISE_RANDOM=1`` (and ``VOXELWISE_EXAMPLES=2000``) to explore new ones. Run
with ``--hypothesis-show-statistics`` to see how many calls were refused ("bad input").
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage as ndi

import napari_voxelwise as vw
from conftest import checksum

DTYPES = ["bool", "uint8", "uint16", "int32", "int64", "float16", "float32", "float64"]
PARAMETERS = (
    "stack",
    "image",
    "volume",
    "points",
    "mask",
    "eigenvalues",
    "axis",
    "ddof",
    "statistic",
    "skipna",
    "ord",
    "window",
    "mode",
    "edge",
    "threshold",
    "fill_value",
    "sigma",
    "spacing",
    "order",
    "truncate",
    "alpha",
    "beta",
    "gamma",
    "ridges",
    "workers",
)
#: examples per test; VOXELWISE_EXAMPLES=2000 for a thorough local run
EXAMPLES = int(os.environ.get("VOXELWISE_EXAMPLES", "60"))
#: the same examples on every run (CI never fails by chance); VOXELWISE_RANDOM=1 explores anew
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=not os.environ.get("VOXELWISE_RANDOM"),
)


def elements_for(dtype: str, extremes: bool = False):
    """Values of `dtype`: bounded magnitudes, or (extremes) the dtype's limits, NaN and inf."""
    dtype_ = np.dtype(dtype)
    if dtype_.kind == "b":
        return st.booleans()
    if dtype_.kind in "iu":
        info = np.iinfo(dtype_)
        if extremes:
            return st.integers(int(info.min), int(info.max))
        return st.integers(max(int(info.min), -1000), min(int(info.max), 1000))
    if extremes:
        return st.floats(width=dtype_.itemsize * 8, allow_nan=True, allow_infinity=True)
    return st.floats(-1000, 1000, width=dtype_.itemsize * 8)


@st.composite
def arrays(draw, min_dims=1, max_dims=4, max_side=6, extremes=False, dtypes=DTYPES):
    dtype = draw(st.sampled_from(dtypes))
    shape = draw(
        hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side)
    )
    data = draw(hnp.arrays(dtype, shape, elements=elements_for(dtype, extremes)))
    if draw(st.booleans()) and data.ndim > 1:  # a non-contiguous view
        data = np.swapaxes(data, 0, -1)
    return data


def call_checked(function, name, *args, **kwargs):
    """Call and return the result, or None after a well-formed ValueError/TypeError.

    The inputs (NumPy arrays among args/kwargs) must be unchanged afterwards.
    """
    inputs = [a for a in (*args, *kwargs.values()) if isinstance(a, np.ndarray)]
    before = [checksum(a) for a in inputs]
    try:
        result = function(*args, **kwargs)
    except (ValueError, TypeError) as error:
        message = str(error)
        assert any(re.search(rf"\b{p}\b", message) for p in PARAMETERS), message
        event(f"{name}: bad input refused ({type(error).__name__})")
        result = None
    else:
        event(f"{name}: computed")
    assert [checksum(a) for a in inputs] == before, "an input was modified"
    return result


def close(actual, expected, dtype, scale=None):
    """Compare at the precision of the result's dtype, relative to the data's scale."""
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    if scale is None:
        scale = np.abs(expected[finite]).max(initial=0.0)
    epsilon = 2e-12 if actual.dtype == np.float64 else 2e-6
    # subnormal results carry an absolute error of a few of the dtype's smallest steps
    tiny = max(1e-300, 4 * float(np.finfo(actual.dtype).smallest_subnormal))
    np.testing.assert_allclose(
        actual[finite], expected[finite], rtol=epsilon, atol=epsilon * scale + tiny
    )


# ----------------------------------------------------------------------- statistics


@SETTINGS
@given(
    data=arrays(),
    axis=st.integers(-5, 4),
    ddof=st.integers(-1, 4),
    statistic=st.sampled_from((*vw.statistics.STATISTICS, "mode")),
    skipna=st.booleans(),
)
def test_axis_statistic_property(data, axis, ddof, statistic, skipna):
    result = call_checked(
        vw.axis_statistic, "axis_statistic", data, statistic, axis=axis, ddof=ddof, skipna=skipna
    )
    if result is None:
        return
    values = data.astype(np.float64)
    skip = skipna and data.dtype.kind == "f"
    with np.errstate(all="ignore"):
        if statistic in ("min", "max"):
            func = {"min": np.nanmin if skip else np.min, "max": np.nanmax if skip else np.max}
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                expected = func[statistic](data, axis=axis)
            assert result.dtype == data.dtype
            np.testing.assert_array_equal(result, expected)
            return
        prefix = "nan" if skip else ""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if statistic == "cv":
                expected = getattr(np, prefix + "std")(values, axis=axis, ddof=ddof) / getattr(
                    np, prefix + "mean"
                )(values, axis=axis)
            elif statistic in ("var", "std"):
                expected = getattr(np, prefix + statistic)(values, axis=axis, ddof=ddof)
            else:
                expected = getattr(np, prefix + statistic)(values, axis=axis)
    scale = np.abs(values[np.isfinite(values)]).max(initial=1.0)
    if statistic in ("var", "std", "cv"):
        scale = scale**2 if statistic == "var" else scale
        if statistic == "cv":
            return  # a ratio of two rounded numbers: checked in test_statistics
    close(result, expected, data.dtype, scale * data.shape[axis] if statistic == "sum" else scale)


@SETTINGS
@given(data=arrays(extremes=True), axis=st.integers(-2, 1))
def test_variance_never_crashes_on_extreme_values(data, axis):
    result = call_checked(vw.voxel_variance, "voxel_variance", data, axis=axis)
    if result is None:
        return
    values = data.astype(np.float64)
    expected = np.var(values, axis=axis)
    # NaN exactly where NumPy (in float64) gives NaN, or where our float32 overflows
    if result.dtype == np.float64:
        np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))


@SETTINGS
@given(
    data=arrays(), axis=st.integers(-5, 4), ord=st.sampled_from([1, 2, 3, np.inf, 0, -1, "fro"])
)
def test_frame_norms_property(data, axis, ord):
    result = call_checked(vw.frame_norms, "frame_norms", data, axis=axis, ord=ord)
    if result is None:
        return
    moved = np.moveaxis(data.astype(np.float64), axis, 0)
    expected = [np.linalg.norm(frame.ravel(), ord) for frame in moved]
    close(result, expected, np.float64)


# ----------------------------------------------------------------------- density


@SETTINGS
@given(
    data=arrays(max_dims=3, max_side=8),
    window=st.one_of(st.integers(-1, 4), st.lists(st.integers(0, 4), min_size=0, max_size=4)),
    mode=st.sampled_from(["block", "sliding", "blocks"]),
    edge=st.sampled_from(["trim", "pad"]),
    threshold=st.sampled_from([0, 0.5, -1, 200, np.nan]),
)
def test_density_map_property(data, window, mode, edge, threshold):
    result = call_checked(
        vw.density_map, "density_map", data, window, mode=mode, edge=edge, threshold=threshold
    )
    if result is None:
        return
    on = data > threshold
    sizes = (window,) * data.ndim if np.ndim(window) == 0 else tuple(window)
    sizes = (1,) * (data.ndim - len(sizes)) + sizes
    if mode == "sliding":
        expected = sliding_window_view(on, sizes).mean(axis=tuple(range(data.ndim, 2 * data.ndim)))
    else:
        counts = [
            -(-n // w) if edge == "pad" else n // w for n, w in zip(data.shape, sizes, strict=True)
        ]
        expected = np.empty(counts)
        for index in np.ndindex(*counts):
            block = on[tuple(slice(i * w, (i + 1) * w) for i, w in zip(index, sizes, strict=True))]
            expected[index] = block.mean()
    assert result.dtype == np.float32
    close(result, expected, np.float32, 1.0)


# ----------------------------------------------------------------------- masks


@SETTINGS
@given(
    data=arrays(min_dims=2, max_dims=4),
    fill=st.sampled_from([0, -1, 7, np.nan, 2.5]),
    mask_kind=st.sampled_from(["good", "wrong shape", "nan"]),
    seed=st.integers(0, 99),
)
def test_mask_filter_property(data, fill, mask_kind, seed):
    rng = np.random.default_rng(seed)
    if mask_kind == "good":
        mask = rng.random(data.shape[:2]) < 0.5
    elif mask_kind == "wrong shape":
        mask = rng.random((*data.shape[:2], 2)) < 0.5
    else:
        mask = np.full(data.shape[:2], np.nan)
    result = call_checked(vw.mask_filter, "mask_filter", data, mask, fill)
    if result is None:
        return
    packed, counts = result
    selected = [frame[keep] for frame, keep in zip(data, mask, strict=True)]
    np.testing.assert_array_equal(counts, [len(s) for s in selected])
    assert packed.shape == (data.shape[0], max(counts), *data.shape[2:])
    for f, rows in enumerate(selected):
        np.testing.assert_array_equal(packed[f, : len(rows)], rows.astype(packed.dtype))
        tail = packed[f, len(rows) :]
        if np.isnan(fill):
            assert np.isnan(tail).all()
        else:
            assert (tail == fill).all()


@SETTINGS
@given(
    data=arrays(),
    fill=st.sampled_from([0, -1, np.nan, 1]),
    trailing=st.integers(0, 5),
    seed=st.integers(0, 99),
)
def test_apply_mask_property(data, fill, trailing, seed):
    mask = np.random.default_rng(seed).random(data.shape[len(data.shape) - trailing :]) < 0.5
    result = call_checked(vw.apply_mask, "apply_mask", data, mask, fill)
    if result is None:
        return
    expected = np.where(mask, data.astype(result.dtype), fill)
    np.testing.assert_array_equal(result, expected)


# ----------------------------------------------------------------------- derivatives


@SETTINGS
@given(
    data=arrays(max_dims=3, max_side=7),
    spacing=st.one_of(
        st.none(), st.floats(0.3, 3), st.lists(st.floats(-1, 3), min_size=1, max_size=3)
    ),
)
# found by hypothesis: a float32 subnormal (absolute precision 1.4e-45, not relative)
@example(data=np.array([7.7605e-41, 0.0, 0.0], dtype=np.float32), spacing=None)
def test_gradient_property(data, spacing):
    result = call_checked(vw.gradient_vectors, "gradient_vectors", data, spacing=spacing)
    if result is None:
        return
    values = data.astype(np.float64)
    spacing_ = (1.0,) * data.ndim if spacing is None else np.broadcast_to(spacing, data.ndim)
    with np.errstate(all="ignore"):
        components = np.gradient(values, *spacing_)
    expected = np.stack(components if data.ndim > 1 else [components], axis=-1)
    close(result, expected, result.dtype, np.abs(values).max() * 2 / min(spacing_))


@SETTINGS
@given(
    data=arrays(max_dims=4, max_side=7, dtypes=["uint8", "float32", "float64", "int32"]),
    sigma=st.sampled_from([None, 0, 0.7, 1.5, -1, (1.0, 2.0), "x"]),
    spacing=st.sampled_from([None, 2.0, (1.0, 0.5), (1.0, 2.0, 0.5), 0]),
)
def test_hessian_property(data, sigma, spacing):
    result = call_checked(vw.hessian_matrix, "hessian_matrix", data, sigma=sigma, spacing=spacing)
    if result is None:
        return
    ndim = data.ndim
    spacing_ = np.broadcast_to(1.0 if spacing is None else spacing, ndim).astype(float)
    values = data.astype(np.float64)
    assert result.shape == (*data.shape, ndim, ndim)
    expected = np.empty(result.shape)
    for i in range(ndim):
        for j in range(ndim):
            if sigma in (None, 0):
                first = np.gradient(values, spacing_[i], axis=i)
                expected[..., i, j] = np.gradient(first, spacing_[j], axis=j)
            else:
                order = [0] * ndim
                order[i] += 1
                order[j] += 1
                sigma_ = np.broadcast_to(sigma, ndim) / spacing_
                expected[..., i, j] = ndi.gaussian_filter(values, sigma_, order=order) / (
                    spacing_[i] * spacing_[j]
                )
    close(result, expected, result.dtype, np.abs(values).max(initial=1) / spacing_.min() ** 2 * 4)


@SETTINGS
@given(
    data=arrays(
        min_dims=1,
        max_dims=4,
        max_side=7,
        extremes=True,
        dtypes=["float32", "float64", "uint16", "int64"],
    ),
    order=st.sampled_from(["descending", "ascending", "abs", "size"]),
    sigma=st.sampled_from([None, 1.0, 2.0]),
)
# found by hypothesis: an exact eigenvalue (-1.79769314043e308) just beyond float64's range
@example(
    data=np.array([[0.0, 1.40359639e308, 1.40359639e308], [1.40359639e308] * 3]),
    order="descending",
    sigma=None,
)
def test_hessian_eigenvalues_property(data, order, sigma):
    result = call_checked(
        vw.hessian_eigenvalues, "hessian_eigenvalues", data, sigma=sigma, order=order
    )
    if result is None:
        return
    assert result.shape == (*data.shape, data.ndim)
    hessian = vw.hessian_matrix(data, sigma=sigma).astype(np.float64)
    infinite = np.isinf(result).any(axis=-1)
    if infinite.any():  # only where an exact eigenvalue lies beyond the result's range
        quarter = np.linalg.eigvalsh(hessian[infinite] / 4)  # cannot overflow
        limit = np.finfo(result.dtype).max / 4
        assert (np.abs(quarter).max(axis=-1) >= limit * (1 - 1e-6)).all()
    good = np.isfinite(hessian).all(axis=(-2, -1))
    assert np.isnan(result[~good]).all()
    good &= ~infinite
    if good.any():
        expected = np.linalg.eigvalsh(hessian[good])
        ours = result[good].astype(np.float64)
        key = np.abs if order == "abs" else (lambda x: x)
        expected = np.take_along_axis(expected, np.argsort(key(expected), axis=-1), axis=-1)
        if order == "descending":
            expected = expected[:, ::-1]
        scale = np.abs(expected).max(axis=-1, keepdims=True)
        tolerance = 1e-4 * scale + 1e-30
        if order == "abs":  # ties in |value| may be ordered either way: compare sorted
            ours, expected = np.sort(ours, axis=-1), np.sort(expected, axis=-1)
        assert (np.abs(ours - expected) <= tolerance).all()


@SETTINGS
@given(
    eigenvalues=arrays(
        min_dims=1, max_dims=3, extremes=True, dtypes=["float32", "float64", "int32"]
    ),
    alpha=st.sampled_from([0.5, 0, -1]),
    gamma=st.sampled_from([None, 2.0, 0]),
    ridges=st.sampled_from(["bright", "dark", "both"]),
)
def test_frangi_property(eigenvalues, alpha, gamma, ridges):
    result = call_checked(
        vw.frangi_vesselness,
        "frangi_vesselness",
        eigenvalues,
        alpha=alpha,
        gamma=gamma,
        ridges=ridges,
    )
    if result is None:
        return
    assert result.shape == eigenvalues.shape[:-1]
    finite = np.isfinite(result)
    assert ((result[finite] >= 0) & (result[finite] <= 1)).all()
    nan_voxels = np.isnan(eigenvalues.astype(np.float64)).any(axis=-1)
    assert np.isnan(result[nan_voxels]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_bool_and_every_dtype_work_for_every_function(dtype):
    data = (np.arange(5 * 6 * 7) % 3).reshape(5, 6, 7).astype(dtype)
    assert vw.voxel_variance(data, axis=0).shape == (6, 7)
    assert vw.frame_norms(data, axis=1).shape == (6,)
    assert vw.density_map(data, 2).shape == (2, 3, 3)
    assert vw.apply_mask(data, data[0] > 0).shape == data.shape
    assert vw.mask_filter(data, data[..., 0] > 0)[1].shape == (5,)
    assert vw.gradient_vectors(data).shape == (5, 6, 7, 3)
    assert vw.hessian_eigenvalues(data, sigma=1.0).shape == (5, 6, 7, 3)
