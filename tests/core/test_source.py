"""The repository source turns directories, policies and labels into aspired versions."""

from __future__ import annotations

from jupyter_tfserving.core.model_spec import ModelSpec
from jupyter_tfserving.core.source import RepositorySource
from jupyter_tfserving.core.version_policy import All, Latest, Specific


class RecordingManager:
    """Fake manager: keeps the last aspired set and labels per model."""

    def __init__(self) -> None:
        self.aspired: dict[str, dict[int, str]] = {}
        self.labels: dict[str, dict[str, int]] = {}
        self.label_calls = 0

    def set_aspired_versions(self, name, versions):
        self.aspired[name] = {v: spec.path for v, spec in versions.items()}

    def set_labels(self, name, labels, *, pending_ok=False):
        assert pending_ok
        self.labels[name] = dict(labels)
        self.label_calls += 1


def _versions(tmp_path, name, *versions):
    base = tmp_path / name
    for v in versions:
        (base / str(v)).mkdir(parents=True)
    return str(base)


def test_policies_and_labels_make_the_aspired_set(tmp_path):
    specs = [
        ModelSpec("latest", _versions(tmp_path, "latest", 1, 2, 3), version_policy=Latest(2)),
        ModelSpec("all", _versions(tmp_path, "all", 1, 2), version_policy=All()),
        ModelSpec("specific", _versions(tmp_path, "specific", 1, 2, 3),
                  version_policy=Specific([2, 9])),
        ModelSpec("labelled", _versions(tmp_path, "labelled", 1, 2, 3),
                  labels={"stable": 1, "gone": 7}),
    ]
    manager = RecordingManager()
    RepositorySource(manager, lambda: specs).poll_once()
    assert {k: sorted(v) for k, v in manager.aspired.items()} == {
        "latest": [2, 3], "all": [1, 2], "specific": [2], "labelled": [1, 3]}
    assert manager.labels["labelled"] == {"stable": 1, "gone": 7}
    assert manager.aspired["latest"][3] == str(tmp_path / "latest" / "3")


def test_new_versions_and_removed_models(tmp_path):
    specs = [ModelSpec("m", _versions(tmp_path, "m", 1)),
             ModelSpec("n", _versions(tmp_path, "n", 1))]
    manager = RecordingManager()
    source = RepositorySource(manager, lambda: specs)
    source.poll_once()
    (tmp_path / "m" / "2").mkdir()
    specs.pop()
    source.poll_once()
    assert sorted(manager.aspired["m"]) == [2]
    assert manager.aspired["n"] == {}
    # Labels are only re-applied when the configuration changes them.
    assert manager.label_calls == 2


def test_a_failing_spec_provider_changes_nothing(tmp_path):
    manager = RecordingManager()
    calls = []

    def specs():
        calls.append(1)
        if len(calls) > 1:
            raise OSError("config vanished")
        return [ModelSpec("m", _versions(tmp_path, "m", 1))]

    source = RepositorySource(manager, specs)
    source.poll_once()
    source.poll_once()
    assert sorted(manager.aspired["m"]) == [1]


def test_poller_thread_scans_until_stopped(tmp_path):
    import threading

    scanned = threading.Event()

    def specs():
        scanned.set()
        return []

    source = RepositorySource(RecordingManager(), specs, poll_wait_seconds=0.01)
    source.start()
    assert scanned.wait(5)
    source.stop()
    scanned.clear()
    assert not scanned.wait(0.1)
