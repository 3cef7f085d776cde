"""Microscope formats of the batch command: what an input's axes and voxel sizes are, OME-Zarr out.

- Reading: OME-Zarr (OME-NGFF 0.4 and 0.5 multiscales, one level), OME-TIFF and
  ImageJ TIFF voxel sizes (through tifffile), plain zarr and ``.npy`` as before
  (voxel size 1), and any other format that an installed bioio reader plugin
  opens. Each input comes with its :class:`Grid`: axis names, types and units,
  voxel size and origin, and where these came from.
- Writing: an OME-Zarr (NGFF 0.5) image whose metadata place the result over
  its input (the panels' placement rules, :mod:`._geometry`), with a 2x
  pyramid built level by level from the written level, and the provenance
  record that the panels attach to their layers.

The NGFF metadata are built and validated with yaozarrs (its pydantic models
of NGFF 0.4 and 0.5); the arrays are created empty by yaozarrs and filled
chunk by chunk by Dask, so nothing is held in memory. Imported by the batch
command only when it reads or writes; nothing here imports Qt or napari.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

#: the metadata key of the provenance record, in layers (see _runner) and OME-Zarr groups
METADATA_KEY = "napari_voxelwise"
#: pyramid levels halve the spatial axes that are at least this long, until none is
PYRAMID_MIN_SIZE = 256
#: the batch operations, by the names the panels record (metadata "operation")
OPERATION_NAMES = {
    "variance": "axis_statistic",
    "statistic": "axis_statistic",
    "norms": "frame_norms",
    "density": "density_map",
    "mask": "apply_mask",
    "gradient": "gradient",
    "hessian-eigenvalues": "hessian_eigenvalues",
    "vesselness": "vesselness",
}
#: unit spellings of TIFF and bioio metadata -> the names NGFF uses
_UNITS = {
    "µm": "micrometer",
    "\\u00B5m": "micrometer",
    "um": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "nm": "nanometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "Å": "angstrom",
    "s": "second",
    "sec": "second",
    "ms": "millisecond",
    "min": "minute",
    "h": "hour",
}
#: bioio reader plugins for vendor formats, named in messages
VENDOR_PLUGINS = {
    ".czi": "bioio-czi",
    ".nd2": "bioio-nd2",
    ".lif": "bioio-lif",
    ".dv": "bioio-dv",
    ".sldy": "bioio-sldy",
    ".vsi": "bioio-bioformats",
    ".ims": "bioio-bioformats",
    ".oib": "bioio-bioformats",
    ".oir": "bioio-bioformats",
    ".lsm": "bioio-tifffile",
}


class FormatError(ValueError):
    """A problem with an input or output file, reported to the user as one line (exit code 2)."""


@dataclass(frozen=True)
class Grid:
    """Axes and voxel grid of an array: voxel ``i`` lies at ``i * scale + translate``.

    Attributes
    ----------
    names, types, units : tuple of str (types and units may hold None)
        Per axis: its name ("z"), its NGFF type ("space", "time", "channel" or
        None) and unit ("micrometer" or None).
    scale, translate : tuple of float
        Voxel size and the position of the first voxel, per axis.
    origin : str
        Where the voxel sizes came from, for the printed line.
    """

    names: tuple
    types: tuple
    units: tuple
    scale: tuple
    translate: tuple
    origin: str = "none"

    @property
    def ndim(self) -> int:
        return len(self.names)

    @property
    def from_file(self) -> bool:
        return self.origin != "none"

    def without(self, axis: int) -> Grid:
        """This grid without `axis`."""
        keep = [index for index in range(self.ndim) if index != axis]
        return self._take(keep)

    def _take(self, indices) -> Grid:
        return replace(
            self,
            **{
                key: tuple(getattr(self, key)[index] for index in indices)
                for key in ("names", "types", "units", "scale", "translate")
            },
        )

    def placed(self, scale, translate) -> Grid:
        return replace(
            self,
            scale=tuple(float(value) for value in scale),
            translate=tuple(float(value) for value in translate),
        )

    def describe(self) -> str:
        """``z=2 micrometer, y=0.5 micrometer, x=0.5 micrometer``: voxel size per axis."""
        return ", ".join(
            f"{name}={_number(step)}" + (f" {unit}" if unit else "")
            for name, step, unit in zip(self.names, self.scale, self.units, strict=True)
        )


def default_grid(ndim: int) -> Grid:
    """The grid of an array without metadata: voxel size 1, origin 0, z/y/x (t, ...) axes."""
    spatial = min(ndim, 3)
    leading = ndim - spatial
    names = [f"dim_{axis}" for axis in range(leading)]
    types: list = [None] * leading
    if leading:
        names[-1], types[-1] = "t", "time"
    names += ["z", "y", "x"][3 - spatial :]
    types += ["space"] * spatial
    return Grid(tuple(names), tuple(types), (None,) * ndim, (1.0,) * ndim, (0.0,) * ndim)


def _number(value: float) -> str:
    return f"{float(value):g}"


def _unit(text) -> str | None:
    if text is None:
        return None
    text = str(text).strip()
    if not text or text.lower() in ("pixel", "pixels", "none"):
        return None
    return _UNITS.get(text, _UNITS.get(text.lower(), text))


# --------------------------------------------------------------------------- reading


def is_ome_zarr_name(path: Path) -> bool:
    return path.name.lower().rstrip("/").endswith(".ome.zarr")


def read_image(path: Path, chunks, component, level, channel, read_array):
    """`path` as a lazy Dask array and its :class:`Grid`.

    `chunks` is as for :func:`._cli.read_array`, for the array without its
    channel axis. `level` picks an OME-Zarr resolution level (default 0);
    `channel` one channel of an input with a channel axis (required when it
    has more than one). `read_array` reads plain ``.npy``, TIFF and zarr.
    """
    if not path.exists():
        raise FormatError(f"input {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        found = _ngff_image(path, component, level)
        if found is not None:
            return _select(*found, chunks, channel, path, _from_zarr)
    if level is not None:
        raise FormatError(f"--level: input {path} is not an OME-Zarr image (it has one level)")
    if suffix in (".tif", ".tiff"):
        grid, channel_axis, channel_names = _tiff_grid(path)
        if channel_axis is None:
            _no_channel_axis(channel, path)
            return read_array(path, chunks), grid

        def reader(source, full_chunks):
            return read_array(source, full_chunks)

        shape = _tiff_shape(path)
        names = channel_names
        return _select(path, shape, grid, channel_axis, names, chunks, channel, path, reader)
    if suffix in (".npy", ".zarr"):
        _no_channel_axis(channel, path)
        data = read_array(path, chunks, component)
        return data, default_grid(data.ndim)
    return _bioio_image(path, chunks, channel)


def _no_channel_axis(channel, path: Path) -> None:
    if channel is not None:
        raise FormatError(f"--channel: input {path} has no channel axis")


def _select(source, shape, grid, channel_axis, channel_names, chunks, channel, path, reader):
    """Read `source` (of `shape`, with `grid`) with `chunks`, keeping one channel if any."""
    if channel_axis is None:
        _no_channel_axis(channel, path)
        return reader(source, chunks), grid
    count = shape[channel_axis]
    if channel is None and count > 1:
        listed = ", ".join(
            f"{index}: {name}" if name else str(index)
            for index, name in enumerate(channel_names or [None] * count)
        )
        raise FormatError(
            f"input {path} has {count} channels ({listed}) on axis "
            f"'{grid.names[channel_axis]}'; choose one with --channel N"
        )
    channel = 0 if channel is None else channel
    if not 0 <= channel < count:
        raise FormatError(
            f"--channel {channel}: input {path} has {count} channels (0 to {count - 1})"
        )

    def full_chunks(full_shape):
        inner = chunks(tuple(np.delete(full_shape, channel_axis))) if callable(chunks) else chunks
        if inner == "auto":
            return "auto"
        return (*inner[:channel_axis], 1, *inner[channel_axis:])

    if chunks != "auto" and not callable(chunks) and len(chunks) != len(shape) - 1:
        raise FormatError(
            f"--chunks has {len(chunks)} entries but {path} has {len(shape) - 1} axes "
            f"besides its channel axis"
        )
    data = reader(source, full_chunks(shape))
    index = (slice(None),) * channel_axis + (channel,)
    return data[index], grid.without(channel_axis)


def _from_zarr(array, chunks):
    import dask.array as da

    if callable(chunks):
        chunks = chunks(array.shape)
    return da.from_zarr(array, chunks=chunks)


def _ngff_image(path: Path, component, level):
    """(zarr array, shape, grid, channel axis, channel names) of an OME-Zarr image, or None
    for a plain zarr store (no OME metadata)."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r", path=component or "")
    except Exception:
        return None  # read_array reports what is wrong
    if hasattr(node, "shape"):
        return None  # an array: plain zarr
    attributes = node.attrs.asdict()
    ome = attributes.get("ome", attributes)
    if "multiscales" not in ome:
        ome_like = (
            "ome" in attributes
            or is_ome_zarr_name(path)
            or any(key in ome for key in ("bioformats2raw.layout", "plate", "well", "labels"))
        )
        if not ome_like:
            return None
        inside = sorted(name for name, _ in node.groups())
        hint = f"; its images are in {', '.join(inside[:5])} (choose one with --component)"
        raise FormatError(
            f"input {path}{'/' + component if component else ''} is an OME-Zarr group with no "
            f"multiscales image" + (hint if inside else "")
        )
    image = _validated(ome, path)
    multiscale = image.multiscales[0]
    datasets = multiscale.datasets
    return _level_of(node, path, multiscale, datasets, image, level or 0)


def _validated(ome: dict, path: Path):
    try:
        import yaozarrs
    except ImportError as exc:
        raise FormatError(
            f"reading OME-Zarr needs yaozarrs: pip install 'napari-voxelwise[batch]' ({exc})"
        ) from exc
    try:
        return yaozarrs.validate_ome_object(ome)
    except Exception as exc:
        text = " ".join(str(exc).split())
        raise FormatError(f"input {path}: invalid OME-Zarr metadata: {text[:300]}") from exc


def _level_of(node, path, multiscale, datasets, image, level: int):
    if not 0 <= level < len(datasets):
        raise FormatError(
            f"--level {level}: input {path} has {len(datasets)} level"
            f"{'s' if len(datasets) > 1 else ''} (0 to {len(datasets) - 1})"
        )
    array = node[datasets[level].path]
    ndim = len(array.shape)
    scale, translate = np.ones(ndim), np.zeros(ndim)
    # dataset transformations first, then the multiscale's own (NGFF's order)
    for transforms in (
        datasets[level].coordinateTransformations,
        multiscale.coordinateTransformations,
    ):
        for transform in transforms or ():
            if transform.type == "scale":
                factor = np.asarray(transform.scale, dtype=float)
                scale, translate = scale * factor, translate * factor
            elif transform.type == "translation":
                translate = translate + np.asarray(transform.translation, dtype=float)
    axes = multiscale.axes
    grid = Grid(
        names=tuple(axis.name for axis in axes),
        types=tuple(getattr(axis, "type", None) for axis in axes),
        units=tuple(_unit(getattr(axis, "unit", None)) for axis in axes),
        scale=tuple(float(value) for value in scale),
        translate=tuple(float(value) for value in translate),
        origin=f"OME-Zarr {getattr(image, 'version', None) or '0.4'} metadata, level {level}",
    )
    channel_axis = next(
        (index for index, kind in enumerate(grid.types) if kind == "channel"), None
    )
    names = None
    omero = getattr(image, "omero", None)
    if omero is not None and channel_axis is not None:
        names = [getattr(channel, "label", None) for channel in omero.channels]
        if len(names) != array.shape[channel_axis]:
            names = None
    return array, array.shape, grid, channel_axis, names


def _tiff_shape(path: Path) -> tuple:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tuple(tif.series[0].shape)


def _tiff_grid(path: Path):
    """(grid, channel axis, channel names) from an OME-TIFF's or ImageJ TIFF's metadata."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes.upper()
        sizes: dict = {}
        units: dict = {}
        channel_names = None
        origin = "none"
        if tif.is_ome and tif.ome_metadata:
            pixels = _ome_pixels(tif.ome_metadata)
            for axis in "XYZ":
                if f"PhysicalSize{axis}" in pixels:
                    sizes[axis] = float(pixels[f"PhysicalSize{axis}"])
                    units[axis] = _unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
            if "TimeIncrement" in pixels:
                sizes["T"] = float(pixels["TimeIncrement"])
                units["T"] = _unit(pixels.get("TimeIncrementUnit", "s"))
            channels = pixels.get("Channel")
            channels = channels if isinstance(channels, list) else [channels] if channels else []
            channel_names = [channel.get("Name") for channel in channels] or None
            origin = "OME-TIFF metadata" if sizes else origin
        elif tif.is_imagej:
            info = tif.imagej_metadata or {}
            unit = _unit(info.get("unit"))
            page = tif.pages[0]
            for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
                resolution = page.tags.get(tag)
                if resolution is not None:
                    numerator, denominator = resolution.value
                    if numerator and (numerator / denominator) != 1:
                        sizes[axis], units[axis] = denominator / numerator, unit
            if "spacing" in info:
                sizes["Z"], units["Z"] = float(info["spacing"]), unit
            if "finterval" in info:
                sizes["T"], units["T"] = float(info["finterval"]), _unit(info.get("tunit", "s"))
            origin = "ImageJ TIFF metadata" if sizes else origin
    names, types = [], []
    for letter in axes:
        if letter in "XYZ":
            names.append(letter.lower())
            types.append("space")
        elif letter == "T":
            names.append("t")
            types.append("time")
        elif letter in "CS":
            names.append("c")
            types.append("channel")
        else:  # no name in the file (tifffile's Q): as for an array without metadata
            default = default_grid(len(axes))
            names.append(default.names[len(names)])
            types.append(default.types[len(types)])
    if len(set(names)) != len(names):  # e.g. two "c" (C and S): make them unique
        names = [f"{name}{index}" for index, name in enumerate(names)]
    grid = Grid(
        names=tuple(names),
        types=tuple(types),
        units=tuple(units.get(letter) for letter in axes),
        scale=tuple(sizes.get(letter, 1.0) for letter in axes),
        translate=(0.0,) * len(axes),
        origin=origin,
    )
    channel_axis = next((i for i, kind in enumerate(types) if kind == "channel"), None)
    return grid, channel_axis, channel_names


def _ome_pixels(xml: str) -> dict:
    import tifffile

    try:
        ome = tifffile.xml2dict(xml)["OME"]
    except Exception:
        return {}
    image = ome.get("Image", {})
    image = image[0] if isinstance(image, list) else image
    return image.get("Pixels", {}) or {}


def _bioio_image(path: Path, chunks, channel):
    """Any other format, through bioio and its installed reader plugins."""
    suffix = path.suffix.lower() or "(no extension)"
    plugin = VENDOR_PLUGINS.get(path.suffix.lower())
    wanted = "pip install 'napari-voxelwise[formats]'" + (f" {plugin}" if plugin else "")
    try:
        from bioio import BioImage
    except ImportError:
        raise FormatError(
            f"input {path}: unknown format {suffix}; use .npy, .tif/.tiff, .zarr, or read it "
            f"through bioio: {wanted}"
        ) from None
    try:
        image = BioImage(path)
        data = image.dask_data
        order = image.dims.order
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise FormatError(
            f"input {path}: unknown format {suffix}: no installed bioio reader opens it "
            f"({text}); {wanted}"
        ) from exc
    sizes = image.physical_pixel_sizes
    names, types, units, scale = [], [], [], []
    keep = []
    for index, letter in enumerate(order):
        length = data.shape[index]
        if length == 1 and letter not in "CYX":
            continue  # bioio's singleton T and Z (C: the channel rule below)
        keep.append(index)
        step = getattr(sizes, letter, None) if letter in "ZYX" else None
        names.append(letter.lower())
        types.append(
            {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}.get(letter)
        )
        units.append("micrometer" if step else None)
        scale.append(float(step) if step else 1.0)
    data = data[tuple(slice(None) if i in keep else 0 for i in range(data.ndim))]
    grid = Grid(
        tuple(names),
        tuple(types),
        tuple(units),
        tuple(scale),
        (0.0,) * len(names),
        origin=f"bioio ({type(image.reader).__module__.split('.')[0]})"
        if any(step != 1.0 for step in scale)
        else "none",
    )
    channel_axis = names.index("c") if "c" in names else None
    names_of_channels = list(getattr(image, "channel_names", []) or []) or None

    def reader(source, full_chunks):
        return source if full_chunks == "auto" else source.rechunk(full_chunks)

    return _select(
        data, data.shape, grid, channel_axis, names_of_channels, chunks, channel, path, reader
    )


# --------------------------------------------------------------------------- spacing


def with_spacing(grid: Grid, spacing) -> Grid:
    """`grid` with the voxel sizes of ``--spacing``: one number for every spatial axis, or
    one per trailing axis."""
    if spacing is None:
        return grid
    scale = list(grid.scale)
    if np.ndim(spacing) == 0:
        axes = [i for i, kind in enumerate(grid.types) if kind == "space"] or range(grid.ndim)
        for axis in axes:
            scale[axis] = float(spacing)
    else:
        values = [float(value) for value in spacing]
        if len(values) > grid.ndim:
            raise FormatError(
                f"--spacing has {len(values)} entries but the input has {grid.ndim} axes"
            )
        scale[grid.ndim - len(values) :] = values
    if any(not (step > 0 and math.isfinite(step)) for step in scale):
        raise FormatError(f"--spacing: voxel sizes must be positive, got {spacing}")
    return replace(grid, scale=tuple(scale), origin="--spacing")


def spacing_line(path: Path, grid: Grid, file_grid: Grid) -> str:
    """The one line saying which axes and voxel sizes the command uses, and whence."""
    where = {
        "none": "the file gives no voxel size: 1 per voxel; set it with --spacing",
        "--spacing": "from --spacing"
        + (f", over the file's {file_grid.describe()}" if file_grid.from_file else ""),
    }.get(grid.origin, f"from the {grid.origin}")
    line = f"{path.name}: axes {', '.join(grid.names)}; voxel size {grid.describe()} ({where})"
    if any(grid.translate):
        origin = ", ".join(
            f"{name}={_number(value)}"
            for name, value in zip(grid.names, grid.translate, strict=True)
        )
        line += f"; origin {origin}"
    return line


# --------------------------------------------------------------------------- the result


def result_grid(args, grid: Grid, shape: tuple, result_ndim: int):
    """(grid of the result, how to lay the result out for NGFF) for the operation in `args`.

    The layout is ``(expand, move)``: an axis to insert (a reduced 2D image's
    one-voxel axis, as the Voxel statistics panel shows it), or the position
    to move a trailing component axis to (gradient vectors, eigenvalues),
    in front of the spatial axes, where NGFF wants a channel axis.
    """
    from ._geometry import block_placement, reduced_placement
    from .density import normalize_window

    operation = args.operation
    if operation in ("variance", "statistic"):
        axis = args.axis % len(shape)
        scale, translate = reduced_placement(grid.scale, grid.translate, axis, shape[axis])
        if len(shape) == 2:  # a profile, kept one voxel thick along `axis`
            return grid.placed(scale, translate), ("expand", axis)
        return grid.without(axis).placed(scale, translate), None
    if operation == "density":
        window = args.window[0] if len(args.window) == 1 else args.window
        sizes = normalize_window(window, shape, args.mode, args.edge)
        return grid.placed(*block_placement(grid.scale, grid.translate, sizes, args.mode)), None
    if operation == "norms":
        raise FormatError(
            "norms give one number per frame, not an image: write them to .csv or .npy"
        )
    if result_ndim == len(shape):  # mask, gradient magnitude
        return grid, None
    # one component per trailing axis: a channel axis in front of the spatial axes
    spatial = [i for i, kind in enumerate(grid.types) if kind == "space"]
    position = spatial[0] if spatial else grid.ndim
    name = "c" if "c" not in grid.names else "component"
    grid = replace(
        grid,
        names=(*grid.names[:position], name, *grid.names[position:]),
        types=(*grid.types[:position], "channel", *grid.types[position:]),
        units=(*grid.units[:position], None, *grid.units[position:]),
        scale=(*grid.scale[:position], 1.0, *grid.scale[position:]),
        translate=(*grid.translate[:position], 0.0, *grid.translate[position:]),
    )
    return grid, ("move", position)


def laid_out(result, layout):
    """`result` as the OME-Zarr output holds it (see :func:`result_grid`)."""
    import dask.array as da

    if layout is None:
        return result
    kind, axis = layout
    if kind == "expand":
        return da.expand_dims(result, axis)
    return da.moveaxis(result, -1, axis)


def provenance(args, sources) -> dict:
    """The record the panels attach to their result layers: operation, parameters,
    sources (here the input files), version."""
    from . import __version__

    operation = args.operation
    if operation in ("variance", "statistic"):
        statistic = "var" if operation == "variance" else args.statistic
        parameters = {"statistic": statistic, "axis": args.axis, "ddof": args.ddof}
        parameters["skipna"] = args.skipna
    elif operation == "density":
        parameters = {"window": list(args.window), "mode": args.mode}
        parameters["threshold"] = args.threshold
        if args.mode == "block":
            parameters["edge"] = args.edge
    elif operation == "mask":
        parameters = {"fill_value": args.fill}
    elif operation == "gradient":
        parameters = {"sigma": args.sigma, "spacing": args.spacing}
        parameters.update(components=not args.magnitude, truncate=args.truncate)
    elif operation == "vesselness":
        parameters = {"sigmas": list(args.sigmas), "method": args.method, "ridges": args.ridges}
        parameters.update(spacing=args.spacing, alpha=args.alpha, beta=args.beta)
        parameters["gamma"] = args.gamma
    else:
        parameters = {"sigma": args.sigma, "spacing": args.spacing, "order": args.order}
        parameters.update(frames=bool(args.frames), truncate=args.truncate)
    return {
        "operation": OPERATION_NAMES[operation],
        "parameters": _jsonable(parameters),
        "sources": [str(source) for source in sources],
        "version": __version__,
    }


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


# --------------------------------------------------------------------------- writing


def pyramid_levels(shape: tuple, grid: Grid, dtype) -> list[tuple]:
    """(shape, factors, grid) of every level: the result, then 2x downsampled levels.

    Each level halves the spatial axes of the one before that are at least
    PYRAMID_MIN_SIZE long (means of 2-voxel blocks for floats, every second
    voxel for integers and booleans), until every spatial axis is shorter.
    """
    from ._geometry import block_placement

    mean = np.dtype(dtype).kind in "fc"
    levels = [(tuple(shape), (1,) * len(shape), grid)]
    while True:
        shape, _, grid = levels[-1]
        factors = tuple(
            2 if kind == "space" and length >= PYRAMID_MIN_SIZE else 1
            for kind, length in zip(grid.types, shape, strict=True)
        )
        if factors == (1,) * len(shape):
            return levels
        scale = np.asarray(grid.scale) * factors
        if mean:  # the centre of each block
            _, translate = block_placement(grid.scale, grid.translate, factors)
        else:  # the first voxel of each block
            translate = grid.translate
        shape = tuple(length // factor for length, factor in zip(shape, factors, strict=True))
        levels.append((shape, factors, grid.placed(scale, translate)))


def _ngff_axes(grid: Grid):
    from yaozarrs import v05

    axes = []
    for name, kind, unit in zip(grid.names, grid.types, grid.units, strict=True):
        if kind == "space":
            axes.append(v05.SpaceAxis(name=name, type="space", unit=unit))
        elif kind == "time":
            axes.append(v05.TimeAxis(name=name, type="time", unit=unit))
        elif kind == "channel":
            axes.append(v05.ChannelAxis(name=name, type="channel", unit=unit))
        else:
            axes.append(v05.CustomAxis(name=name, unit=unit))
    return axes


def write_ome_zarr(result, path: Path, grid: Grid, record: dict, compute) -> None:
    """Write the Dask array `result` (regular chunks) placed by `grid` as an OME-Zarr image.

    The group and the empty arrays of every level are made first (yaozarrs,
    from its NGFF 0.5 model, with `record` under ``napari_voxelwise`` in the
    group attributes); `compute` then fills level 0 chunk by chunk, and each
    further level from the level written before it.
    """
    import dask.array as da

    try:
        from yaozarrs import v05
        from yaozarrs.write.v05 import prepare_image
    except ImportError as exc:
        raise FormatError(
            f"writing OME-Zarr needs yaozarrs: pip install 'napari-voxelwise[batch]' ({exc})"
        ) from exc
    levels = pyramid_levels(result.shape, grid, result.dtype)
    chunks = tuple(int(sizes[0]) for sizes in result.chunks)
    datasets = [
        v05.Dataset(
            path=str(index),
            coordinateTransformations=[
                v05.ScaleTransformation(type="scale", scale=list(level_grid.scale)),
                v05.TranslationTransformation(
                    type="translation", translation=list(level_grid.translate)
                ),
            ],
        )
        for index, (_, _, level_grid) in enumerate(levels)
    ]
    name = path.name[: -len(".ome.zarr")] if is_ome_zarr_name(path) else path.stem
    try:
        image = v05.Image(
            multiscales=[v05.Multiscale(name=name, axes=_ngff_axes(grid), datasets=datasets)]
        )
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise FormatError(
            f"output {path}: the result's axes ({', '.join(grid.names)}) do not make an "
            f"OME-Zarr image: {text}"
        ) from exc
    _, arrays = prepare_image(
        path,
        image,
        [(shape, result.dtype) for shape, _, _ in levels],
        chunks=chunks,
        extra_attributes={METADATA_KEY: record},
        writer="zarr",
    )
    compute(da.store(result, arrays["0"], lock=False, compute=False))
    for index, (shape, factors, _) in enumerate(levels[1:], start=1):
        level_chunks = [min(size, length) for size, length in zip(chunks, shape, strict=True)]
        read_chunks = tuple(np.multiply(level_chunks, factors))
        before = da.from_zarr(arrays[str(index - 1)], chunks=read_chunks)
        level = downsample(before, factors)
        compute(da.store(level, arrays[str(index)], lock=False, compute=False))


def downsample(array, factors: tuple):
    """`array` 2x smaller along the axes whose factor is 2: block means for floats, every
    second element for other types (the chunks of `array` must be multiples of `factors`)."""
    import dask.array as da

    lengths = [length // factor for length, factor in zip(array.shape, factors, strict=True)]
    if array.dtype.kind not in "fc":
        strided = array[tuple(slice(None, None, factor) for factor in factors)]
        return strided[tuple(slice(0, length) for length in lengths)]
    even = array[
        tuple(slice(0, length * factor) for length, factor in zip(lengths, factors, strict=True))
    ]
    blocks = {axis: factor for axis, factor in enumerate(factors) if factor > 1}
    return da.coarsen(np.mean, even, blocks).astype(array.dtype)
