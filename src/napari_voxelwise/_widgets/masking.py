"""The "Mask filter" panel: keep the voxels of an image, or the points, inside a mask.

The mask is a Labels layer (any nonzero label, or one chosen label) or an
Image layer read as boolean (nonzero and not NaN = inside).

- **Image target**: :func:`napari_voxelwise.masking.apply_mask_plan` keeps the
  voxels inside and sets the others to 0 or NaN. A mask with fewer axes than
  the image applies to every index of the image's leading axes (a (z, y, x)
  mask on a (t, z, y, x) stack). Mask and image must share the voxel grid on
  the mask's axes: same trailing shape, scale and translate (nothing is
  resampled). "Crop to mask bounding box" keeps only the smallest box holding
  the whole mask (on the mask's axes; leading axes are kept whole) and shifts
  the result's translate so that it stays in place.
- **Points target**: a point is inside when the mask voxel nearest to it in
  world coordinates is inside; points beyond the mask's extent are outside.
  Points with more dimensions than the mask are matched on their trailing
  coordinates (a (t, z, y, x) point against a (z, y, x) mask uses z, y, x and
  ignores t); points with fewer dimensions than the mask are refused. The kept
  points keep their features, sizes, colours, symbols and visibility.
"""

from __future__ import annotations

import math

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, SpinBox

from .._plan import Plan
from .._runner import Job
from ..masking import apply_mask, apply_mask_plan, fill_dtype
from ._base import Panel, as_dask, is_lazy, layer_data, result_name
from ._pickers import (
    follow_layers,
    geometry,
    is_plain_image,
    layer_picker,
    require_axis_aligned,
)

#: the fill values offered for the voxels outside the mask
FILL_VALUES = {"0": 0, "NaN": math.nan}
#: per-point attributes of a Points target that its kept points keep
PER_POINT_KEYS = ("size", "face_color", "border_color", "border_width", "shown", "symbol")


def _is_target(layer) -> bool:
    from napari.layers import Points

    return isinstance(layer, Points) or is_plain_image(layer)


def _is_mask(layer) -> bool:
    from napari.layers import Labels

    return isinstance(layer, Labels) or is_plain_image(layer)


class MaskPanel(Panel):
    """Keep what lies inside a mask: the voxels of an image or the points of a Points layer.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers the panel reads and where the result goes.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        self.target = layer_picker(
            viewer,
            _is_target,
            "target",
            "Image or Points layer to filter: image voxels outside the mask are set to the "
            "fill value; points outside the mask are dropped.",
        )
        self.mask = layer_picker(
            viewer,
            _is_mask,
            "mask",
            "Labels layer, or Image layer read as boolean (nonzero and not NaN = inside). "
            "It may have fewer axes than an image target: it then applies to every frame.",
        )
        self.label_value = SpinBox(
            label="label (0 = any)",
            value=0,
            min=0,
            max=2**53,
            tooltip="Labels masks only: the label that counts as inside; 0 = every nonzero label.",
        )
        self.fill_value = ComboBox(
            label="fill value",
            choices=list(FILL_VALUES),
            value="0",
            tooltip="Image targets: value of the voxels outside the mask. "
            "NaN makes the result float.",
        )
        self.crop = CheckBox(
            text="crop to mask bounding box",
            value=False,
            tooltip="Image targets: keep only the smallest box around the mask (on the "
            "mask's axes); the result keeps its place in the world.",
        )
        super().__init__(
            viewer, [self.target, self.mask, self.label_value, self.fill_value, self.crop]
        )
        follow_layers(viewer, self)
        self.prepare_kernels(self.target, ("masking",))
        self.target.changed.connect(self._update_enabled)
        self.mask.changed.connect(self._update_enabled)
        self._update_enabled()

    def _update_enabled(self, *_) -> None:
        from napari.layers import Image, Labels

        self.label_value.enabled = self.mask.value is None or isinstance(self.mask.value, Labels)
        image_target = self.target.value is None or isinstance(self.target.value, Image)
        self.fill_value.enabled = image_target
        self.crop.enabled = image_target

    # ------------------------------------------------------------------ job

    def make_job(self) -> Job:
        """Read the widgets and the layers; build the masking job (ValueError if unsuitable)."""
        from napari.layers import Points

        target, mask_layer = self.target.value, self.mask.value
        target_data = layer_data(target, "target")
        inside = self._inside(mask_layer)
        require_axis_aligned(target, "target")
        require_axis_aligned(mask_layer, "mask")
        if isinstance(target, Points):
            return self._points_job(target, np.asarray(target_data), mask_layer, inside)
        return self._image_job(target, target_data, mask_layer, inside)

    def _inside(self, mask_layer) -> np.ndarray:
        """The mask layer as a boolean array: True inside (lazy for a Dask/zarr mask)."""
        from napari.layers import Labels

        data = layer_data(mask_layer, "mask")
        data = as_dask(data) if is_lazy(data) else data
        if isinstance(mask_layer, Labels):
            label = self._chosen_label(mask_layer)
            return data != 0 if label == 0 else data == label
        inside = data != 0
        if data.dtype.kind == "f":
            inside &= ~np.isnan(data)
        return inside

    def _chosen_label(self, mask_layer) -> int:
        """The label that counts as inside a Labels mask (0: any nonzero); 0 for an Image mask."""
        from napari.layers import Labels

        return int(self.label_value.value) if isinstance(mask_layer, Labels) else 0

    def _image_job(self, target, image, mask_layer, inside: np.ndarray) -> Job:
        mask_ndim = inside.ndim
        if mask_ndim > image.ndim or image.shape[image.ndim - mask_ndim :] != inside.shape:
            raise ValueError(
                f"mask: layer '{mask_layer.name}' has shape {inside.shape}, which must equal "
                f"the trailing axes of '{target.name}' (shape {tuple(image.shape)})"
            )
        shared = slice(image.ndim - mask_ndim, None)
        image_grid = (np.asarray(target.scale)[shared], np.asarray(target.translate)[shared])
        mask_grid = (np.asarray(mask_layer.scale), np.asarray(mask_layer.translate))
        if not all(np.allclose(a, b) for a, b in zip(image_grid, mask_grid, strict=True)):
            raise ValueError(
                f"mask: layer '{mask_layer.name}' (scale {tuple(mask_grid[0])}, translate "
                f"{tuple(mask_grid[1])}) is not on the voxel grid of '{target.name}' on the "
                f"shared axes (scale {tuple(image_grid[0])}, translate {tuple(image_grid[1])}); "
                "resample one onto the other's grid first"
            )
        fill_name = self.fill_value.value
        fill = FILL_VALUES[fill_name]
        crop = bool(self.crop.value)
        name = result_name(
            target,
            "masked",
            mask=mask_layer.name,
            label=self._chosen_label(mask_layer) or None,
            fill=fill_name if fill_name != "0" else None,
            crop=crop,
        )
        kwargs = {"name": name, **geometry(target)}
        if crop and is_lazy(inside):
            raise ValueError(
                f"crop: the mask '{mask_layer.name}' is a Dask/zarr layer, and finding its "
                "bounding box would read all of it now; uncheck crop (or load the mask into "
                "memory)"
            )
        if crop:
            box = bounding_box(inside)
            if box is None:
                raise ValueError(
                    f"mask: layer '{mask_layer.name}' has no voxel inside, so there is no "
                    "bounding box to crop to"
                )
            inside = inside[box]
            image = image[(slice(None),) * (image.ndim - mask_ndim) + box]
            start = np.zeros(image.ndim)
            start[shared] = [axis.start for axis in box]
            kwargs["translate"] = kwargs["translate"] + start * kwargs["scale"]
        title = f"Mask '{target.name}' by '{mask_layer.name}'"
        result_dtype = fill_dtype(image.dtype, fill)
        memory, store = math.prod(image.shape) * result_dtype.itemsize + inside.nbytes, None
        if is_lazy(image) or is_lazy(inside):  # Dask/zarr: chunk by chunk
            plan, memory, store = self.lazy_plan(
                apply_mask(as_dask(image, "mask"), inside, fill), title
            )
        else:
            plan = apply_mask_plan(image, inside, fill)
        kwargs["colormap"] = target.colormap
        return Job(
            title=title,
            plan=plan,
            to_layers=lambda masked: [(masked, kwargs, "image")],
            sources=[target, mask_layer],
            store=store,
            memory_bytes=memory,
            operation="apply_mask",
            parameters={
                "label": int(self.label_value.value),
                "fill_value": fill_name,
                "crop": crop,
            },
        )

    def _points_job(self, target, points: np.ndarray, mask_layer, inside: np.ndarray) -> Job:
        if points.ndim != 2 or points.shape[1] < inside.ndim:
            raise ValueError(
                f"mask: layer '{mask_layer.name}' has {inside.ndim} dimensions, more than the "
                f"{points.shape[-1]} coordinates of the points of '{target.name}'"
            )
        count = inside.ndim
        world = (
            points[:, -count:] * np.asarray(target.scale)[-count:]
            + np.asarray(target.translate)[-count:]
        )
        mask_scale = np.asarray(mask_layer.scale, dtype=float)
        mask_translate = np.asarray(mask_layer.translate, dtype=float)
        # copies taken now: later edits of the layer do not reach the result
        source = {
            "data": points.copy(),
            "features": target.features.copy(),
            "size": np.array(target.size),
            "face_color": np.array(target.face_color),
            "border_color": np.array(target.border_color),
            "border_width": np.array(target.border_width),
            "shown": np.array(target.shown),
            "symbol": np.array([symbol.value for symbol in np.atleast_1d(target.symbol)]),
        }

        fixed = {
            "name": result_name(
                target,
                "inside",
                mask=mask_layer.name,
                label=self._chosen_label(mask_layer) or None,
            ),
            "border_width_is_relative": target.border_width_is_relative,
            **geometry(target),
        }

        def run():
            mask = np.asarray(inside)  # read here, in the worker, for a Dask/zarr mask
            yield
            keep = points_inside(world, mask, mask_scale, mask_translate)
            yield
            return keep

        def to_layers(keep: np.ndarray):
            kwargs = {
                **fixed,
                "features": source["features"].iloc[keep].reset_index(drop=True),
            }
            if keep.size:  # (napari reads empty colour arrays as illegal colours)
                for key in PER_POINT_KEYS:
                    kwargs[key] = source[key][keep]
            return [(source["data"][keep], kwargs, "points")]

        return Job(
            title=f"Points of '{target.name}' inside '{mask_layer.name}'",
            plan=Plan(2, run, "points inside mask"),
            to_layers=to_layers,
            sources=[target, mask_layer],
            memory_bytes=points.nbytes * 3,
            operation="points_inside_mask",
            parameters={"label": int(self.label_value.value)},
        )


def bounding_box(inside: np.ndarray) -> tuple[slice, ...] | None:
    """Smallest box holding every True voxel of `inside`, as slices; None if it has none."""
    box = []
    for axis in range(inside.ndim):
        others = tuple(a for a in range(inside.ndim) if a != axis)
        (hits,) = np.nonzero(inside.any(axis=others))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def points_inside(
    world: np.ndarray, inside: np.ndarray, mask_scale: np.ndarray, mask_translate: np.ndarray
) -> np.ndarray:
    """Indices of the points whose nearest mask voxel is inside.

    Parameters
    ----------
    world : ndarray, shape (N, inside.ndim)
        World coordinates of the points on the mask's axes.
    inside : ndarray of bool
        The mask.
    mask_scale, mask_translate : ndarray, shape (inside.ndim,)
        The mask layer's geometry: ``world = index * scale + translate``.

    Returns
    -------
    keep : ndarray of intp
        Indices of the points inside, ascending. Points beyond the mask's
        extent (or with NaN coordinates) are outside.
    """
    with np.errstate(invalid="ignore"):
        index = np.round((world - mask_translate) / mask_scale)
        valid = np.all((index >= 0) & (index < np.asarray(inside.shape)), axis=1)
    candidates = np.nonzero(valid)[0]
    voxel = tuple(index[candidates].astype(np.intp).T)
    return candidates[inside[voxel]]
