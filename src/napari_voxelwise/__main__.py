"""``python -m napari_voxelwise``: the batch command (see :mod:`napari_voxelwise._cli`)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
