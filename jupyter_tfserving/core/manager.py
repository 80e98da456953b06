"""The manager: loads, serves and unloads servable versions (DESIGN §3).

After tensorflow_serving/core/aspired_versions_manager.cc and basic_manager.cc, in one object:

- Sources call :meth:`Manager.set_aspired_versions` with the complete aspired set of a model.
  The transition policy (``core.transition_policy``) decides what to load and unload; loads and
  unloads run on the manager's worker threads, never in the caller.
- Request code calls :meth:`Manager.acquire` for a :class:`~.handle.ServableHandle` and releases
  it when the request is done. A version leaves AVAILABLE (goes UNLOADING) at once when the policy
  unloads it, so no new handle is given out on it; its ``close()`` runs once its last handle is
  released, and then it is END.
- Labels map names to versions; requests that name neither version nor label go to the ``stable``
  label if set (a ``canary_weight`` fraction to ``canary``), else to the highest AVAILABLE version.

Threading: every method is thread-safe. One ``threading.Condition`` (over one lock) guards all
state; loader, servable and listener code is never called while it is held. ``wait_for`` and
``stop`` block, so they are for tests, tools and shutdown, never for the IOLoop; every other
method returns at once.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import defaults
from .handle import ServableHandle
from .routing import unversioned_route
from .servable import Loader, LoadSpec, Servable, WarmupReport
from .state import ServableId, ServableState, VersionStatus
from .status import (
    Code,
    ServingError,
    failed_precondition,
    invalid_argument,
    not_found,
)
from .transition_policy import Snapshot, get_policy
from .validation import check_canary_weight, check_label, check_model_name, check_version

log = logging.getLogger(__name__)

Listener = Callable[[ServableId, VersionStatus], None]

@dataclass
class ManagerOptions:
    """Plain options (the app maps its traitlets onto these; names follow TF Serving's flags).

    ``max_num_load_retries``: retries after a failed load attempt (so at most 1 + n attempts),
    ``load_retry_interval_seconds`` apart, made only while the version is still aspired.
    ``transition_policy``: ``"availability_preserving"`` (default) or ``"resource_preserving"``.
    ``allow_version_labels_for_unavailable_models``: let a label point at a version that is not
    AVAILABLE. ``num_load_threads``: worker threads for loads and unloads together.
    """

    max_num_load_retries: int = defaults.MAX_NUM_LOAD_RETRIES
    load_retry_interval_seconds: float = defaults.LOAD_RETRY_INTERVAL_SECONDS
    transition_policy: str = "availability_preserving"
    allow_version_labels_for_unavailable_models: bool = False
    num_load_threads: int = defaults.NUM_LOAD_THREADS
    # END versions no source aspires any more are kept in the status history (TF Serving lists
    # them) up to this many per model; older ones are forgotten, so memory stays bounded
    # however many versions come and go.
    max_end_versions_kept: int = defaults.MAX_END_VERSIONS_KEPT

    def validate(self) -> None:
        """Raise INVALID_ARGUMENT for an option out of range or an unknown policy."""
        if self.max_num_load_retries < 0:
            raise invalid_argument("max_num_load_retries must be >= 0")
        if not self.load_retry_interval_seconds >= 0:
            raise invalid_argument("load_retry_interval_seconds must be >= 0")
        if self.num_load_threads < 1:
            raise invalid_argument("num_load_threads must be >= 1")
        if self.max_end_versions_kept < 0:
            raise invalid_argument("max_end_versions_kept must be >= 0")
        get_policy(self.transition_policy)


class _Version:
    """The manager's record of one version; every field is guarded by the manager's lock."""

    __slots__ = ("id", "spec", "state", "error", "since", "aspired", "refcount", "servable",
                 "close_scheduled", "warmup")

    def __init__(self, servable_id: ServableId, spec: LoadSpec) -> None:
        self.id = servable_id
        self.spec = spec  # the latest spec a source gave; a load uses the one it started with
        self.state = ServableState.START
        self.error: ServingError | None = None
        self.since = time.time()
        self.aspired = True
        self.refcount = 0
        self.servable: Servable | None = None
        self.close_scheduled = False
        self.warmup: WarmupReport | None = None  # the loader's, once loaded

    def status(self) -> VersionStatus:
        return VersionStatus(self.id.version, self.state, self.error, self.since, self.warmup)


class _Model:
    __slots__ = ("versions", "labels", "pending_labels", "canary_weight")

    def __init__(self) -> None:
        self.versions: dict[int, _Version] = {}
        self.labels: dict[str, int] = {}
        # label -> version waiting to become AVAILABLE (set_labels(pending_ok=True))
        self.pending_labels: dict[str, int] = {}
        self.canary_weight = 0.0


def _as_serving_error(exc: BaseException) -> ServingError:
    if isinstance(exc, ServingError):
        return exc
    return ServingError(Code.UNKNOWN, str(exc) or type(exc).__name__)


def _unavailable_label_error(name: str, version: int) -> ServingError:
    return failed_precondition(
        f"Request to assign label to version {version} of model {name}, which is not "
        "currently available for inference"
    )


def _specific_not_found(name: str, version: int) -> ServingError:
    return not_found(f"Servable not found for request: Specific({name}, {version})")


def _latest_not_found(name: str) -> ServingError:
    return not_found(f"Servable not found for request: Latest({name})")


class Manager:
    """Loads the versions sources aspire, hands out handles, unloads when handles are gone."""

    def __init__(
        self,
        loader_factory: Callable[[ServableId, LoadSpec], Loader],
        options: ManagerOptions | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        """``loader_factory(id, spec)`` is called once per load, on a worker thread; the loader's
        ``load()`` once per attempt. ``rng`` draws the canary split (seed it in tests)."""
        self._options = options if options is not None else ManagerOptions()
        self._options.validate()
        self._policy = get_policy(self._options.transition_policy)
        self._loader_factory = loader_factory
        self._rng = rng if rng is not None else random.Random()
        self._cond = threading.Condition(threading.Lock())
        self._models: dict[str, _Model] = {}
        self._listeners: tuple[Listener, ...] = ()
        self._events: deque[tuple[ServableId, VersionStatus]] = deque()
        self._delivering = False
        self._stopping = False
        self._executor = ThreadPoolExecutor(
            max_workers=self._options.num_load_threads, thread_name_prefix="tfserving-manager"
        )

    @property
    def options(self) -> ManagerOptions:
        return self._options

    # ------------------------------------------------------------------ sources

    def set_aspired_versions(self, name: str, versions: Mapping[int, LoadSpec]) -> None:
        """Make ``versions`` the complete aspired set of model ``name`` (empty: unload all).

        Called by sources, from any thread; returns at once. A new version, or one in END that
        was not aspired before, starts afresh in START; a version in END that stays aspired (a
        failed load) is not loaded again. A START version that stops being aspired goes to END
        without being loaded. Ignored once ``stop()`` has been called.
        """
        check_model_name(name)
        wanted = {check_version(v): spec for v, spec in versions.items()}
        with self._cond:
            if self._stopping:
                log.debug("Manager stopped; ignoring aspired versions of %r", name)
                return
            model = self._models.setdefault(name, _Model())
            for version, rec in model.versions.items():
                if version not in wanted:
                    rec.aspired = False
                    if rec.state is ServableState.START:
                        self._set_state(rec, ServableState.END)
            for version, spec in wanted.items():
                old = model.versions.get(version)
                if old is None or (old.state is ServableState.END and not old.aspired):
                    rec = _Version(ServableId(name, version), spec)
                    model.versions[version] = rec
                    self._emit(rec)
                else:
                    old.spec = spec
                    old.aspired = True
            self._reconcile(model)
            self._cond.notify_all()  # load retries wait for their version to be un-aspired
        self._deliver()

    # ------------------------------------------------------------------ requests

    def acquire(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> ServableHandle:
        """A handle on the version a request should use; raises ServingError, never blocks.

        ``version`` and ``label`` are mutually exclusive. See the module docstring for routing.
        The route is chosen and the refcount raised under the lock, so a version is never
        handed out once it is UNLOADING.
        """
        if version is not None and label is not None:
            raise invalid_argument("A request may name a version or a label, not both")
        with self._cond:
            rec = self._route(name, version, label)
            rec.refcount += 1
            servable = rec.servable
        assert servable is not None
        return ServableHandle(rec.id, servable, functools.partial(self._release, rec))

    def _route(self, name: str, version: int | None, label: str | None) -> _Version:
        model = self._models.get(name)
        if version is not None:
            return self._available(name, model, version)
        if label is not None:
            if model is None or label not in model.labels:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            return self._available(name, model, model.labels[label])
        if model is None:
            raise _latest_not_found(name)
        route = unversioned_route(model.labels, model.canary_weight)
        if route.canary is not None and self._rng.random() < route.weight:
            rec = model.versions.get(route.canary)
            if rec is not None and rec.state is ServableState.AVAILABLE:
                return rec
        if route.primary is not None:
            return self._available(name, model, route.primary)
        available = [r for r in model.versions.values() if r.state is ServableState.AVAILABLE]
        if not available:
            raise _latest_not_found(name)
        return max(available, key=lambda r: r.id.version)

    @staticmethod
    def _available(name: str, model: _Model | None, version: int) -> _Version:
        rec = model.versions.get(version) if model is not None else None
        if rec is None or rec.state is not ServableState.AVAILABLE:
            raise _specific_not_found(name, version)
        return rec

    def _release(self, rec: _Version) -> None:
        """Called once per handle, by ``ServableHandle.release``, in the releasing thread."""
        with self._cond:
            rec.refcount -= 1
            if rec.refcount == 0 and rec.state is ServableState.UNLOADING:
                self._schedule_close(rec)

    # ------------------------------------------------------------------ labels and canary

    def set_labels(
        self, name: str, labels: Mapping[str, int], *, pending_ok: bool = False
    ) -> None:
        """Replace all labels of model ``name``.

        A label may point only at an AVAILABLE version (unless the manager allows labels for
        unavailable versions). Otherwise, with ``pending_ok=False`` nothing changes and
        FAILED_PRECONDITION is raised; with ``pending_ok=True`` (the config source) the label is
        kept pending and set when its version becomes AVAILABLE, and until then a label that
        already existed keeps its current version.
        """
        check_model_name(name)
        wanted = {check_label(k): check_version(v) for k, v in labels.items()}
        allow = self._options.allow_version_labels_for_unavailable_models
        with self._cond:
            model = self._models.get(name)
            active: dict[str, int] = {}
            pending: dict[str, int] = {}
            for label, version in wanted.items():
                if allow or self._is_available(model, version):
                    active[label] = version
                elif pending_ok:
                    pending[label] = version
                else:
                    raise _unavailable_label_error(name, version)
            if model is None:
                if not wanted:
                    return
                model = self._models.setdefault(name, _Model())
            for label in pending:
                if label in model.labels:
                    active[label] = model.labels[label]
            model.labels = active
            model.pending_labels = pending

    def set_label(self, name: str, label: str, version: int) -> None:
        """Point ``label`` at ``version`` now (TF Serving's rule: the version must be
        AVAILABLE unless allowed by the options, else FAILED_PRECONDITION). Cancels any pending
        assignment of the label."""
        check_model_name(name)
        check_label(label)
        check_version(version)
        with self._cond:
            model = self._models.get(name)
            if not (self._options.allow_version_labels_for_unavailable_models
                    or self._is_available(model, version)):
                raise _unavailable_label_error(name, version)
            if model is None:
                model = self._models.setdefault(name, _Model())
            model.labels[label] = version
            model.pending_labels.pop(label, None)

    def remove_label(self, name: str, label: str) -> None:
        """Remove ``label`` (and any pending assignment of it); a no-op if it is not set."""
        with self._cond:
            model = self._models.get(name)
            if model is not None:
                model.labels.pop(label, None)
                model.pending_labels.pop(label, None)

    def labels(self, name: str) -> dict[str, int]:
        """The labels in effect (pending ones excluded); ``{}`` for an unknown model."""
        with self._cond:
            model = self._models.get(name)
            return dict(model.labels) if model is not None else {}

    def pending_labels(self, name: str) -> dict[str, int]:
        """Labels waiting for their version to become AVAILABLE (see ``set_labels``)."""
        with self._cond:
            model = self._models.get(name)
            return dict(model.pending_labels) if model is not None else {}

    def set_canary_weight(self, name: str, weight: float) -> None:
        """The fraction of unversioned, unlabelled requests that go to ``canary`` while
        ``stable`` is set; ``0 <= weight <= 1`` else INVALID_ARGUMENT."""
        check_model_name(name)
        weight = check_canary_weight(weight)
        with self._cond:
            self._models.setdefault(name, _Model()).canary_weight = weight

    def canary_weight(self, name: str) -> float:
        """The model's canary weight; 0.0 for an unknown model."""
        with self._cond:
            model = self._models.get(name)
            return model.canary_weight if model is not None else 0.0

    @staticmethod
    def _is_available(model: _Model | None, version: int) -> bool:
        rec = model.versions.get(version) if model is not None else None
        return rec is not None and rec.state is ServableState.AVAILABLE

    # ------------------------------------------------------------------ queries

    def model_names(self) -> list[str]:
        """Every model the manager has been told about (versions, labels or canary weight) and
        not forgotten, sorted."""
        with self._cond:
            return sorted(self._models)

    def version_statuses(self, name: str) -> list[VersionStatus]:
        """Every version of the model, highest first, END ones included (failed loads are END
        with their error; see ``ManagerOptions.max_end_versions_kept``). NOT_FOUND ``Could not
        find any versions of model X`` when the model is unknown or has no versions (TF Serving's
        GetModelStatus)."""
        with self._cond:
            model = self._models.get(name)
            if model is None or not model.versions:
                raise not_found(f"Could not find any versions of model {name}")
            return [model.versions[v].status() for v in sorted(model.versions, reverse=True)]

    def refcounts(self, name: str) -> dict[int, int]:
        """Handles held per version, for the versions that can be held (AVAILABLE, UNLOADING)."""
        held = (ServableState.AVAILABLE, ServableState.UNLOADING)
        with self._cond:
            model = self._models.get(name)
            if model is None:
                return {}
            return {v: r.refcount for v, r in sorted(model.versions.items()) if r.state in held}

    def wait_for(
        self, name: str, version: int, states: Collection[ServableState], timeout: float
    ) -> VersionStatus:
        """Block until version ``version`` of ``name`` is in one of ``states``; its status.

        For tests and tools (never the IOLoop). Raises TimeoutError after ``timeout`` seconds.
        Listeners for the change may not have been called yet when this returns.
        """
        wanted = frozenset(states)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                model = self._models.get(name)
                rec = model.versions.get(version) if model is not None else None
                if rec is not None and rec.state in wanted:
                    return rec.status()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    now = rec.status() if rec is not None else "unknown"
                    raise TimeoutError(
                        f"{name}/{version} did not reach {sorted(s.value for s in wanted)} "
                        f"in {timeout}s; it is {now}"
                    )
                self._cond.wait(remaining)

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(id, status)`` on every state change, in order, outside the manager lock,
        from a thread that made a change (a caller's or a worker). ``fn`` must be quick and
        must not block on the manager's progress (it may call the manager); its exceptions are
        logged and ignored."""
        with self._cond:
            self._listeners = (*self._listeners, fn)

    # ------------------------------------------------------------------ shutdown

    def stop(self, timeout: float | None = None) -> None:
        """Stop: ignore sources from now on, unload every version as soon as its handles are
        released (a load in progress finishes, then is unloaded; load retries stop), then join
        the worker threads. Blocking; may be called again.

        If some version is still not END after ``timeout`` seconds (a handle never released, a
        load that hangs) a warning is logged and the workers are left running, so a later
        release still closes the servable.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            for model in self._models.values():
                for rec in model.versions.values():
                    rec.aspired = False
                    if rec.state is ServableState.START:
                        self._set_state(rec, ServableState.END)
                self._reconcile(model)
            self._cond.notify_all()  # wakes load retries waiting out their interval
        self._deliver()
        with self._cond:
            while True:
                alive = [
                    r.id for m in self._models.values() for r in m.versions.values()
                    if r.state is not ServableState.END
                ]
                if not alive:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    log.warning("Manager stop timed out; still loaded: %s",
                                ", ".join(f"{i.name}/{i.version}" for i in alive))
                    return
                self._cond.wait(remaining)
        self._executor.shutdown(wait=True)
        self._deliver()

    # ------------------------------------------------------------------ internals (lock held)

    def _set_state(self, rec: _Version, state: ServableState,
                   error: ServingError | None = None) -> None:
        rec.state = state
        rec.error = error
        rec.since = time.time()
        self._emit(rec)

    def _emit(self, rec: _Version) -> None:
        self._events.append((rec.id, rec.status()))
        self._cond.notify_all()

    def _reconcile(self, model: _Model) -> None:
        """Ask the policy what to do next and start it (loads and closes go to workers);
        forget the oldest END versions past ``max_end_versions_kept``."""
        self._forget_old_versions(model)
        if self._stopping:
            for rec in model.versions.values():
                if rec.state is ServableState.AVAILABLE:
                    self._begin_unload(rec)
            return
        snapshots = [Snapshot(v, r.state, r.aspired) for v, r in model.versions.items()]
        for action in self._policy(snapshots):
            rec = model.versions[action.version]
            if action.kind == "load" and rec.state is ServableState.START:
                self._set_state(rec, ServableState.LOADING)
                self._executor.submit(self._run_task, self._load, rec, rec.spec)
            elif action.kind == "unload" and rec.state is ServableState.AVAILABLE:
                self._begin_unload(rec)

    def _forget_old_versions(self, model: _Model) -> None:
        ended = [r for r in model.versions.values()
                 if r.state is ServableState.END and not r.aspired]
        for rec in sorted(ended, key=lambda r: r.since)[
                :max(0, len(ended) - self._options.max_end_versions_kept)]:
            del model.versions[rec.id.version]

    def _begin_unload(self, rec: _Version) -> None:
        self._set_state(rec, ServableState.UNLOADING)
        if rec.refcount == 0:
            self._schedule_close(rec)

    def _schedule_close(self, rec: _Version) -> None:
        if not rec.close_scheduled:
            rec.close_scheduled = True
            try:
                self._executor.submit(self._run_task, self._close, rec)
            except RuntimeError:  # the interpreter is exiting: executors take no more work
                threading.Thread(target=self._run_task, args=(self._close, rec),
                                 name="tfserving-close", daemon=True).start()

    # ------------------------------------------------------------------ worker tasks

    def _run_task(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:  # a bug here would otherwise vanish into an unread Future
            log.exception("Manager task %s failed", getattr(fn, "__name__", fn))

    def _load(self, rec: _Version, spec: LoadSpec) -> None:
        """Worker: make the loader, then try ``load()`` until it succeeds, the retries are used
        up, the version stops being aspired, or the manager stops. A successful load keeps the
        loader's ``warmup_report`` (see ``Loader``) in the version's status."""
        try:
            loader = self._loader_factory(rec.id, spec)
        except Exception as exc:
            self._finish_load(rec, None, _as_serving_error(exc))
            return
        retries = 0
        while True:
            try:
                servable = loader.load()
            except Exception as exc:
                error = _as_serving_error(exc)
            else:
                warmup = getattr(loader, "warmup_report", None)
                self._finish_load(rec, servable, None,
                                  warmup if isinstance(warmup, WarmupReport) else None)
                return
            with self._cond:
                give_up = retries >= self._options.max_num_load_retries
                if not give_up:
                    self._cond.wait_for(lambda: not rec.aspired or self._stopping,
                                        timeout=self._options.load_retry_interval_seconds)
                    give_up = not rec.aspired or self._stopping
            if give_up:
                self._finish_load(rec, None, error)
                return
            retries += 1
            log.warning("Loading %s failed (%s); retry %d of %d", rec.id, error.message,
                        retries, self._options.max_num_load_retries)

    def _finish_load(self, rec: _Version, servable: Servable | None,
                     error: ServingError | None, warmup: WarmupReport | None = None) -> None:
        with self._cond:
            model = self._models[rec.id.name]
            if servable is None:
                log.error("Loading %s failed: %s", rec.id, error)
                self._set_state(rec, ServableState.END, error)
            else:
                rec.servable = servable
                rec.warmup = warmup
                self._set_state(rec, ServableState.AVAILABLE)
                for label, version in list(model.pending_labels.items()):
                    if version == rec.id.version:
                        model.labels[label] = version
                        del model.pending_labels[label]
            self._reconcile(model)
        self._deliver()

    def _close(self, rec: _Version) -> None:
        """Worker: close a version whose last handle is gone, then END it. If it was aspired
        again meanwhile, it starts afresh (START) once it is END."""
        servable = rec.servable
        try:
            if servable is not None:
                servable.close()
        except Exception:
            log.exception("Closing %s failed", rec.id)
        with self._cond:
            rec.servable = None
            self._set_state(rec, ServableState.END)
            model = self._models[rec.id.name]
            if rec.aspired and not self._stopping and model.versions.get(rec.id.version) is rec:
                fresh = _Version(rec.id, rec.spec)
                model.versions[rec.id.version] = fresh
                self._emit(fresh)
            self._reconcile(model)
        self._deliver()

    # ------------------------------------------------------------------ listeners

    def _deliver(self) -> None:
        """Call listeners for queued events, in order, with no lock held. Whichever thread
        finds delivery idle drains the queue, including events queued meanwhile by others."""
        with self._cond:
            if self._delivering or not self._events:
                return
            self._delivering = True
        try:
            while True:
                with self._cond:
                    if not self._events:
                        self._delivering = False
                        return
                    batch = list(self._events)
                    self._events.clear()
                    listeners = self._listeners
                for servable_id, status in batch:
                    for fn in listeners:
                        try:
                            fn(servable_id, status)
                        except Exception:
                            log.exception("Manager listener %r failed", fn)
        except BaseException:
            with self._cond:
                self._delivering = False
            raise
