"""The plugin's dock widgets: thin magicgui panels over the numeric core.

Each panel reads its widgets, builds a :class:`~napari_voxelwise._runner.Job`
from one of the core's ``*_plan`` functions and gives it to its runner; no
panel starts threads or adds layers itself.
"""
