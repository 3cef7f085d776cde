"""The one place where panels run computations: threads, progress, cancel, layers.

A panel turns its widget values into a :class:`Job` on the GUI thread (reading
layer data there, so later changes to the layer do not reach the run), and
hands it to its :class:`Runner`. The runner

- refuses a job whose estimated memory exceeds what is available, with the
  estimate and what to do instead;
- runs the job's :class:`~napari_voxelwise._plan.Plan` step by step in one of
  napari's thread workers, with progress in the activity dock;
- turns the panel's Run button into Cancel while it runs, and allows one run
  per panel at a time;
- stops the run when a source layer is removed or the panel is closed;
- reports errors as napari notifications (no traceback dialog), and adds the
  result layers on the GUI thread only when the run finished normally and the
  viewer still holds the source layers.

Nothing here does maths; nothing in the numeric core imports this module.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from . import __version__

if TYPE_CHECKING:  # pragma: no cover
    import napari
    from magicgui.widgets import PushButton

    from ._plan import Plan

#: metadata key of the provenance record on every layer we create
METADATA_KEY = "napari_voxelwise"
#: a job may use at most this fraction of the memory available when it starts
MEMORY_FRACTION = 0.8
#: milliseconds between adding two result layers of one run
LAYER_INTERVAL_MS = 25
#: per-item attributes that must follow the data when a layer is updated in place
#: (a new set of points comes with its own features, sizes, colours ...)
PER_ITEM_KEYS = {
    "points": ("features", "size", "face_color", "border_color", "border_width", "shown", "symbol")
}


def available_memory() -> int:
    """Bytes of memory available to this process now (psutil, a napari dependency)."""
    import psutil

    return int(psutil.virtual_memory().available)


def format_bytes(count: float) -> str:
    """``1536 -> '1.5 KiB'``: a byte count in binary units, for messages."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


@dataclass
class Job:
    """One computation requested by a panel.

    Parameters
    ----------
    title : str
        What runs, for the progress bar and messages ("Variance of 'cells'").
    plan : Plan
        The checked computation (made on the GUI thread, so bad input fails early).
    to_layers : callable
        ``to_layers(result) -> list of (data, kwargs, layer_type)``: the layers to
        add, called on the GUI thread after the run.
    sources : sequence of Layer
        Layers the result depends on; removing one cancels the run.
    memory_bytes : int
        Estimated peak memory of the run (result plus temporaries).
    operation, parameters : str, dict
        Recorded with the source names in every result layer's metadata.
    on_done : callable, optional
        ``on_done(result)``, called on the GUI thread after the layers are added,
        only when the run finished normally (not cancelled, sources still there):
        for results shown in the panel rather than as layers (a plot).
    store : str, optional
        The temporary zarr store the result is written to (a chunked run on
        Dask data): recorded in the layers' metadata, removed when the run adds
        no layer, and when the last layer reading it is removed.
    live_slot : hashable, optional
        Live mode: the layers of successive jobs with the same slot are updated
        in place (and renamed to the new parameters) instead of adding one layer
        per set of parameters.
    """

    title: str
    plan: Plan
    to_layers: Callable[[Any], list[tuple]]
    sources: Sequence[Any] = ()
    memory_bytes: int = 0
    operation: str = ""
    parameters: dict = field(default_factory=dict)
    on_done: Callable[[Any], None] | None = None
    store: str | None = None
    live_slot: Any = None


class Runner:
    """Runs one :class:`Job` at a time for one panel.

    Parameters
    ----------
    viewer : napari.Viewer
        Where result layers go and notifications appear.
    button : magicgui PushButton, optional
        The panel's Run button; it reads "Cancel" while a job runs.
    on_result : callable, optional
        Called with the list of layers added after each successful run.
    """

    def __init__(
        self,
        viewer: napari.Viewer,
        button: PushButton | None = None,
        on_result: Callable[[list], None] | None = None,
    ):
        self._viewer_ref = weakref.ref(viewer)
        self.button = button
        self._label = button.text if button is not None else "Run"
        self.on_result = on_result
        self.worker = None
        self._job: Job | None = None
        self._steps = None
        self._cancelled = False
        self._pending: Job | None = None
        self._closed = False
        self._kept_store = False
        #: (job, outcome, specs still to add, layers added) while result layers are added
        self._adding: tuple | None = None
        self._finish_after_adding = False
        #: layers this runner created, by name and by (live slot, index): a rerun with the
        #: same parameters, or the next live run, updates them in place
        self._created: dict[Any, weakref.ReferenceType] = {}
        viewer.layers.events.removed.connect(self._on_layer_removed)

    # ------------------------------------------------------------------ state

    @property
    def viewer(self):
        return self._viewer_ref()

    @property
    def running(self) -> bool:
        """A job runs, or its result layers are being added."""
        return self.worker is not None or self._adding is not None

    # ---------------------------------------------------------------- control

    def submit(self, make_job: Callable[[], Job], *, replace: bool = False) -> bool:
        """Build a job with `make_job` and start it; return True if it started.

        A ValueError/TypeError from `make_job` (bad parameters, unsuitable
        layer) becomes an error notification. While a job runs, a new submit
        is refused, unless `replace` (live mode): then the running job is
        cancelled and the newest request runs as soon as it has stopped.
        """
        try:
            job = make_job()
        except (ValueError, TypeError, MemoryError) as error:
            self.notify_error(error)
            return False
        if not self._fits_in_memory(job):
            return False
        if self.running:
            if not replace:
                self.notify_info("A computation is already running in this panel.")
                return False
            self._pending = job
            self.cancel()
            return True
        self._start(job)
        return True

    def cancel(self) -> None:
        """Ask the running job to stop at its next step (a few milliseconds away)."""
        if self.worker is not None:
            self._cancelled = True
            self.worker.quit()

    def toggle(self, make_job: Callable[[], Job]) -> None:
        """What the Run/Cancel button does."""
        if self.running:
            self._pending = None
            self.cancel()
        else:
            self.submit(make_job)

    def wait(self, timeout_ms: int = 30000) -> None:
        """Block (processing Qt events) until the running job ends; for tests and scripts."""
        from qtpy.QtCore import QCoreApplication, QElapsedTimer

        timer = QElapsedTimer()
        timer.start()
        while self.running or self._pending is not None:
            if timer.elapsed() > timeout_ms:
                raise TimeoutError(f"the computation did not end within {timeout_ms} ms")
            QCoreApplication.processEvents()

    def close(self) -> None:
        """Stop any run and disconnect from the viewer (the panel is going away)."""
        self._closed = True
        self._pending = None
        self.cancel()
        viewer = self.viewer
        if viewer is not None:
            viewer.layers.events.removed.disconnect(self._on_layer_removed)

    # --------------------------------------------------------------- internals

    def _fits_in_memory(self, job: Job) -> bool:
        available = available_memory()
        if job.memory_bytes > MEMORY_FRACTION * available:
            self.notify_error(
                f"{job.title} would need about {format_bytes(job.memory_bytes)} of memory, "
                f"but only {format_bytes(available)} is available. Work on a smaller region "
                "(crop the layer or pick fewer frames), or open the data as a Dask/zarr array "
                "so that it is processed chunk by chunk."
            )
            return False
        return True

    def _start(self, job: Job) -> None:
        from napari.qt.threading import create_worker

        self._job = job
        self._cancelled = False
        self._steps = job.plan.steps()
        worker = create_worker(
            _drive,
            self._steps,
            _progress={"total": max(job.plan.total, 1), "desc": job.title},
            _ignore_errors=True,
            _start_thread=False,
        )
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self.notify_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        if self.button is not None:
            self.button.text = "Cancel"
        worker.start()

    def _on_returned(self, outcome) -> None:
        job = self._job
        if isinstance(outcome, _Failure):
            self.notify_error(outcome.error)
            return
        viewer = self.viewer
        if self._cancelled or self._closed or viewer is None or job is None:
            return
        if any(layer not in viewer.layers for layer in job.sources):
            return  # a source went away while we computed: its result has no place
        try:
            specs = list(enumerate(job.to_layers(outcome)))
        except Exception as error:  # a result napari cannot show: say so, add nothing
            self.notify_error(error)
            return
        self._adding = (job, outcome, specs, [])
        self._add_next_layer()

    def _add_next_layer(self) -> None:
        """Add one result layer, and the next one a moment later: the viewer draws and
        handles input in between (adding and drawing a layer takes napari ~0.1-0.2 s, and
        a timer due at once could run before the overdue ones)."""
        from qtpy.QtCore import QTimer

        job, outcome, specs, added = self._adding
        viewer = self.viewer
        if specs and not self._closed and viewer is not None:
            index, spec = specs.pop(0)
            try:
                added.append(self._add_layer(viewer, job, index, *spec))
            except Exception as error:  # a result napari cannot show: say so, add no more
                self.notify_error(error)
                specs.clear()
                added.append(None)  # marks the failure
            if specs:
                QTimer.singleShot(LAYER_INTERVAL_MS, self._add_next_layer)
                return
        self._adding = None
        failed = None in added
        added = [layer for layer in added if layer is not None]
        self._kept_store = bool(added) and job.store is not None
        if not failed and not self._closed and viewer is not None:
            if job.on_done is not None:
                job.on_done(outcome)
            if self.on_result is not None:
                self.on_result(added)
        if self._finish_after_adding:
            self._finish_after_adding = False
            self._on_finished()

    def _add_layer(self, viewer, job: Job, index: int, data, kwargs: dict, layer_type: str):
        from napari.layers import Layer

        kwargs = dict(kwargs)
        colorbar = kwargs.pop("colorbar", False)  # shown over the canvas (a scale map)
        metadata = dict(kwargs.pop("metadata", {}))
        metadata[METADATA_KEY] = {
            "operation": job.operation,
            "parameters": dict(job.parameters),
            "sources": [layer.name for layer in job.sources],
            "version": __version__,
        }
        if job.store is not None:
            metadata[METADATA_KEY]["store"] = job.store
        name = kwargs.get("name")
        keys = [key for key in (name, _slot_key(job, index)) if key is not None]
        existing = self._made_before(viewer, job, name, keys, layer_type)
        if existing is not None:
            # same parameters again, or the next live run: update that layer, keep the view
            existing.data = data
            for key in (
                "scale",
                "translate",
                "contrast_limits",
                *PER_ITEM_KEYS.get(layer_type, ()),
            ):
                if key in kwargs:
                    setattr(existing, key, kwargs[key])
            old_store = existing.metadata.get(METADATA_KEY, {}).get("store")
            existing.metadata = metadata
            if old_store is not None and old_store != job.store:
                self._remove_unread_store(old_store)  # the layer no longer reads it
            if name and existing.name != name:
                existing.name = name  # napari keeps names unique
            layer = existing
        else:
            layer = Layer.create(data, {**kwargs, "metadata": metadata}, layer_type)
            viewer.add_layer(layer)
        if colorbar:
            layer.colorbar.visible = True
        for key in [key for key, ref in self._created.items() if ref() in (layer, None)]:
            del self._created[key]  # a renamed live layer frees its old name; gone layers
        for key in keys:
            self._created[key] = weakref.ref(layer)
        return layer

    def _made_before(self, viewer, job: Job, name, keys: list, layer_type: str):
        """The layer to update instead of adding one, or None.

        One this runner made under one of `keys` (its name or its live slot), or
        else a layer called `name` made by the same operation (by another panel
        of the same kind, or by this one before it was closed and opened again).
        """
        candidates = [self._created.get(key, lambda: None)() for key in keys]
        if name is not None and name in viewer.layers:
            layer = viewer.layers[name]
            if layer.metadata.get(METADATA_KEY, {}).get("operation") == job.operation:
                candidates.append(layer)
        for layer in candidates:
            if layer is not None and layer in viewer.layers and layer._type_string == layer_type:
                return layer
        return None

    def _on_finished(self) -> None:
        if self._adding is not None:  # the worker is done; its layers are being added
            self._finish_after_adding = True
            return
        if self._steps is not None:
            self._steps.close()  # the worker thread is done: release the run's buffers
        if self._job is not None and self._job.store is not None and not self._kept_store:
            _remove_store(self._job.store)  # cancelled, failed or not shown: nothing reads it
        self._kept_store = False
        self._steps = None
        self.worker = None
        self._job = None
        if self._closed:
            return  # the panel (and its button) is gone
        if self.button is not None:
            self.button.text = self._label
        pending, self._pending = self._pending, None
        if pending is not None and self.viewer is not None:
            self._start(pending)

    def _remove_unread_store(self, store: str) -> None:
        """Remove temporary `store` once no layer of the viewer reads it."""
        viewer = self.viewer
        if viewer is None:
            return
        readers = [
            layer
            for layer in viewer.layers
            if layer.metadata.get(METADATA_KEY, {}).get("store") == store
        ]
        if not readers:
            _remove_store(store)

    def _on_layer_removed(self, event) -> None:
        store = event.value.metadata.get(METADATA_KEY, {}).get("store")
        if store is not None:
            self._remove_unread_store(store)
        job = self._job
        if job is not None and any(event.value is layer for layer in job.sources):
            self._pending = None
            self.cancel()
            self.notify_info(f"{job.title} stopped: its layer '{event.value.name}' was removed.")

    # ----------------------------------------------------------- notifications

    @staticmethod
    def notify_error(error) -> None:
        from napari.utils.notifications import show_error

        if isinstance(error, MemoryError):
            message = "Not enough memory for this computation; try a smaller region."
        elif isinstance(error, BaseException):
            message = f"{type(error).__name__}: {error}"
        else:
            message = str(error)
        show_error(message)

    @staticmethod
    def notify_info(message: str) -> None:
        from napari.utils.notifications import show_info

        show_info(message)


def _slot_key(job: Job, index: int):
    """The key of a job's `index`-th layer in its live slot, or None outside live mode."""
    return None if job.live_slot is None else ("live slot", job.live_slot, index)


def _remove_store(path: str) -> None:
    from ._lazy import remove_store

    remove_store(path)


class _Failure:
    """An exception raised by a job, carried to the GUI thread as a return value."""

    def __init__(self, error: BaseException):
        self.error = error


def _drive(steps):
    """Worker body: advance the plan's generator, yielding after every step."""
    try:
        result = yield from steps
    except Exception as error:  # reported on the GUI thread, never as a dialog
        return _Failure(error)
    return result


# --------------------------------------------------------------------------- kernels


def prepare_kernels(operations: Sequence[str], dtype) -> None:
    """Have the kernels of `operations` for `dtype` compiled (in the compiler process) and
    loaded, in the background, with an entry in napari's activity dock meanwhile.

    Panels call it when they open and when their layer changes, so that a Run finds its
    kernels ready. Only in the mode "background": in "wait" a run compiles what it needs,
    in "off" nothing is compiled.
    """
    from . import _dispatch

    if _dispatch.compile_mode() != "background":
        return
    _CompilingProgress.listen()
    _dispatch.warmup(list(operations), [dtype], wait=False)


class _CompilingProgress:
    """The activity dock's entries for background compiling, one per job."""

    _listening = False
    _bars: ClassVar[dict[str, Any]] = {}

    @classmethod
    def listen(cls) -> None:
        from . import _dispatch

        if not cls._listening:
            cls._listening = True
            _dispatch.add_listener(cls._on_event)

    @staticmethod
    def _on_event(event: str, description: str) -> None:
        # called from the compiling thread: napari's progress lives on the GUI thread
        from superqt.utils import ensure_main_thread

        ensure_main_thread(_CompilingProgress._show)(event, description)

    @classmethod
    def _show(cls, event: str, description: str) -> None:
        from napari.utils import progress

        if event == "compiling" and description not in cls._bars:
            cls._bars[description] = progress(total=0, desc=f"Compiling kernels: {description}")
        elif event in ("ready", "failed"):
            bar = cls._bars.pop(description, None)
            if bar is not None:
                bar.close()
