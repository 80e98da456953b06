"""The control plane: what is served, and how unversioned traffic is split.

``ControlPlane`` owns the repository source, the config file (``models.config``), the JSON state
file beside it and the lock that serialises them, and offers the management operations: publish
(with its rollout), labels, canary, promote, rollback, unload, load, reload and the hand-off
config for ``tensorflow_model_server``. The repository on disk stays the source of truth
(DESIGN §2):

- a published version is unpacked into a hidden directory beside its final place, checked, and
  renamed into ``<base_path>/<version>`` (atomic: a half-written version is never seen);
- labels (``stable``, ``canary``, any name) are written to ``models.config`` in TF Serving's
  format; without a config file yet, the first label change creates one listing every model;
- the canary weight, the previous stable version (kept loaded for ``rollback``) and the versions
  a user unloaded go to the JSON state file (``core.serving_state``).

So a restarted server comes back with the same models, versions, labels and traffic split.
Routing is ``core.routing``'s rule; the split reported here is computed by the same rule.

Who calls: ``ModelService`` builds it and starts / stops it; the management routes, the
embedded server and (over REST) ``serve()`` call the operations. Threads: every operation
blocks (file I/O, unpacking, waiting for a load) and runs on a worker thread, never the IOLoop;
the operations and the source's scans serialise on :attr:`lock`, which is never held while
waiting for a load. Errors are ``ServingError`` with a client-facing message. Imports nothing of
tornado, Jupyter or TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, TypedDict

from .core import defaults
from .core.archive import unpack_version_archive
from .core.manager import Manager
from .core.model_spec import ModelSpec
from .core.repository import discover_models, list_versions
from .core.routing import CANARY_LABEL, STABLE_LABEL, traffic_split
from .core.serving_state import STATE_FILE_NAME, ModelServingState, ServingStateFile
from .core.source import RepositorySource
from .core.state import ServableState, VersionStatus
from .core.status import Code, ServingError, failed_precondition, invalid_argument, not_found
from .core.validation import (
    check_canary_weight,
    check_label,
    check_model_name,
    check_version,
)

if TYPE_CHECKING:
    from .model_config import ModelConfigEntry, ModelConfigFile, ModelServerConfig

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
# Told (model, "promoted" | "rolled back") after a promote or rollback (add_rollout_listener).
RolloutListener = Callable[[str, str], None]
ROLLOUTS: tuple[str, ...] = ("stable", "canary")


# ----------------------------------------------------------------------------- API records


class WarmupJSON(TypedDict):
    """What a version's warmup ran before it became AVAILABLE."""

    requests: int
    seconds: float


class VersionJSON(TypedDict):
    """A version's status as the management API writes it (one form, every route);
    ``warmup`` is None when no warmup records were replayed."""

    version: int
    state: str
    error_code: str
    error_message: str
    warmup: WarmupJSON | None


class VersionEntry(VersionJSON):
    labels: list[str]
    in_flight: int
    unloaded: bool


class CanaryJSON(TypedDict):
    version: int
    weight: float


class ModelJSON(TypedDict):
    """One model as ``GET P/api/models/{m}`` describes it."""

    name: str
    base_path: str | None
    platform: str | None
    version_policy: str | None
    labels: dict[str, int]
    pending_labels: dict[str, int]
    canary: CanaryJSON | None
    previous_stable: int | None
    unloaded: list[int]
    traffic: dict[str, float]
    versions: list[VersionEntry]


class ModelListJSON(TypedDict):
    models: list[ModelJSON]


class PublishedJSON(TypedDict):
    name: str
    version: int
    rollout: str | None
    model: ModelJSON


class ReloadJSON(TypedDict):
    config_file: str | None
    config_error: str | None
    models: list[ModelJSON]


class SkippedJSON(TypedDict):
    name: str
    reason: str


class TFServingConfigJSON(TypedDict):
    model_config: str
    skipped: list[SkippedJSON]


def version_json(status: VersionStatus) -> VersionJSON:
    error = status.error
    warmup = status.warmup
    return {
        "version": status.version,
        "state": status.state.value,
        "error_code": error.code.name if error is not None else Code.OK.name,
        "error_message": error.message if error is not None else "",
        "warmup": {"requests": warmup.requests, "seconds": warmup.seconds}
        if warmup is not None else None,
    }


@dataclass(frozen=True)
class ControlPlaneOptions:
    """What the control plane needs of the service's options (see ``ServiceOptions``)."""

    model_root: str
    model_config_file: str | None = None
    file_system_poll_wait_seconds: float = defaults.FILE_SYSTEM_POLL_WAIT_SECONDS
    model_config_file_poll_wait_seconds: float = defaults.MODEL_CONFIG_FILE_POLL_WAIT_SECONDS
    signing_key: bytes | None = None
    max_upload_bytes: int = defaults.MAX_UPLOAD_BYTES
    # How long a publish with a rollout waits for the new version to load.
    publish_timeout_seconds: float = 600.0


def _platform_of(version_dir: str, configured: str) -> str:
    """A version with a ``servable.json`` names its own platform (``python``)."""
    from .platforms.python import read_platform

    return read_platform(version_dir) or configured


class ControlPlane:
    """Management operations over one manager and repository (see the module docstring)."""

    def __init__(self, manager: Manager, options: ControlPlaneOptions) -> None:
        self._manager = manager
        self.options = options
        self.model_root = os.path.abspath(options.model_root)
        self._config_file: ModelConfigFile | None = None
        if options.model_config_file:
            self._config_file = self._make_config_file(options.model_config_file)
        # Where models.config is (or would be): the serving state is kept beside it.
        self.config_dir = os.path.dirname(os.path.abspath(
            options.model_config_file or os.path.join(self.model_root, defaults.CONFIG_FILE_NAME)))
        self.state_file = ServingStateFile(os.path.join(self.config_dir, STATE_FILE_NAME))
        # Per-model routing state beyond models.config; changed only under ``lock``.
        self.serving_state: dict[str, ModelServingState] = {}
        # Serialises the operations and the source's scans.
        self.lock = threading.RLock()
        self.source = RepositorySource(
            manager, self.model_specs, options.file_system_poll_wait_seconds,
            platform_of=_platform_of, lock=self.lock,
        )
        self._rollout_listeners: tuple[RolloutListener, ...] = ()
        self._spec_listeners: tuple[Callable[[Sequence[ModelSpec]], None], ...] = ()

    def add_rollout_listener(self, fn: RolloutListener) -> None:
        """Call ``fn(model, what)`` after each successful :meth:`promote` (``"promoted"``) and
        :meth:`rollback` (``"rolled back"``), on the operation's thread, no lock held (the
        service ends the model's shadow traffic there). ``fn`` must be quick; its exceptions
        propagate to the operation's caller, so it must not raise."""
        self._rollout_listeners = (*self._rollout_listeners, fn)

    def _rolled_out(self, name: str, what: str) -> None:
        for fn in self._rollout_listeners:
            fn(name, what)

    def add_spec_listener(self, fn: Callable[[Sequence[ModelSpec]], None]) -> None:
        """Call ``fn(specs)`` with the models' specs each time :meth:`model_specs` reads them
        (each poll of the repository, each operation), so a change of ``models.config`` (an
        edit, a reload) reaches ``fn`` (the service's request log, which applies the models'
        ``logging_config``). On the reading thread, maybe under :attr:`lock`: ``fn`` must be
        quick (compare, apply what changed) and must not raise or call back in here."""
        self._spec_listeners = (*self._spec_listeners, fn)

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        """Read the state file, apply the canary weights, start polling the repository."""
        os.makedirs(self.model_root, exist_ok=True)
        with self.lock:
            self.serving_state = self.state_file.load()
            for name, state in self.serving_state.items():
                if state.canary_weight:
                    self._manager.set_canary_weight(name, state.canary_weight)
        self.source.start()

    def stop(self) -> None:
        """Stop polling (nothing is unloaded here)."""
        self.source.stop()

    def reload(self) -> None:
        """Scan the repository now (blocking)."""
        self.source.poll_once()

    # ------------------------------------------------------------------ configuration

    def _make_config_file(self, path: str) -> ModelConfigFile:
        from .model_config import ModelConfigFile

        return ModelConfigFile(path, self.options.model_config_file_poll_wait_seconds)

    @property
    def config_path(self) -> str | None:
        """The config file in force: the configured one, else ``<model_root>/models.config``
        when it exists, else None (models are discovered)."""
        if self._config_file is not None:
            return self._config_file.path
        default = os.path.join(self.model_root, defaults.CONFIG_FILE_NAME)
        return default if os.path.isfile(default) else None

    @property
    def config_error(self) -> str | None:
        """Why the config file could not be read, if it could not (the last good one is used)."""
        return self._config_file.error if self._config_file is not None else None

    def model_specs(self) -> Sequence[ModelSpec]:
        """The models to serve now (the source's spec provider; runs on its poller thread):
        the config file's or the discovered ones, with the persisted routing state (pinned and
        unloaded versions) applied."""
        if self._config_file is None and self.config_path is not None:
            self._config_file = self._make_config_file(self.config_path)
        specs = (self._config_file.specs() if self._config_file is not None
                 else discover_models(self.model_root))
        specs = [
            dataclasses.replace(
                spec,
                pinned=frozenset({st.previous_stable} if st.previous_stable is not None else ()),
                unloaded=frozenset(st.unloaded),
            ) if (st := self.serving_state.get(spec.name)) is not None else spec
            for spec in specs
        ]
        for fn in self._spec_listeners:
            fn(specs)
        return specs

    def _edit_config(self, edit: Callable[[ModelServerConfig], None]) -> None:
        """Apply ``edit`` to the ``ModelServerConfig`` in force and write it back. Without a
        config file yet, one is created at ``<model_root>/models.config`` listing every
        discovered model first, so switching from discovery to a config file serves exactly
        the same models. Callers hold :attr:`lock`."""
        from .model_config import add_model, config_entry

        config_file = self._config_file or self._make_config_file(
            os.path.join(self.model_root, defaults.CONFIG_FILE_NAME))
        seed = [] if os.path.isfile(config_file.path) else discover_models(self.model_root)

        def seeded(config: ModelServerConfig) -> None:
            for spec in seed:
                if config_entry(config, spec.name) is None:
                    add_model(config, spec.name, spec.base_path, spec.platform)
            edit(config)

        config_file.edit(seeded)
        self._config_file = config_file

    def _spec(self, name: str) -> ModelSpec | None:
        for spec in self.model_specs():
            if spec.name == name:
                return spec
        return None

    def _base_path(self, name: str, spec: ModelSpec | None) -> str:
        return spec.base_path if spec is not None else os.path.join(self.model_root, name)

    # ------------------------------------------------------------------ queries

    def _statuses(self, name: str) -> list[VersionStatus]:
        try:
            return self._manager.version_statuses(name)
        except ServingError:
            return []

    def _available(self, name: str) -> list[int]:
        return sorted(s.version for s in self._statuses(name)
                      if s.state is ServableState.AVAILABLE)

    def describe_model(self, name: str) -> ModelJSON:
        """One model as the management API shows it: versions (newest first) with state,
        error, labels, in-flight handles and whether a user unloaded them; labels; canary;
        traffic split. NOT_FOUND for a model neither configured nor known to the manager."""
        return self._describe(name, self._spec(name))

    def _describe(self, name: str, spec: ModelSpec | None) -> ModelJSON:
        manager = self._manager
        statuses = self._statuses(name)
        if spec is None and not statuses:
            raise not_found(f"Could not find model {name}")
        labels = manager.labels(name)
        refcounts = manager.refcounts(name)
        weight = manager.canary_weight(name)
        state = self.serving_state.get(name, ModelServingState())
        by_version: dict[int, list[str]] = {}
        for label, version in sorted(labels.items()):
            by_version.setdefault(version, []).append(label)
        available = {s.version for s in statuses if s.state is ServableState.AVAILABLE}
        versions: list[VersionEntry] = [{
            **version_json(status),
            "labels": by_version.get(status.version, []),
            "in_flight": refcounts.get(status.version, 0),
            "unloaded": status.version in state.unloaded,
        } for status in statuses]
        canary = labels.get(CANARY_LABEL)
        return {
            "name": name,
            "base_path": spec.base_path if spec is not None else None,
            "platform": spec.platform if spec is not None else None,
            "version_policy": str(spec.version_policy) if spec is not None else None,
            "labels": dict(sorted(labels.items())),
            "pending_labels": dict(sorted(manager.pending_labels(name).items())),
            "canary": {"version": canary, "weight": weight} if canary is not None else None,
            "previous_stable": state.previous_stable,
            "unloaded": sorted(state.unloaded),
            "traffic": {str(v): share for v, share in
                        sorted(traffic_split(labels, weight, available).items())},
            "versions": versions,
        }

    def list_models(self) -> ModelListJSON:
        """Every configured or known model (``GET P/api/models``)."""
        # one look at the specs (a scan of the repository when no config file lists the models)
        specs = {s.name: s for s in self.model_specs()}
        models = []
        for name in sorted(set(self._manager.model_names()) | set(specs)):
            try:
                models.append(self._describe(name, specs.get(name)))
            except ServingError as exc:  # forgotten between the two looks
                if exc.code != Code.NOT_FOUND:
                    raise
        return {"models": models}

    # ------------------------------------------------------------------ publishing

    def publish_version(self, name: str, archive: bytes | BinaryIO, version: int | None = None,
                        rollout: str | None = None, weight: float | None = None) -> PublishedJSON:
        """Publish a packed version directory (a tar archive, gzip or not) as version
        ``version`` of model ``name`` (default: one more than the highest version known, 1 for
        a new model), and roll it out.

        The archive is unpacked (``core.archive``: no absolute paths, ``..``, links or devices)
        into a hidden directory in the model's directory, checked to be a SavedModel or a
        ``python`` servable (which is signed, so the server will unpickle it), then renamed into
        place: the poller never sees half a version. A model the config file does not list yet
        is added to it. The repository is scanned at once, so loading starts now.

        ``rollout`` None: return at once (the version usually still LOADING). ``"stable"`` or
        ``"canary"``: the version serving unversioned requests now, if any, is labelled
        ``stable`` first (so it stays loaded), then this waits until the new version is
        AVAILABLE and makes it ``stable`` (promote: ``rollback`` puts the old one back) or the
        canary with ``weight`` of the traffic. The server sequences all of it, so a client that
        goes away midway leaves nothing half-done. A version that fails to load is
        FAILED_PRECONDITION with its load error (it gets no label).
        ALREADY_EXISTS if the version is on disk; INVALID_ARGUMENT for a bad name, rollout,
        weight or archive."""
        check_model_name(name)
        if version is not None:
            check_version(version)
        if rollout is not None and rollout not in ROLLOUTS:
            raise invalid_argument(
                f"Invalid rollout {rollout!r}: use one of {', '.join(ROLLOUTS)}")
        if (weight is not None) != (rollout == "canary"):
            raise invalid_argument("A canary weight needs rollout=canary" if weight is not None
                                   else "rollout=canary needs a canary weight")
        canary_weight = check_canary_weight(weight) if weight is not None else 0.0
        with self.lock:
            spec = self._spec(name)
            serving = None
            if rollout is not None:
                serving = self.serving_version(name)
                if serving is not None and STABLE_LABEL not in self._manager.labels(name):
                    self._set_labels(name, {**self._manager.labels(name),
                                            STABLE_LABEL: serving})
            version = self._unpack(name, spec, archive, version)
            if spec is None and self.uses_config_file():
                from .model_config import add_model

                base = self._base_path(name, None)
                self._edit_config(lambda config: add_model(config, name, base, "tensorflow"))
            state = self.serving_state.get(name)
            if state is not None and version in state.unloaded:
                state.unloaded.discard(version)
                self.state_file.save(self.serving_state)
        self.reload()
        if rollout is not None:
            self._wait_available(name, version)
            if serving is not None:
                if rollout == "canary":
                    self.set_canary(name, canary_weight, version)
                else:
                    self.promote(name, version)
        return {"name": name, "version": version, "rollout": rollout,
                "model": self.describe_model(name)}

    def serving_version(self, name: str) -> int | None:
        """The version that takes all (or the stable share of) unversioned traffic now."""
        labels = self._manager.labels(name)
        if STABLE_LABEL in labels:
            return labels[STABLE_LABEL]
        split = traffic_split(labels, self._manager.canary_weight(name), self._available(name))
        return max(split, default=None)

    def _unpack(self, name: str, spec: ModelSpec | None, archive: bytes | BinaryIO,
                version: int | None) -> int:
        """Unpack ``archive`` and rename it into place as ``version`` (or the next one)."""
        base = self._base_path(name, spec)
        os.makedirs(base, exist_ok=True)
        on_disk = list_versions(base)
        if version is None:
            known = set(on_disk) | {s.version for s in self._statuses(name)}
            version = max(known, default=0) + 1
        if version in on_disk:
            raise ServingError(Code.ALREADY_EXISTS,
                               f"Version {version} of model {name} already exists")
        staging = tempfile.mkdtemp(prefix=".upload-", dir=base)
        try:
            unpack_version_archive(archive, staging, max_bytes=self.options.max_upload_bytes)
            self._check_version_dir(staging)
            final = os.path.join(base, str(version))
            if os.path.exists(final):
                raise ServingError(Code.ALREADY_EXISTS,
                                   f"Version {version} of model {name} already exists")
            os.chmod(staging, 0o755)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return version

    def _check_version_dir(self, path: str) -> None:
        from .platforms.python import SERVABLE_JSON, sign_python_version

        if os.path.isfile(os.path.join(path, SERVABLE_JSON)):
            if self.options.signing_key is None:
                raise failed_precondition(
                    "This server does not accept pickled (python) servables")
            sign_python_version(path, self.options.signing_key)
            return
        if not any(os.path.isfile(os.path.join(path, f)) for f in SAVED_MODEL_FILES):
            raise invalid_argument(
                "The archive is not a SavedModel version directory (no saved_model.pb at its "
                "top level) nor a python servable (no servable.json)")

    def _wait_available(self, name: str, version: int) -> None:
        """Block (no lock held) until ``version`` is AVAILABLE; FAILED_PRECONDITION with the
        load error if it ends instead, DEADLINE_EXCEEDED after the publish timeout."""
        try:
            status = self._manager.wait_for(
                name, version, (ServableState.AVAILABLE, ServableState.END),
                self.options.publish_timeout_seconds)
        except TimeoutError:
            raise ServingError(
                Code.DEADLINE_EXCEEDED,
                f"Version {version} of model {name} was not AVAILABLE after "
                f"{self.options.publish_timeout_seconds:.0f}s") from None
        if status.state is not ServableState.AVAILABLE:
            message = (status.error.message if status.error is not None
                       else "it was unloaded before it became available")
            raise failed_precondition(
                f"Version {version} of model {name} failed to load: {message}")

    def uses_config_file(self) -> bool:
        """True when a config file decides which models are served (else discovered)."""
        return self.config_path is not None

    # ------------------------------------------------------------------ labels, canary

    def _known_model(self, name: str) -> None:
        check_model_name(name)
        if name not in self._manager.model_names() and self._spec(name) is None:
            raise not_found(f"Could not find model {name}")

    def _edit_entry(self, name: str, edit: Callable[[ModelConfigEntry], None]) -> None:
        """Apply ``edit`` to model ``name``'s entry of the config file (added first when the
        config does not list the model yet) and write it back. Callers hold :attr:`lock`."""
        from .model_config import add_model, config_entry

        base = self._base_path(name, self._spec(name))

        def edit_config(config: ModelServerConfig) -> None:
            entry = config_entry(config, name)
            if entry is None:
                add_model(config, name, base, "tensorflow")
                entry = config_entry(config, name)
                assert entry is not None  # just added
            edit(entry)

        self._edit_config(edit_config)

    def edit_model_entry(self, name: str, edit: Callable[[ModelConfigEntry], None]) -> None:
        """Change model ``name``'s entry of ``models.config`` with ``edit`` (its
        ``logging_config``, say), creating the file as a label change does; the spec
        listeners hear the new specs before this returns. NOT_FOUND for an unknown model;
        INVALID_ARGUMENT (nothing written) when the result does not parse."""
        self._known_model(name)
        with self.lock:
            self._edit_entry(name, edit)
            self.model_specs()

    def _write_labels(self, name: str) -> None:
        """Persist the manager's labels (and pending ones) of ``name`` to the config file."""
        labels = {**self._manager.pending_labels(name), **self._manager.labels(name)}

        def edit(entry: ModelConfigEntry) -> None:
            entry.version_labels.clear()
            entry.version_labels.update(labels)

        self._edit_entry(name, edit)

    def _replace_labels(self, name: str, labels: dict[str, int]) -> None:
        """Make ``labels`` the model's labels, keeping the config's pending ones pending."""
        pending = {k: v for k, v in self._manager.pending_labels(name).items()
                   if k not in labels}
        self._manager.set_labels(name, {**pending, **labels}, pending_ok=True)

    def _set_labels(self, name: str, labels: dict[str, int]) -> None:
        """Make ``labels`` the model's labels and write them to the config; on a failure to
        write, the labels before are put back."""
        before = self._manager.labels(name)
        self._replace_labels(name, labels)
        try:
            self._write_labels(name)
        except BaseException:
            self._replace_labels(name, before)
            raise

    def _state(self, name: str) -> ModelServingState:
        return self.serving_state.setdefault(name, ModelServingState())

    def _save_state(self) -> None:
        self.state_file.save(self.serving_state)

    def set_label(self, name: str, label: str, version: int) -> ModelJSON:
        """Point ``label`` at ``version`` (TF Serving's rule: it must be AVAILABLE unless the
        server allows labels for unavailable versions: FAILED_PRECONDITION otherwise) and write
        it to ``models.config``."""
        self._known_model(name)
        check_label(label)
        check_version(version)
        with self.lock:
            before = self._manager.labels(name)
            self._manager.set_label(name, label, version)
            try:
                self._write_labels(name)
            except BaseException:
                self._replace_labels(name, before)
                raise
        return self.describe_model(name)

    def remove_label(self, name: str, label: str) -> ModelJSON:
        """Remove ``label`` from the model (and from ``models.config``); NOT_FOUND if unset."""
        self._known_model(name)
        check_label(label)
        with self.lock:
            if label not in self._manager.labels(name) and \
                    label not in self._manager.pending_labels(name):
                raise not_found(f"Model {name} has no label {label}")
            self._manager.remove_label(name, label)
            if label == CANARY_LABEL:
                self._manager.set_canary_weight(name, 0.0)
                self._state(name).canary_weight = 0.0
                self._save_state()
            self._write_labels(name)
        return self.describe_model(name)

    def set_canary(self, name: str, weight: float, version: int | None = None) -> ModelJSON:
        """Send ``weight`` of the unversioned requests to ``version`` (default: the highest
        AVAILABLE version that is not ``stable``) as the ``canary`` label, the rest to
        ``stable``. Without a ``stable`` label, the version serving now (the highest other
        AVAILABLE one) becomes ``stable`` first. FAILED_PRECONDITION when there is no such pair
        of versions or the canary version is not AVAILABLE."""
        self._known_model(name)
        weight = check_canary_weight(weight)
        if version is not None:
            check_version(version)
        with self.lock:
            available = self._available(name)
            labels = self._manager.labels(name)
            stable = labels.get(STABLE_LABEL)
            if version is None:
                candidates = [v for v in available if v != stable]
                if not candidates:
                    raise failed_precondition(
                        f"Model {name} has no AVAILABLE version to make the canary")
                version = candidates[-1]
            if version not in available:
                raise failed_precondition(
                    f"Version {version} of model {name} is not AVAILABLE; it cannot be the "
                    "canary")
            if stable is None:
                others = [v for v in available if v != version]
                if not others:
                    raise failed_precondition(
                        f"Model {name} has no other AVAILABLE version to stay stable beside "
                        f"canary version {version}")
                stable = others[-1]
            if stable == version:
                raise failed_precondition(
                    f"Version {version} of model {name} is already stable; publish a new "
                    "version to canary it")
            before_weight = self._manager.canary_weight(name)
            self._set_labels(name, {**labels, STABLE_LABEL: stable, CANARY_LABEL: version})
            self._manager.set_canary_weight(name, weight)
            try:
                self._state(name).canary_weight = weight
                self._save_state()
            except BaseException:
                self._set_labels(name, labels)
                self._manager.set_canary_weight(name, before_weight)
                raise
        return self.describe_model(name)

    def promote(self, name: str, version: int | None = None) -> ModelJSON:
        """Make the canary (or ``version``, which must be AVAILABLE) ``stable`` and end the
        canary; the old stable is remembered (and kept loaded) for :meth:`rollback`.
        FAILED_PRECONDITION without a canary, or for a version that is not AVAILABLE."""
        self._known_model(name)
        if version is not None:
            check_version(version)
        with self.lock:
            if version is None:
                version = self._manager.labels(name).get(CANARY_LABEL)
                if version is None:
                    raise failed_precondition(f"Model {name} has no canary to promote")
            elif version not in self._available(name):
                raise failed_precondition(
                    f"Version {version} of model {name} is not AVAILABLE; it cannot be stable")
            self._make_stable(name, version)
        self.reload()
        self._rolled_out(name, "promoted")
        return self.describe_model(name)

    def _make_stable(self, name: str, version: int) -> None:
        """``version`` becomes ``stable`` and the canary ends; the old stable is remembered as
        the previous one (kept loaded) for :meth:`rollback`. Callers hold :attr:`lock`."""
        labels = self._manager.labels(name)
        new_labels = {k: v for k, v in labels.items() if k != CANARY_LABEL}
        new_labels[STABLE_LABEL] = version
        self._replace_labels(name, new_labels)
        self._manager.set_canary_weight(name, 0.0)
        state = self._state(name)
        previous = labels.get(STABLE_LABEL)
        if previous is not None and previous != version:
            state.previous_stable = previous
        state.canary_weight = 0.0
        self._write_labels(name)
        self._save_state()

    def rollback(self, name: str) -> ModelJSON:
        """End a running canary (``stable`` keeps all traffic); with no canary, put the
        previous stable version back. FAILED_PRECONDITION when there is nothing to roll back
        or the previous version is no longer AVAILABLE."""
        self._known_model(name)
        with self.lock:
            labels = self._manager.labels(name)
            state = self._state(name)
            if CANARY_LABEL in labels:
                new_labels = {k: v for k, v in labels.items() if k != CANARY_LABEL}
            elif state.previous_stable is not None:
                previous = state.previous_stable
                if previous not in self._available(name):
                    raise failed_precondition(
                        f"Version {previous} of model {name} is not AVAILABLE; cannot roll back")
                new_labels = {**labels, STABLE_LABEL: previous}
                state.previous_stable = None
            else:
                raise failed_precondition(f"Model {name} has no canary and no previous stable "
                                          "version to roll back to")
            self._replace_labels(name, new_labels)
            self._manager.set_canary_weight(name, 0.0)
            state.canary_weight = 0.0
            self._write_labels(name)
            self._save_state()
        self.reload()
        self._rolled_out(name, "rolled back")
        return self.describe_model(name)

    # ------------------------------------------------------------------ load, unload

    def unload_version(self, name: str, version: int) -> ModelJSON:
        """Stop serving ``version`` (its files stay on disk; :meth:`load_version` brings it
        back). In-flight requests finish first (the manager unloads once its handles are
        released). FAILED_PRECONDITION while a label points at it."""
        self._known_model(name)
        check_version(version)
        with self.lock:
            spec = self._spec(name)
            on_disk = list_versions(spec.base_path) if spec is not None else {}
            known = {s.version for s in self._statuses(name)}
            if version not in on_disk and version not in known:
                raise not_found(f"Could not find version {version} of model {name}")
            carrying = sorted(label for label, v in {**self._manager.pending_labels(name),
                                                     **self._manager.labels(name)}.items()
                              if v == version)
            if carrying:
                raise failed_precondition(
                    f"Version {version} of model {name} carries the label(s) "
                    f"{', '.join(carrying)}; move or remove them first (promote, rollback or "
                    "set the label)")
            state = self._state(name)
            state.unloaded.add(version)
            if state.previous_stable == version:
                state.previous_stable = None
            self._save_state()
        self.reload()
        return self.describe_model(name)

    def load_version(self, name: str, version: int) -> ModelJSON:
        """Undo :meth:`unload_version`: the version is aspired again if its policy wants it
        (or a label or the previous-stable pin names it)."""
        self._known_model(name)
        check_version(version)
        with self.lock:
            state = self._state(name)
            if version not in state.unloaded:
                raise failed_precondition(f"Version {version} of model {name} was not unloaded")
            state.unloaded.discard(version)
            self._save_state()
        self.reload()
        return self.describe_model(name)

    def reload_config(self) -> ReloadJSON:
        """Re-read the config file now and scan the repository; the models afterwards. The
        config's error, if it does not parse, is in ``config_error`` (the last good one is
        used)."""
        with self.lock:
            if self._config_file is not None:
                self._config_file.invalidate()
        self.reload()
        return {"config_file": self.config_path, "config_error": self.config_error,
                **self.list_models()}

    def replace_model_config(self, config_text: str, timeout: float | None) -> ReloadJSON:
        """TF Serving's ``HandleReloadConfigRequest`` with a ``model_config_list``: from now
        on serve exactly the models of ``config_text`` (a ModelServerConfig in text format).

        The config is checked whole (INVALID_ARGUMENT, nothing changed, if it does not parse
        or names a model badly), then written over the config file in force (the configured
        one, else ``<model_root>/models.config``), so that a restart or a poll of the file
        serves the same models; models it no longer lists are unloaded. Then, as TF Serving's
        ``ServerCore::ReloadConfig``, wait until every listed model has settled (see
        :meth:`wait_settled`): DEADLINE_EXCEEDED after ``timeout`` seconds (None: no
        bound), and a model with nothing AVAILABLE and a failed load answers with that load's
        error. Blocking."""
        from .model_config import parse_config_proto

        config = parse_config_proto(config_text)

        def replace(current: ModelServerConfig) -> None:
            current.Clear()
            current.MergeFrom(config)

        with self.lock:
            config_file = self._config_file or self._make_config_file(
                os.path.join(self.model_root, defaults.CONFIG_FILE_NAME))
            specs = config_file.edit(replace)  # checked whole before anything is written
            self._config_file = config_file
        self.reload()
        names = [spec.name for spec in specs]
        if not self.wait_settled(names, timeout):
            raise ServingError(Code.DEADLINE_EXCEEDED,
                               "Timed out waiting for the reloaded models to load")
        for name in names:
            statuses = self._statuses(name)
            if any(s.state is ServableState.AVAILABLE for s in statuses):
                continue
            failed = [s.error for s in statuses if s.error is not None]
            if failed:
                raise failed[-1]
        return {"config_file": self.config_path, "config_error": self.config_error,
                **self.list_models()}

    def wait_settled(self, names: Sequence[str] | None, timeout: float | None) -> bool:
        """Block until no version of the models ``names`` (None: every model) is still
        loading: each is AVAILABLE, or END with its error. False if ``timeout`` seconds (None:
        no bound) pass first. Call :meth:`reload` before, so the versions on disk are known.
        Blocking."""
        deadline = time.monotonic() + (threading.TIMEOUT_MAX / 2 if timeout is None
                                       else timeout)
        pending = (ServableState.START, ServableState.LOADING)
        for name in (self._manager.model_names() if names is None else names):
            try:
                statuses = self._manager.version_statuses(name)
            except ServingError:
                continue
            for status in statuses:
                if status.state not in pending:
                    continue
                try:
                    self._manager.wait_for(name, status.version,
                                           (ServableState.AVAILABLE, ServableState.END),
                                           max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    return False
        return True

    def tfserving_config(self) -> TFServingConfigJSON:
        """A ModelServerConfig for ``tensorflow_model_server --model_config_file``, serving
        what this server serves now (``GET P/api/config/tfserving``).

        ``models.config`` is the repository's own config, read by this server with one
        extension: versions a label names are always loaded. TF Serving loads only what the
        version policy picks and refuses to start when a label names a version it did not
        load, so this hand-off config pins each model to ``specific`` versions: those AVAILABLE
        now (which every label names). Models served by the ``python`` platform cannot be
        served by TF Serving and are listed in ``skipped`` with the reason; so are models with
        nothing AVAILABLE. A model's ``logging_config`` (request logging) is left out: stock
        ``tensorflow_model_server`` links no request logger, and any ``logging_config`` makes
        it refuse the whole config ("No request-logger-creator provided")."""
        from google.protobuf import text_format

        from .model_config import ModelServerConfig, add_model
        from .platforms.python import read_platform

        config = ModelServerConfig()
        config.model_config_list.SetInParent()
        skipped: list[SkippedJSON] = []
        with self.lock:
            for spec in sorted(self.model_specs(), key=lambda s: s.name):
                available = self._available(spec.name)
                on_disk = list_versions(spec.base_path)
                python = [v for v in available
                          if v in on_disk and read_platform(on_disk[v]) == "python"]
                versions = [v for v in available if v not in python]
                if not versions:
                    skipped.append({"name": spec.name, "reason": (
                        "served by the python platform, which TF Serving cannot load" if python
                        else "no version is AVAILABLE")})
                    continue
                add_model(config, spec.name, spec.base_path, spec.platform)
                entry = config.model_config_list.config[-1]
                entry.model_version_policy.specific.versions.extend(versions)
                entry.version_labels.update(
                    {k: v for k, v in self._manager.labels(spec.name).items() if v in versions})
        return {"model_config": text_format.MessageToString(config), "skipped": skipped}

