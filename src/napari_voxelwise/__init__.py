"""napari-voxelwise: voxel-wise analysis of 3D volumes and 4D stacks.

The public API is pure NumPy in, NumPy out (no Qt, no napari), usable from
napari's console or any script::

    import napari_voxelwise as vw
    variance = vw.voxel_variance(stack, axis=0)

Every function also takes a Dask array and then returns a lazy Dask array
(nothing is read before ``.compute()``; ``mask_filter`` computes only the
mask, to count): stacks bigger than memory are computed chunk by chunk, and
the ``napari-voxelwise`` command (``python -m napari_voxelwise``) does it on
.npy, .tif and .zarr files. See :mod:`napari_voxelwise._dask`.

Importing this package loads only NumPy. Computations run on compiled kernels
(Numba) once these are compiled for the input's dtype and layout; until then they
run on a portable NumPy/SciPy path while a separate process compiles the kernels
(see :func:`warmup` and :func:`set_compile_mode`). Dask loads only for Dask input.
"""

__version__ = "0.1.0"

from ._dispatch import compile_mode, set_compile_mode, warmup
from .density import density_map
from .differential import (
    frangi_vesselness,
    gradient_magnitude,
    gradient_vectors,
    hessian_eigenvalues,
    hessian_matrix,
)
from .masking import apply_mask, mask_filter
from .ridges import vesselness
from .statistics import axis_statistic, frame_norms, voxel_variance

__all__ = [
    "__version__",
    "apply_mask",
    "axis_statistic",
    "compile_mode",
    "density_map",
    "frame_norms",
    "frangi_vesselness",
    "gradient_magnitude",
    "gradient_vectors",
    "hessian_eigenvalues",
    "hessian_matrix",
    "mask_filter",
    "set_compile_mode",
    "vesselness",
    "voxel_variance",
    "warmup",
]
