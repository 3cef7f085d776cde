"""Generated sample data (no downloads), contributed to napari's File > Open Sample.

Each sample has a non-unit scale on one axis, so that the panels' handling of
anisotropic voxels shows. Coordinates below are physical (scale applied), so
spheres and tubes look round in napari.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["binary_density", "noisy_stack", "tubes_and_blobs"]


def _grid(shape, scale):
    """Physical coordinates of every voxel, one broadcastable array per axis."""
    return np.meshgrid(
        *[np.arange(n, dtype=np.float32) * s for n, s in zip(shape, scale, strict=True)],
        indexing="ij",
        sparse=True,
    )


def noisy_stack(seed: int = 0):
    """A (t, z, y, x) time-lapse whose voxel variance has visible structure.

    Noise grows from left to right, a sphere is much noisier than its
    surroundings, and a cube blinks on and off over time. Voxels are twice as
    deep (z) as they are wide.
    """
    rng = np.random.default_rng(seed)
    shape, scale = (12, 24, 64, 64), (1.0, 2.0, 1.0, 1.0)
    _, z, y, x = _grid(shape, scale)
    centre = (z - 24) ** 2 + (y - 32) ** 2 + (x - 32) ** 2
    base = 100 + 50 * np.exp(-centre / (2 * 15.0**2))
    sphere = ((z - 20) ** 2 + (y - 20) ** 2 + (x - 44) ** 2) < 10.0**2
    noise_std = 2 + 10 * x / 64 + 25 * sphere
    cube = (abs(z - 28) < 6) & (abs(y - 46) < 6) & (abs(x - 18) < 6)
    blink = 40 * (np.arange(shape[0]) % 2).reshape(-1, 1, 1, 1) * cube
    data = base + blink + noise_std * rng.standard_normal(shape, dtype=np.float32)
    kwargs = {
        "name": "noisy stack",
        "scale": scale,
        "axis_labels": ("t", "z", "y", "x"),
        "colormap": "gray",
    }
    return [(data.astype(np.float32), kwargs, "image")]


def binary_density(seed: int = 0):
    """A binary 2D image made of regions of different density of "on" pixels.

    Top half: density rising from 0 (left) to 1 (right). Bottom half: three
    disks of density 0.15, 0.5 and 0.85 on a sparse background. Pixels are
    twice as tall as they are wide.
    """
    rng = np.random.default_rng(seed)
    shape, scale = (128, 256), (2.0, 1.0)
    y, x = _grid(shape, scale)
    density = np.where(y < 128, x / 256, 0.03)
    for centre_x, level in ((48, 0.15), (128, 0.5), (208, 0.85)):
        disk = (y - 192) ** 2 + (x - centre_x) ** 2 < 36.0**2
        density = np.where(disk, level, density)
    data = (rng.random(shape) < density).astype(np.uint8)
    kwargs = {"name": "binary density", "scale": scale, "axis_labels": ("y", "x")}
    return [(data, kwargs, "image")]


def _segment_distance(points, start, stop):
    """Distance of every point (tuple of broadcastable coordinates) to a segment."""
    start, stop = np.asarray(start, np.float32), np.asarray(stop, np.float32)
    direction = stop - start
    length2 = float(direction @ direction)
    offsets = [p - s for p, s in zip(points, start, strict=True)]
    along = sum(o * d for o, d in zip(offsets, direction, strict=True)) / length2
    along = np.clip(along, 0, 1)
    return np.sqrt(sum((o - along * d) ** 2 for o, d in zip(offsets, direction, strict=True)))


def tubes_and_blobs(seed: int = 0):
    """A 3D volume of bright tubes and blobs in noise, for Hessian eigenvalues.

    Straight tubes along each axis and a diagonal, a helix, and round blobs of
    two sizes. Voxels are 2.5 times deeper (z) than wide, so a Hessian scale
    given in voxels rather than physical units visibly distorts the result.
    """
    rng = np.random.default_rng(seed)
    shape, scale = (40, 128, 128), (2.5, 1.0, 1.0)
    points = _grid(shape, scale)
    volume = np.zeros(shape, np.float32)

    def add_tube(start, stop, radius):
        distance = _segment_distance(points, start, stop)
        np.maximum(volume, np.exp(-(distance**2) / (2 * radius**2)), out=volume)

    add_tube((50, 20, 10), (50, 20, 118), 2.0)  # along x
    add_tube((50, 10, 100), (50, 118, 100), 3.0)  # along y
    add_tube((5, 100, 30), (95, 100, 30), 2.5)  # along z
    add_tube((20, 30, 20), (80, 110, 110), 2.0)  # diagonal
    angles = np.linspace(0, 4 * np.pi, 60)
    helix = np.stack(
        [10 + 80 * angles / angles[-1], 64 + 22 * np.sin(angles), 64 + 22 * np.cos(angles)], axis=1
    )
    for start, stop in itertools.pairwise(helix):
        add_tube(start, stop, 1.5)
    z, y, x = points
    for centre, radius in (((30, 90, 60), 5.0), ((70, 40, 80), 8.0), ((50, 60, 20), 4.0)):
        distance2 = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
        np.maximum(volume, np.exp(-distance2 / (2 * radius**2)), out=volume)
    volume += 0.05 * rng.standard_normal(shape, dtype=np.float32)
    kwargs = {
        "name": "tubes and blobs",
        "scale": scale,
        "axis_labels": ("z", "y", "x"),
        "colormap": "magma",
    }
    return [(volume, kwargs, "image")]
