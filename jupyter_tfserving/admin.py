"""Management operations: publish versions, labels, canary, promote, rollback, unload.

The control plane beside the data plane of ``ModelService`` (the REST routes under ``P/api/``
and the embedded server call these; ``serve()`` in a kernel reaches them over REST). The
repository on disk stays the source of truth (DESIGN §2):

- a published version is unpacked into a hidden directory beside its final place, checked, and
  renamed into ``<base_path>/<version>`` (atomic: a half-written version is never seen);
- labels (``stable``, ``canary``, any name) are written to ``models.config`` in TF Serving's
  format; without a config file yet, the first label change creates one listing every model;
- the canary weight, the previous stable version (kept loaded for ``rollback``) and the versions
  a user unloaded go to the JSON state file beside it (``core.serving_state``).

So a restarted server comes back with the same models, versions, labels and traffic split.

Routing (DESIGN §3): ``canary(weight)`` sends that fraction of unversioned requests to the
``canary`` label and the rest to ``stable``; ``promote`` makes the canary stable (the old stable
is remembered); ``rollback`` ends a running canary, or, with none, puts the previous stable back.

Threads: every function blocks (file I/O, unpacking, waiting for nothing else) and must run on a
worker thread, never the IOLoop. They serialise on ``service.admin_lock``. Errors are
``ServingError`` with a client-facing message.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, BinaryIO

from .core.archive import unpack_version_archive
from .core.manager import CANARY_LABEL, STABLE_LABEL
from .core.model_spec import ModelSpec, check_model_name
from .core.repository import list_versions
from .core.serving_state import ModelServingState
from .core.state import ServableState, VersionStatus
from .core.status import Code, ServingError, failed_precondition, invalid_argument, not_found
from .service import ModelService

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_MAX_VERSION = 2**63 - 1


# ----------------------------------------------------------------------------- queries


def _status_json(status: VersionStatus) -> dict[str, Any]:
    error = status.error
    return {
        "version": status.version,
        "state": status.state.value,
        "error_code": error.code.name if error is not None else Code.OK.name,
        "error_message": error.message if error is not None else "",
    }


def traffic_split(labels: dict[str, int], canary_weight: float,
                  available: set[int]) -> dict[int, float]:
    """The share of unversioned requests each version gets under DESIGN §3's routing."""
    stable = labels.get(STABLE_LABEL)
    if stable is None:
        return {max(available): 1.0} if available else {}
    if stable not in available:
        return {}
    canary = labels.get(CANARY_LABEL)
    if canary is not None and canary != stable and canary in available and canary_weight > 0:
        split = {stable: 1.0 - canary_weight, canary: canary_weight}
        return {v: share for v, share in split.items() if share > 0}
    return {stable: 1.0}


def _spec(service: ModelService, name: str) -> ModelSpec | None:
    for spec in service.model_specs():
        if spec.name == name:
            return spec
    return None


def describe_model(service: ModelService, name: str) -> dict[str, Any]:
    """One model as the management API shows it: versions (newest first) with state, error,
    labels, in-flight handles and whether a user unloaded them; labels; canary; traffic split.
    NOT_FOUND for a model that is neither configured nor known to the manager."""
    return _describe(service, name, _spec(service, name))


def _describe(service: ModelService, name: str, spec: ModelSpec | None) -> dict[str, Any]:
    manager = service.manager
    try:
        statuses = manager.version_statuses(name)
    except ServingError:
        statuses = []
    if spec is None and not statuses:
        raise not_found(f"Could not find model {name}")
    labels = manager.labels(name)
    pending = manager.pending_labels(name)
    refcounts = manager.refcounts(name)
    state = service.serving_state.get(name, ModelServingState())
    by_version: dict[int, list[str]] = {}
    for label, version in sorted(labels.items()):
        by_version.setdefault(version, []).append(label)
    available = {s.version for s in statuses if s.state is ServableState.AVAILABLE}
    versions = []
    for status in statuses:
        entry = _status_json(status)
        entry["labels"] = by_version.get(status.version, [])
        entry["in_flight"] = refcounts.get(status.version, 0)
        entry["unloaded"] = status.version in state.unloaded
        versions.append(entry)
    canary = labels.get(CANARY_LABEL)
    return {
        "name": name,
        "base_path": spec.base_path if spec is not None else None,
        "platform": spec.platform if spec is not None else None,
        "version_policy": str(spec.version_policy) if spec is not None else None,
        "labels": {k: v for k, v in sorted(labels.items())},
        "pending_labels": {k: v for k, v in sorted(pending.items())},
        "canary": {"version": canary, "weight": manager.canary_weight(name)}
        if canary is not None else None,
        "previous_stable": state.previous_stable,
        "unloaded": sorted(state.unloaded),
        "traffic": {str(v): share for v, share in sorted(
            traffic_split(labels, manager.canary_weight(name), available).items())},
        "versions": versions,
    }


def list_models(service: ModelService) -> dict[str, Any]:
    """Every configured or known model (``GET P/api/models``)."""
    # one look at the specs (a scan of the repository when no config file lists the models)
    specs = {s.name: s for s in service.model_specs()}
    models = []
    for name in sorted(set(service.manager.model_names()) | set(specs)):
        try:
            models.append(_describe(service, name, specs.get(name)))
        except ServingError as exc:  # forgotten between the two looks
            if exc.code != Code.NOT_FOUND:
                raise
    return {"models": models}


# ----------------------------------------------------------------------------- publishing


def _check_version_number(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= _MAX_VERSION:
        raise invalid_argument(f"Invalid version {version!r}: an integer >= 0 is required")
    return version


def _check_label_name(label: object) -> str:
    if not isinstance(label, str) or not label or len(label) > 128 or not all(
            c.isascii() and (c.isalnum() or c in "_-.") for c in label):
        raise invalid_argument(
            f"Invalid label {label!r}: use 1-128 letters, digits, '_', '-' or '.'")
    return label


def publish_version(service: ModelService, name: str, archive: bytes | BinaryIO,
                    version: int | None = None) -> dict[str, Any]:
    """Publish a packed version directory (a tar archive, gzip or not) as version ``version``
    of model ``name`` (default: one more than the highest version on disk, 1 for a new model).

    The archive is unpacked (refusing absolute paths, ``..``, links and devices) into a hidden
    directory in the model's directory, checked to be a SavedModel or a ``python`` servable
    (which is signed, so the server will unpickle it), then renamed into place: the poller never
    sees half a version. A model the config file does not list yet is added to it. The
    repository is scanned at once, so loading starts now. Returns the model's description
    (the version usually still LOADING: callers poll ``describe_model``).
    ALREADY_EXISTS if the version is on disk; INVALID_ARGUMENT for a bad name or archive."""
    check_model_name(name)
    if version is not None:
        _check_version_number(version)
    with service.admin_lock:
        spec = _spec(service, name)
        base = spec.base_path if spec is not None else os.path.join(service.model_root, name)
        os.makedirs(base, exist_ok=True)
        on_disk = list_versions(base)
        if version is None:
            known = set(on_disk)
            try:
                known |= {s.version for s in service.manager.version_statuses(name)}
            except ServingError:
                pass
            version = max(known, default=0) + 1
        if version in on_disk:
            raise ServingError(Code.ALREADY_EXISTS,
                               f"Version {version} of model {name} already exists")
        staging = tempfile.mkdtemp(prefix=".upload-", dir=base)
        try:
            unpack_version_archive(archive, staging, max_bytes=service.options.max_upload_bytes)
            _check_version_dir(service, staging)
            final = os.path.join(base, str(version))
            if os.path.exists(final):
                raise ServingError(Code.ALREADY_EXISTS,
                                   f"Version {version} of model {name} already exists")
            os.chmod(staging, 0o755)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if spec is None and service.uses_config_file():
            from .model_config import add_model

            service.edit_config(lambda config: add_model(config, name, base, "tensorflow"))
        state = service.serving_state.get(name)
        if state is not None and version in state.unloaded:
            state.unloaded.discard(version)
            service.state_file.save(service.serving_state)
    service.reload()
    return {"name": name, "version": version, "model": describe_model(service, name)}


def _check_version_dir(service: ModelService, path: str) -> None:
    from .platforms.python import SERVABLE_JSON, sign_python_version

    if os.path.isfile(os.path.join(path, SERVABLE_JSON)):
        if service.options.signing_key is None:
            raise failed_precondition("This server does not accept pickled (python) servables")
        sign_python_version(path, service.options.signing_key)
        return
    if not any(os.path.isfile(os.path.join(path, f)) for f in SAVED_MODEL_FILES):
        raise invalid_argument(
            "The archive is not a SavedModel version directory (no saved_model.pb at its top "
            "level) nor a python servable (no servable.json)")


# ----------------------------------------------------------------------------- labels, canary


def _known_model(service: ModelService, name: str) -> None:
    check_model_name(name)
    if name not in service.manager.model_names() and _spec(service, name) is None:
        raise not_found(f"Could not find model {name}")


def _write_labels(service: ModelService, name: str) -> None:
    """Persist the manager's labels (and pending ones) of ``name`` to the config file."""
    from .model_config import add_model, config_entry

    labels = {**service.manager.pending_labels(name), **service.manager.labels(name)}

    def edit(config) -> None:
        entry = config_entry(config, name)
        if entry is None:
            spec = _spec(service, name)
            base = spec.base_path if spec is not None else os.path.join(service.model_root, name)
            add_model(config, name, base, "tensorflow")
            entry = config_entry(config, name)
        entry.version_labels.clear()
        entry.version_labels.update(labels)

    service.edit_config(edit)


def _replace_labels(service: ModelService, name: str, labels: dict[str, int]) -> None:
    """Make ``labels`` the model's labels, keeping the config's pending ones pending."""
    pending = {k: v for k, v in service.manager.pending_labels(name).items() if k not in labels}
    service.manager.set_labels(name, {**pending, **labels}, pending_ok=True)


def _state(service: ModelService, name: str) -> ModelServingState:
    return service.serving_state.setdefault(name, ModelServingState())


def _save_state(service: ModelService) -> None:
    service.state_file.save(service.serving_state)


def set_label(service: ModelService, name: str, label: str, version: int) -> dict[str, Any]:
    """Point ``label`` at ``version`` (TF Serving's rule: it must be AVAILABLE unless the
    server allows labels for unavailable versions: FAILED_PRECONDITION otherwise) and write it
    to ``models.config``."""
    _known_model(service, name)
    _check_label_name(label)
    _check_version_number(version)
    with service.admin_lock:
        before = service.manager.labels(name)
        service.manager.set_label(name, label, version)
        try:
            _write_labels(service, name)
        except BaseException:
            _replace_labels(service, name, before)
            raise
    return describe_model(service, name)


def remove_label(service: ModelService, name: str, label: str) -> dict[str, Any]:
    """Remove ``label`` from the model (and from ``models.config``); NOT_FOUND if unset."""
    _known_model(service, name)
    _check_label_name(label)
    with service.admin_lock:
        if label not in service.manager.labels(name) and \
                label not in service.manager.pending_labels(name):
            raise not_found(f"Model {name} has no label {label}")
        service.manager.remove_label(name, label)
        if label == CANARY_LABEL:
            service.manager.set_canary_weight(name, 0.0)
            _state(service, name).canary_weight = 0.0
            _save_state(service)
        _write_labels(service, name)
    return describe_model(service, name)


def _available_versions(service: ModelService, name: str) -> list[int]:
    try:
        statuses = service.manager.version_statuses(name)
    except ServingError:
        return []
    return sorted(s.version for s in statuses if s.state is ServableState.AVAILABLE)


def _check_weight(weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
            not 0.0 <= float(weight) <= 1.0:
        raise invalid_argument(f"Canary weight must be a number between 0 and 1, got {weight!r}")
    return float(weight)


def set_canary(service: ModelService, name: str, weight: float,
               version: int | None = None) -> dict[str, Any]:
    """Send ``weight`` of the unversioned requests to ``version`` (default: the highest
    AVAILABLE version that is not ``stable``) as the ``canary`` label, the rest to ``stable``.
    Without a ``stable`` label, the version serving now (the highest other AVAILABLE one)
    becomes ``stable`` first. FAILED_PRECONDITION when there is no such pair of versions or the
    canary version is not AVAILABLE."""
    _known_model(service, name)
    weight = _check_weight(weight)
    if version is not None:
        _check_version_number(version)
    with service.admin_lock:
        available = _available_versions(service, name)
        labels = service.manager.labels(name)
        stable = labels.get(STABLE_LABEL)
        if version is None:
            candidates = [v for v in available if v != stable]
            if not candidates:
                raise failed_precondition(
                    f"Model {name} has no AVAILABLE version to make the canary")
            version = candidates[-1]
        if version not in available:
            raise failed_precondition(
                f"Version {version} of model {name} is not AVAILABLE; it cannot be the canary")
        if stable is None:
            others = [v for v in available if v != version]
            if not others:
                raise failed_precondition(
                    f"Model {name} has no other AVAILABLE version to stay stable beside "
                    f"canary version {version}")
            stable = others[-1]
        if stable == version:
            raise failed_precondition(
                f"Version {version} of model {name} is already stable; publish a new version to "
                "canary it")
        before, before_weight = labels, service.manager.canary_weight(name)
        _replace_labels(service, name, {**labels, STABLE_LABEL: stable, CANARY_LABEL: version})
        service.manager.set_canary_weight(name, weight)
        try:
            _write_labels(service, name)
            _state(service, name).canary_weight = weight
            _save_state(service)
        except BaseException:
            _replace_labels(service, name, before)
            service.manager.set_canary_weight(name, before_weight)
            raise
    return describe_model(service, name)


def promote(service: ModelService, name: str) -> dict[str, Any]:
    """Make the canary ``stable``; the old stable is remembered (and kept loaded) for
    :func:`rollback`. FAILED_PRECONDITION without a canary."""
    _known_model(service, name)
    with service.admin_lock:
        labels = service.manager.labels(name)
        canary = labels.get(CANARY_LABEL)
        if canary is None:
            raise failed_precondition(f"Model {name} has no canary to promote")
        new_labels = {k: v for k, v in labels.items() if k != CANARY_LABEL}
        new_labels[STABLE_LABEL] = canary
        _replace_labels(service, name, new_labels)
        service.manager.set_canary_weight(name, 0.0)
        state = _state(service, name)
        previous = labels.get(STABLE_LABEL)
        state.previous_stable = previous if previous != canary else state.previous_stable
        state.canary_weight = 0.0
        _write_labels(service, name)
        _save_state(service)
    service.reload()
    return describe_model(service, name)


def rollback(service: ModelService, name: str) -> dict[str, Any]:
    """End a running canary (``stable`` keeps all traffic); with no canary, put the previous
    stable version back. FAILED_PRECONDITION when there is nothing to roll back or the previous
    version is no longer AVAILABLE."""
    _known_model(service, name)
    with service.admin_lock:
        labels = service.manager.labels(name)
        state = _state(service, name)
        if CANARY_LABEL in labels:
            new_labels = {k: v for k, v in labels.items() if k != CANARY_LABEL}
        elif state.previous_stable is not None:
            previous = state.previous_stable
            if previous not in _available_versions(service, name):
                raise failed_precondition(
                    f"Version {previous} of model {name} is not AVAILABLE; cannot roll back")
            new_labels = {**labels, STABLE_LABEL: previous}
            state.previous_stable = None
        else:
            raise failed_precondition(f"Model {name} has no canary and no previous stable "
                                      "version to roll back to")
        _replace_labels(service, name, new_labels)
        service.manager.set_canary_weight(name, 0.0)
        state.canary_weight = 0.0
        _write_labels(service, name)
        _save_state(service)
    service.reload()
    return describe_model(service, name)


# ----------------------------------------------------------------------------- load, unload


def unload_version(service: ModelService, name: str, version: int) -> dict[str, Any]:
    """Stop serving ``version`` (its files stay on disk; :func:`load_version` brings it back).
    In-flight requests finish first (the manager unloads once its handles are released).
    FAILED_PRECONDITION while a label points at it."""
    _known_model(service, name)
    _check_version_number(version)
    with service.admin_lock:
        spec = _spec(service, name)
        on_disk = list_versions(spec.base_path) if spec is not None else {}
        try:
            known = {s.version for s in service.manager.version_statuses(name)}
        except ServingError:
            known = set()
        if version not in on_disk and version not in known:
            raise not_found(f"Could not find version {version} of model {name}")
        carrying = sorted(label for label, v in {**service.manager.pending_labels(name),
                                                 **service.manager.labels(name)}.items()
                          if v == version)
        if carrying:
            raise failed_precondition(
                f"Version {version} of model {name} carries the label(s) {', '.join(carrying)}; "
                "move or remove them first (promote, rollback or set the label)")
        state = _state(service, name)
        state.unloaded.add(version)
        if state.previous_stable == version:
            state.previous_stable = None
        _save_state(service)
    service.reload()
    return describe_model(service, name)


def load_version(service: ModelService, name: str, version: int) -> dict[str, Any]:
    """Undo :func:`unload_version`: the version is aspired again if its policy wants it (or a
    label or the previous-stable pin names it)."""
    _known_model(service, name)
    _check_version_number(version)
    with service.admin_lock:
        state = _state(service, name)
        if version not in state.unloaded:
            raise failed_precondition(f"Version {version} of model {name} was not unloaded")
        state.unloaded.discard(version)
        _save_state(service)
    service.reload()
    return describe_model(service, name)


def reload_config(service: ModelService) -> dict[str, Any]:
    """Re-read the config file now and scan the repository; the models afterwards. The
    config's error, if it does not parse, is in ``config_error`` (the last good one is used)."""
    with service.admin_lock:
        service.invalidate_config()
    service.reload()
    return {"config_file": service.config_path, "config_error": service.config_error,
            **list_models(service)}


def tfserving_config(service: ModelService) -> dict[str, Any]:
    """A ModelServerConfig for ``tensorflow_model_server --model_config_file``, serving what
    this server serves now (``GET P/api/config/tfserving``).

    ``models.config`` is the repository's own config, read by this server with one extension:
    versions a label names are always loaded. TF Serving loads only what the version policy
    picks and refuses to start when a label names a version it did not load, so this
    hand-off config pins each model to ``specific`` versions: those AVAILABLE now (which every
    label names). Models served by the ``python`` platform cannot be served by TF Serving and
    are listed in ``skipped`` with the reason; so are models with nothing AVAILABLE."""
    from google.protobuf import text_format

    from .model_config import ModelServerConfig, add_model

    config = ModelServerConfig()
    config.model_config_list.SetInParent()
    skipped = []
    with service.admin_lock:
        for spec in sorted(service.model_specs(), key=lambda s: s.name):
            statuses = {s.version: s for s in _statuses(service, spec.name)}
            available = sorted(v for v, s in statuses.items()
                               if s.state is ServableState.AVAILABLE)
            on_disk = list_versions(spec.base_path)
            python = [v for v in available if v in on_disk and _is_python(on_disk[v])]
            versions = [v for v in available if v not in python]
            if not versions:
                skipped.append({"name": spec.name, "reason": (
                    "served by the python platform, which TF Serving cannot load" if python
                    else "no version is AVAILABLE")})
                continue
            add_model(config, spec.name, spec.base_path, spec.platform)
            entry = config.model_config_list.config[-1]
            entry.model_version_policy.specific.versions.extend(versions)
            labels = {k: v for k, v in service.manager.labels(spec.name).items() if v in versions}
            entry.version_labels.update(labels)
    return {"model_config": text_format.MessageToString(config), "skipped": skipped}


def _statuses(service: ModelService, name: str) -> list[VersionStatus]:
    try:
        return service.manager.version_statuses(name)
    except ServingError:
        return []


def _is_python(version_dir: str) -> bool:
    from .platforms.python import read_platform

    return read_platform(version_dir) == "python"
