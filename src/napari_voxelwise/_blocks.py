"""Views and block decompositions shared by the reductions."""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._plan import split_range


def _merged_stride(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int):
    """Stride of `shape` merged into one axis without a copy, or None if impossible."""
    dims = [(n, s) for n, s in zip(shape, strides, strict=True) if n != 1]
    if not dims:
        return itemsize
    for (_, outer_stride), (inner_len, inner_stride) in itertools.pairwise(dims):
        if outer_stride != inner_stride * inner_len:
            return None
    return dims[-1][1]


def frozen(array: np.ndarray) -> np.ndarray:
    """Read-only view of `array` (itself if already read-only), as every kernel input is passed.

    Numba compiles a kernel once per argument type, and the read-only flag is part of
    an array's type: passing inputs one way only spares a second compilation (about a
    second each) wherever a writable copy and a read-only view reach the same kernel.
    """
    if not array.flags.writeable:
        return array
    view = array.view()
    view.flags.writeable = False
    return view


def view_3d(array: np.ndarray, axis: int) -> np.ndarray | None:
    """Read-only view of `array` as (outer, n, inner) around `axis`, or None.

    ``outer`` merges the axes before `axis` and ``inner`` those after it. This
    works without copying for every C-contiguous array and for many strided
    views (a slice along one axis, for example); None means a copy would be
    needed.
    """
    shape, strides = array.shape, array.strides
    outer_stride = _merged_stride(shape[:axis], strides[:axis], array.itemsize)
    inner_stride = _merged_stride(shape[axis + 1 :], strides[axis + 1 :], array.itemsize)
    if outer_stride is None or inner_stride is None:
        return None
    shape3 = (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]))
    return as_strided(array, shape3, (outer_stride, strides[axis], inner_stride), writeable=False)


def view_4d(array: np.ndarray) -> np.ndarray | None:
    """Read-only view of `array` as (T, Z, Y, X): leading axes merged into T, missing ones 1.

    None when the leading axes cannot be merged without a copy.
    """
    if array.ndim <= 4:
        shape = (1,) * (4 - array.ndim) + array.shape
        strides = (0,) * (4 - array.ndim) + array.strides
    else:
        lead = array.ndim - 3
        stride = _merged_stride(array.shape[:lead], array.strides[:lead], array.itemsize)
        if stride is None:
            return None
        shape = (math.prod(array.shape[:lead]), *array.shape[lead:])
        strides = (stride, *array.strides[lead:])
    return as_strided(array, shape, strides, writeable=False)


def boxes(outer: int, inner: int, count: int) -> list[tuple[int, int, int, int]]:
    """Split an (outer, inner) index space into about `count` boxes (o0, o1, j0, j1)."""
    if outer >= count or inner == 1:
        return [(a, b, 0, inner) for a, b in split_range(outer, count)]
    per_row = math.ceil(count / outer)
    return [(o, o + 1, a, b) for o in range(outer) for a, b in split_range(inner, per_row)]


def nd_blocks(shape: tuple[int, ...], parts: int, whole_axis: int | None = None) -> list[tuple]:
    """Index tuples cutting `shape` into about `parts` blocks, splitting outer axes first.

    `whole_axis`, if given, is never split (the axis a reduction runs along).
    """
    blocks: list[list] = [[slice(None)] * len(shape)]
    for axis, length in enumerate(shape):
        if len(blocks) >= parts:
            break
        if axis == whole_axis:
            continue
        pieces = split_range(length, math.ceil(parts / len(blocks)))
        blocks = [
            [*block[:axis], slice(start, stop), *block[axis + 1 :]]
            for block in blocks
            for start, stop in pieces
        ]
    return [tuple(block) for block in blocks]
