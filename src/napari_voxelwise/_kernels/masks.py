"""Masked copies: ``pack_selected`` (the selected rows of each frame) and ``masked_copy``."""

from __future__ import annotations

from numba import njit

from ._intrinsics import _JIT


@njit(**_JIT)
def pack_selected(points, mask, f0, f1, fill, packed):
    """Copy the selected rows of frames ``f0:f1`` to the front of `packed`, then fill.

    ``points`` (F, P, K), ``mask`` (F, P) bool, ``packed`` (F, M, K): one read
    of the selected rows and one write of the output, no temporaries.
    """
    n_points = points.shape[1]
    n_features = points.shape[2]
    slots = packed.shape[1]
    for f in range(f0, f1):
        selected = mask[f]
        rank = 0
        for p in range(n_points):
            if selected[p]:
                source = points[f, p]
                target = packed[f, rank]
                for k in range(n_features):
                    target[k] = source[k]
                rank += 1
        for r in range(rank, slots):
            target = packed[f, r]
            for k in range(n_features):
                target[k] = fill


@njit(**_JIT)
def masked_copy(image, inside, fill, r0, r1, c0, c1, out):
    """``out[r, c] = image[r, c] if inside[c] else fill`` for a box of rows and columns.

    ``image`` and ``out`` are (R, C): the leading axes merged into rows, the
    mask's axes into columns; ``inside`` (C,) is the flattened mask.
    """
    mask = inside[c0:c1]
    for r in range(r0, r1):
        source = image[r, c0:c1]
        target = out[r, c0:c1]
        for c in range(c1 - c0):
            target[c] = source[c] if mask[c] else fill
