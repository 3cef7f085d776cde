"""Where a result lies in world coordinates: the scale and translate of reduced and block results.

One place for the placement rules that the panels (result layers over their source)
and the batch command (OME-Zarr outputs over their input) share. NumPy only.

A voxel at index ``i`` lies at ``i * scale + translate`` (its centre), napari's and
OME-Zarr's convention alike.
"""

from __future__ import annotations

import numpy as np


def block_placement(scale, translate, window, mode: str = "block") -> tuple[np.ndarray, ...]:
    """``(scale, translate)`` of a map whose element ``i`` summarises a window of voxels.

    Element ``i`` sits at the centre (the mean world position) of the voxels it
    summarises: in block mode the voxels ``i*w .. i*w + w-1``, so the scale
    grows by ``w``; in sliding mode the voxels ``i .. i + w-1``, so the scale
    stays. In both, the first element's centre moves by ``(w - 1) / 2`` source
    voxels. Axes with window 1 keep their geometry. Density maps and the levels
    of a 2x-downsampled pyramid (means of 2x2x2 blocks) are placed so.

    Parameters
    ----------
    scale, translate : array_like, shape (ndim,)
        The source's voxel size and the position of its first voxel.
    window : array_like of int, shape (ndim,)
        Window size per axis.
    mode : {"block", "sliding"}

    Returns
    -------
    scale, translate : ndarray of float, shape (ndim,)

    Examples
    --------
    >>> block_placement([2.0, 0.5], [0.0, 10.0], [2, 4])
    (array([4., 2.]), array([ 1.  , 10.75]))
    """
    scale = np.asarray(scale, dtype=float)
    translate = np.asarray(translate, dtype=float)
    sizes = np.asarray(window, dtype=float)
    return (scale * sizes if mode == "block" else scale.copy()), translate + (
        sizes - 1
    ) / 2 * scale


def reduced_placement(scale, translate, axis: int, length: int) -> tuple[np.ndarray, ...]:
    """``(scale, translate)`` of the result of reducing `axis` (of `length` voxels).

    With 3 or more axes the reduced axis is dropped. A 2D source gives a 1D
    profile, which is kept as an image one voxel thick along `axis`, stretched
    over the source's whole extent there: scale ``length * s``, its one voxel
    centred on the ``length`` source voxels.

    Examples
    --------
    >>> reduced_placement([1.0, 2.0, 0.5], [5.0, 0.0, 0.0], axis=0, length=10)
    (array([2. , 0.5]), array([0., 0.]))
    >>> reduced_placement([2.0, 0.5], [0.0, 0.0], axis=1, length=8)
    (array([2., 4.]), array([0.  , 1.75]))
    """
    scale = np.array(scale, dtype=float)
    translate = np.array(translate, dtype=float)
    if scale.size == 2:
        translate[axis] += (length - 1) / 2 * scale[axis]
        scale[axis] *= length
        return scale, translate
    return np.delete(scale, axis), np.delete(translate, axis)
