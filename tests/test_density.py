"""density_map against hand-checked cases, block loops and scipy convolutions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import convolve2d

from conftest import checksum
from napari_voxelwise import density_map
from napari_voxelwise.density import density_shape


def block_reference(binary, window, edge):
    """Fraction of True in every block, by an explicit loop over blocks."""
    if edge == "trim":
        counts = [n // w for n, w in zip(binary.shape, window, strict=True)]
    else:
        counts = [-(-n // w) for n, w in zip(binary.shape, window, strict=True)]
    result = np.empty(counts)
    for index in itertools.product(*(range(c) for c in counts)):
        block = binary[
            tuple(slice(i * w, (i + 1) * w) for i, w in zip(index, window, strict=True))
        ]
        result[index] = block.mean()
    return result


def test_seed_12x12_binary_to_4x4():
    """The user's question: 12x12 binary image, 3x3 blocks -> 4x4 nonzero fractions."""
    binary = np.random.default_rng(0).random((12, 12)) < 0.4
    density = density_map(binary, window=3)
    assert density.shape == (4, 4)
    assert density.dtype == np.float32
    np.testing.assert_allclose(density, binary.reshape(4, 3, 4, 3).mean(axis=(1, 3)), rtol=1e-7)


def test_hand_checked_blocks():
    image = np.array(
        [
            [1, 1, 0, 0],
            [1, 0, 0, 0],
            [0, 0, 5, 0],
            [0, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(density_map(image, 2), [[0.75, 0.0], [0.0, 0.25]])
    # threshold: only values above 1 count
    np.testing.assert_array_equal(density_map(image, 2, threshold=1), [[0, 0], [0, 0.25]])
    # pad keeps the partial last column; its fraction is over the 2 existing pixels
    np.testing.assert_allclose(
        density_map(image[:, :3], (2, 2), edge="pad"), [[0.75, 0.0], [0.0, 0.5]]
    )


@pytest.mark.parametrize("shape", [(12, 12), (13, 17), (5, 7, 9), (40,)])
@pytest.mark.parametrize("window", [1, 2, 3, 5])
@pytest.mark.parametrize("edge", ["trim", "pad"])
def test_block_mode_matches_block_loop(shape, window, edge, workers):
    binary = np.random.default_rng(1).random(shape) < 0.3
    sizes = (window,) * len(shape)
    result = density_map(binary, window, edge=edge, workers=workers)
    expected = block_reference(binary, sizes, edge)
    assert result.shape == expected.shape == density_shape(shape, window, edge=edge)
    np.testing.assert_allclose(result, expected, rtol=1e-7)


@pytest.mark.parametrize("window", [(3, 3), (1, 5), (4, 2), (12, 12), (7, 1)])
def test_sliding_mode_matches_convolve2d(window, workers):
    image = np.random.default_rng(2).random((12, 15))
    binary = image > 0.5
    result = density_map(binary, window, mode="sliding", workers=workers)
    expected = convolve2d(binary != 0, np.ones(window), "valid") / np.prod(window)
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=1e-7)


@pytest.mark.parametrize("window", [(2, 3, 4), (5, 5, 5), (1, 1, 1)])
def test_sliding_mode_3d_matches_window_means(window, workers):
    binary = np.random.default_rng(3).random((9, 10, 11)) < 0.5
    expected = sliding_window_view(binary, window).mean(axis=(-3, -2, -1))
    result = density_map(binary, window, mode="sliding", workers=workers)
    np.testing.assert_allclose(result, expected, rtol=1e-7)


def test_large_window_sliding_is_exact():
    """Running sums keep exact integer counts even for a big window."""
    binary = np.random.default_rng(4).random((300, 300)) < 0.5
    result = density_map(binary, 64, mode="sliding")
    expected = sliding_window_view(binary, (64, 64)).sum(axis=(-2, -1)) / 64**2
    np.testing.assert_allclose(result, expected, rtol=1e-7)


@pytest.mark.parametrize(
    ("shape", "window"),
    [((310, 12), (300, 2)), ((24, 23, 205), (20, 20, 200)), ((40, 300), (3, 256))],
)
def test_counts_widen_pass_by_pass(shape, window):
    """Each pass stores its counts in the smallest dtype that holds them: uint8, uint16 or
    uint32 as the window grows axis by axis (here past 255 and 65535)."""
    binary = np.random.default_rng(15).random(shape) < 0.6
    expected = sliding_window_view(binary, window).sum(axis=tuple(range(-len(shape), 0)))
    result = density_map(binary.astype(np.float32), window, mode="sliding", threshold=0.5)
    np.testing.assert_allclose(result, expected / np.prod(window), rtol=1e-7)
    padded = density_map(binary, window, mode="block", edge="pad", workers=2)
    np.testing.assert_allclose(padded, block_reference(binary, window, "pad"), rtol=1e-7)


@pytest.mark.parametrize(
    ("shape", "window"),
    [((40,), 3), ((3, 40, 50), (3, 3)), ((1, 40, 50), (3, 3)), ((9, 30), (4, 1))],
)
def test_sliding_last_pass_writes_fractions_or_counts(monkeypatch, shape, window):
    """The last pass along the last axis writes the fractions into the result when the
    task's part of it can be viewed as lines (a 1D image; tasks split along the first
    axis), else counts that are divided after (tasks split along a middle axis of 3
    frames); a window of 1 on the last axis ends on a pass over rows."""
    from napari_voxelwise import _plan

    monkeypatch.setattr(_plan, "TASK_BYTES", 500)  # tasks of a few rows
    binary = np.random.default_rng(16).random(shape) < 0.5
    sizes = (window,) * len(shape) if np.ndim(window) == 0 else (1,) * (len(shape) - 2) + window
    expected = sliding_window_view(binary, sizes).mean(axis=tuple(range(-len(shape), 0)))
    result = density_map(binary, window, mode="sliding", workers=2)
    np.testing.assert_allclose(result, expected, rtol=1e-7)


@pytest.mark.parametrize("mode", ["block", "sliding"])
def test_fewer_window_entries_keep_leading_axes(mode):
    """A (t, y, x) stack with window (3, 3) gives one 2D map per frame."""
    stack = np.random.default_rng(5).random((4, 12, 9)) < 0.5
    result = density_map(stack, (3, 3), mode=mode)
    for frame in range(4):
        np.testing.assert_array_equal(result[frame], density_map(stack[frame], 3, mode=mode))


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.uint16, np.int32, np.float32])
def test_threshold_applies_to_any_dtype(dtype):
    image = (np.random.default_rng(6).random((9, 9)) * 100).astype(dtype)
    before = checksum(image)
    result = density_map(image, 3, threshold=40)
    expected = block_reference(image > 40, (3, 3), "trim")
    np.testing.assert_allclose(result, expected, rtol=1e-7)
    assert checksum(image) == before


@pytest.mark.parametrize("threshold", [-1, 255, 1e9])
@pytest.mark.parametrize("edge", ["trim", "pad"])
def test_thresholds_outside_an_integer_range_count_all_or_none(threshold, edge):
    image = np.random.default_rng(13).integers(0, 256, (9, 11), dtype=np.uint8)
    expected = block_reference(image > threshold, (2, 4), edge)
    result = density_map(image, (2, 4), threshold=threshold, edge=edge)
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
@pytest.mark.parametrize("threshold", [0, 0.5, 1])
@pytest.mark.parametrize("edge", ["trim", "pad"])
def test_counts_of_nonzero_and_above_threshold_in_3d_blocks(dtype, threshold, edge):
    """Unsigned values with a threshold below 1 are counted as "nonzero" (the kernel's
    comparison-free branch), the others by comparison: values above 1 and negative
    values count as the reference's ``image > threshold`` says. Blocks of 3x5 rows (15:
    the kernel's passes of eight, four and one rows), a partial last block on every axis."""
    rng = np.random.default_rng(14)
    values = rng.integers(-300 if dtype in (np.int16, np.float32) else 0, 300, (7, 16, 23))
    if dtype == np.uint8:
        values %= 256
    image = np.where(rng.random(values.shape) < 0.5, 0, values).astype(dtype)
    expected = block_reference(image > threshold, (3, 5, 4), edge)
    result = density_map(image, (3, 5, 4), threshold=threshold, edge=edge, workers=2)
    np.testing.assert_allclose(result, expected, rtol=1e-7)


def test_nan_never_counts():
    image = np.array([[np.nan, 1.0], [0.0, np.nan]])
    assert density_map(image, 2)[0, 0] == 0.25
    assert density_map(image, 2, threshold=-1.0)[0, 0] == 0.5


def test_non_contiguous_input():
    image = np.random.default_rng(7).random((20, 30)).T[::2]
    binary = image > 0.5
    np.testing.assert_allclose(
        density_map(image, 3, threshold=0.5), block_reference(binary, (3, 3), "trim"), rtol=1e-7
    )


@pytest.mark.parametrize(
    ("shape", "window"),
    [
        ((1, 1), (1, 1)),
        ((1, 9), (1, 4)),
        ((9, 1), (4, 1)),
        ((17, 23), (4, 4)),
        ((17, 23), (3, 5)),
        ((7, 9, 11), (2, 3, 4)),
        ((1, 9, 11), (1, 4, 2)),
        ((3, 2, 5, 9, 10), (2, 3, 4)),  # leading axes with window 1 merged
        ((3, 4, 5, 9, 10), (2, 2, 3, 4)),  # a window on a 4th-to-last axis
        ((6, 70), (1, 8)),
    ],
)
@pytest.mark.parametrize("edge", ["trim", "pad"])
def test_block_mode_awkward_shapes_and_many_tasks(monkeypatch, shape, window, edge):
    """Tiny tasks (a row of blocks each) on three threads give the block loop's values."""
    from napari_voxelwise import _plan

    image = np.random.default_rng(8).random(shape)
    binary = image < 0.4
    sizes = (1,) * (len(shape) - len(window)) + window
    if edge == "trim" and any(w > n for w, n in zip(sizes, shape, strict=True)):
        pytest.skip("window larger than the image (refused in trim mode)")
    expected = block_reference(binary, sizes, edge)
    monkeypatch.setattr(_plan, "TASK_BYTES", 64)
    inputs = (
        (binary, 0),
        ((binary * 7).astype(np.uint8), 3),
        ((-image).astype(np.float32), np.float32(-0.4)),
        (-image, -0.4),
    )
    for data, threshold in inputs:
        result = density_map(data, window, edge=edge, threshold=threshold, workers=3)
        assert result.shape == expected.shape
        np.testing.assert_allclose(result, expected, rtol=1e-7)


@pytest.mark.parametrize("window", [(127, 2), (63, 4), (3, 10, 8)])
@pytest.mark.parametrize("edge", ["trim", "pad"])
def test_block_counts_summed_as_words_at_the_uint8_limit(window, edge):
    """Counts of blocks of up to 255 elements are uint8; groups of 2, 4 or 8 of them are
    summed as one word (the byte sum reaches 254, 252 and 240 here, without carries)."""
    shape = tuple(2 * w + 1 for w in window)  # a partial last block on every axis
    full = np.ones(shape, bool)
    expected = block_reference(full, window, edge)
    np.testing.assert_array_equal(density_map(full, window, edge=edge), expected)
    binary = np.random.default_rng(12).random(shape) < 0.7
    expected = block_reference(binary, window, edge)
    np.testing.assert_allclose(density_map(binary, window, edge=edge), expected, rtol=1e-7)


def test_block_mode_on_strided_views():
    """Views that are not C-contiguous (steps, transposes, a negative stride)."""
    base = np.random.default_rng(9).random((6, 14, 22, 18)) < 0.5
    for view in (
        base[::2, 1:, ::-1, ::3],
        base.transpose(2, 0, 3, 1),
        base[:, :, 3],
        base[1, ::2].T,
        np.random.default_rng(11).random((4, 3, 5, 6, 7))[:, ::2] < 0.5,  # unmergeable lead
    ):
        for window in ((2, 3), (3, 2, 2), 2):
            if np.ndim(window) == 0:
                sizes = (window,) * view.ndim
            elif len(window) <= view.ndim:
                sizes = (1,) * (view.ndim - len(window)) + window
            else:
                continue
            for edge in ("trim", "pad"):
                expected = block_reference(view, sizes, edge)
                np.testing.assert_allclose(
                    density_map(view, window, edge=edge), expected, rtol=1e-7
                )


def test_block_mode_big_counts_and_float16():
    """A window of 20x20 (counts past uint8) and float16 input (read as float32)."""
    image = np.random.default_rng(10).random((45, 61))
    np.testing.assert_allclose(
        density_map(image > 0.5, 20, edge="pad"),
        block_reference(image > 0.5, (20, 20), "pad"),
        rtol=1e-7,
    )
    half = image.astype(np.float16)
    np.testing.assert_allclose(
        density_map(half, 4, threshold=0.25),
        block_reference(half > 0.25, (4, 4), "trim"),
        rtol=1e-7,
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"window": 0}, ValueError, "window"),
        ({"window": -2}, ValueError, "window"),
        ({"window": 2.5}, TypeError, "window"),
        ({"window": (2, 2, 2)}, ValueError, "window"),
        ({"window": ()}, ValueError, "window"),
        ({"window": [[2, 2]]}, ValueError, "window"),
        ({"window": 7}, ValueError, "window"),
        ({"window": 7, "mode": "sliding"}, ValueError, "window"),
        ({"mode": "blocks"}, ValueError, "mode"),
        ({"edge": "wrap"}, ValueError, "edge"),
        ({"threshold": np.nan}, ValueError, "threshold"),
        ({"threshold": "0"}, TypeError, "threshold"),
    ],
)
def test_bad_input_is_refused_naming_the_parameter(kwargs, error, names):
    with pytest.raises(error, match=names):
        density_map(np.ones((6, 6)), **kwargs)


def test_window_larger_than_image_is_allowed_with_pad():
    result = density_map(np.ones((6, 6)), 7, edge="pad")
    np.testing.assert_array_equal(result, [[1.0]])


def test_empty_and_non_numeric_images_are_refused():
    with pytest.raises(ValueError, match="image"):
        density_map(np.ones((0, 4)))
    with pytest.raises(TypeError, match="image"):
        density_map(np.array([["a"]]))
