"""The control plane's operations on a real ModelService (fake loaders): publishing, labels, canary
routing, promote, rollback, unload, and persistence in models.config + the state file."""

from __future__ import annotations

import collections
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from jupyter_tfserving.core.archive import pack_directory
from jupyter_tfserving.core.manager import ManagerOptions
from jupyter_tfserving.core.servable import WarmupReport
from jupyter_tfserving.core.state import ServableState
from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.service import ModelService, ServiceOptions

from .core.fakes import FakeLoaderFactory

WAIT = 10.0


def version_dir(tmp_path: Path, tag: str = "v") -> Path:
    """A directory that looks like a SavedModel version (the fake loader reads nothing)."""
    d = Path(tempfile.mkdtemp(prefix=f"src-{tag}-", dir=tmp_path))
    (d / "variables").mkdir()
    (d / "saved_model.pb").write_bytes(b"graph " + tag.encode())
    (d / "variables" / "variables.index").write_bytes(b"index")
    return d


def archive(tmp_path: Path, tag: str = "v") -> bytes:
    return pack_directory(str(version_dir(tmp_path, tag)))


def make_service(model_root: Path, factory: FakeLoaderFactory | None = None,
                 **options) -> ModelService:
    service = ModelService(
        ServiceOptions(model_root=str(model_root), file_system_poll_wait_seconds=0,
                       manager=ManagerOptions(max_num_load_retries=0), batching=None,
                       signing_key=b"k" * 32, **options),
        loader_factory=factory or FakeLoaderFactory(),
    )
    service.start()
    return service


@pytest.fixture
def service(model_root: Path):
    s = make_service(model_root)
    yield s
    s.stop(5)


def publish(service: ModelService, tmp_path: Path, name: str, version: int | None = None) -> int:
    answer = service.control.publish_version(name, archive(tmp_path, f"{name}-{version}"), version)
    v = answer["version"]
    service.manager.wait_for(name, v, [ServableState.AVAILABLE], WAIT)
    return v


def routed(service: ModelService, name: str, n: int) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for _ in range(n):
        with service.manager.acquire(name) as handle:
            counts[handle.id.version] += 1
    return counts


def read_config(model_root: Path) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((model_root / "models.config").read_text(), config)
    return config


def test_publish_numbers_versions_and_renames_into_place(service, model_root, tmp_path):
    assert publish(service, tmp_path, "demo") == 1
    assert publish(service, tmp_path, "demo") == 2
    assert publish(service, tmp_path, "demo", 7) == 7
    assert sorted(os.listdir(model_root / "demo")) == ["1", "2", "7"]  # no staging left behind
    assert (model_root / "demo" / "7" / "saved_model.pb").read_bytes() == b"graph demo-7"
    with pytest.raises(ServingError) as err:
        service.control.publish_version("demo", archive(tmp_path, "again"), 7)
    assert err.value.code == Code.ALREADY_EXISTS
    # latest(1): only 7 is served
    described = service.control.describe_model("demo")
    assert described["traffic"] == {"7": 1.0}


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x" * 200, "a\x00b", "-x"])
def test_publish_refuses_unsafe_names(service, tmp_path, model_root, name):
    with pytest.raises(ServingError) as err:
        service.control.publish_version(name, archive(tmp_path), None)
    assert err.value.code == Code.INVALID_ARGUMENT
    assert os.listdir(model_root) == []


def test_publish_refuses_non_savedmodel_and_hostile_archives_leaving_nothing(
        service, model_root, tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "file").write_text("x")
    with pytest.raises(ServingError, match="not a SavedModel"):
        service.control.publish_version("demo", pack_directory(str(empty)), None)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("saved_model.pb")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
        link = tarfile.TarInfo("escape")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ServingError) as err:
        service.control.publish_version("demo", buf.getvalue(), None)
    assert err.value.code == Code.INVALID_ARGUMENT
    with pytest.raises(ServingError, match="tar"):
        service.control.publish_version("demo", b"not an archive at all", None)
    assert os.listdir(model_root / "demo") == []  # no version, no staging directory


def test_canary_splits_traffic_then_promote_and_rollback(service, model_root, tmp_path):
    publish(service, tmp_path, "demo")
    # pin the serving version first: with latest(1), publishing 2 would otherwise unload 1
    service.control.set_label("demo", "stable", 1)
    publish(service, tmp_path, "demo")
    described = service.control.set_canary("demo", 0.25)
    assert described["labels"] == {"canary": 2, "stable": 1}
    assert described["traffic"] == {"1": 0.75, "2": 0.25}
    counts = routed(service, "demo", 2000)
    assert set(counts) == {1, 2}
    assert 0.20 < counts[2] / 2000 < 0.30
    # both versions stay loaded although the policy is latest(1): labels keep 1 aspired
    config = read_config(model_root)
    (entry,) = config.model_config_list.config
    assert entry.name == "demo" and dict(entry.version_labels) == {"stable": 1, "canary": 2}

    described = service.control.promote("demo")
    assert described["labels"] == {"stable": 2}
    assert described["previous_stable"] == 1
    assert routed(service, "demo", 50) == {2: 50}
    # the previous stable stays loaded, so rollback is instant
    assert service.manager.version_statuses("demo")[1].state is ServableState.AVAILABLE

    described = service.control.rollback("demo")
    assert described["labels"] == {"stable": 1}
    assert routed(service, "demo", 50) == {1: 50}
    with pytest.raises(ServingError) as err:
        service.control.rollback("demo")
    assert err.value.code == Code.FAILED_PRECONDITION


def test_rollback_of_a_running_canary_keeps_stable(service, tmp_path):
    publish(service, tmp_path, "demo")
    service.control.set_label("demo", "stable", 1)
    publish(service, tmp_path, "demo")
    service.control.set_canary("demo", 0.5)
    described = service.control.rollback("demo")
    assert described["labels"] == {"stable": 1} and described["canary"] is None
    assert routed(service, "demo", 50) == {1: 50}


def test_canary_needs_two_available_versions_and_a_valid_weight(service, tmp_path):
    publish(service, tmp_path, "demo")
    with pytest.raises(ServingError) as err:
        service.control.set_canary("demo", 0.1)
    assert err.value.code == Code.FAILED_PRECONDITION
    publish(service, tmp_path, "demo")
    # latest(1) unloaded version 1: no stable version is left to canary against
    with pytest.raises(ServingError) as err:
        service.control.set_canary("demo", 0.1)
    assert err.value.code == Code.FAILED_PRECONDITION
    for weight in (-0.1, 1.5, "half", True, float("nan")):
        with pytest.raises(ServingError) as err:
            service.control.set_canary("demo", weight)
        assert err.value.code == Code.INVALID_ARGUMENT
    with pytest.raises(ServingError) as err:
        service.control.set_canary("demo", 0.1, version=9)
    assert err.value.code == Code.FAILED_PRECONDITION
    with pytest.raises(ServingError) as err:
        service.control.set_canary("nope", 0.1)
    assert err.value.code == Code.NOT_FOUND


def test_labels_follow_tf_servings_rule_and_are_written_to_models_config(
        service, model_root, tmp_path):
    publish(service, tmp_path, "demo")
    publish(service, tmp_path, "other")
    with pytest.raises(ServingError) as err:
        service.control.set_label("demo", "beta", 5)
    assert err.value.code == Code.FAILED_PRECONDITION
    assert not (model_root / "models.config").exists()  # a refused change writes nothing
    service.control.set_label("demo", "beta", 1)
    config = read_config(model_root)
    # the first label turns discovery into a config listing every model, so both still serve
    assert sorted(m.name for m in config.model_config_list.config) == ["demo", "other"]
    assert service.manager.labels("demo") == {"beta": 1}
    service.control.reload()
    assert routed(service, "other", 3) == {1: 3}
    with service.manager.acquire("demo", label="beta") as handle:
        assert handle.id.version == 1
    service.control.remove_label("demo", "beta")
    assert dict(read_config(model_root).model_config_list.config[0].version_labels) == {}
    with pytest.raises(ServingError) as err:
        service.control.remove_label("demo", "beta")
    assert err.value.code == Code.NOT_FOUND
    with pytest.raises(ServingError) as err:
        service.control.set_label("demo", "bad/label", 1)
    assert err.value.code == Code.INVALID_ARGUMENT


def test_unload_and_load_a_version(service, model_root, tmp_path):
    publish(service, tmp_path, "demo")
    publish(service, tmp_path, "demo")
    service.control.unload_version("demo", 2)
    # latest(1) among the versions still loadable: 1 comes back, 2 goes, files stay
    service.manager.wait_for("demo", 1, [ServableState.AVAILABLE], WAIT)
    service.manager.wait_for("demo", 2, [ServableState.END], WAIT)
    assert (model_root / "demo" / "2").is_dir()
    assert routed(service, "demo", 5) == {1: 5}
    assert service.control.describe_model("demo")["unloaded"] == [2]
    service.control.load_version("demo", 2)
    service.manager.wait_for("demo", 2, [ServableState.AVAILABLE], WAIT)
    with pytest.raises(ServingError) as err:
        service.control.load_version("demo", 2)
    assert err.value.code == Code.FAILED_PRECONDITION
    service.control.set_label("demo", "stable", 2)
    with pytest.raises(ServingError) as err:
        service.control.unload_version("demo", 2)
    assert err.value.code == Code.FAILED_PRECONDITION and "stable" in err.value.message
    with pytest.raises(ServingError) as err:
        service.control.unload_version("demo", 42)
    assert err.value.code == Code.NOT_FOUND


def test_a_restarted_service_comes_back_with_the_same_routing(model_root, tmp_path):
    first = make_service(model_root)
    try:
        publish(first, tmp_path, "demo")
        first.control.set_label("demo", "stable", 1)
        publish(first, tmp_path, "demo")
        first.control.set_canary("demo", 0.3, version=2)
        publish(first, tmp_path, "demo")
        first.control.unload_version("demo", 3)
    finally:
        first.stop(5)
    state = json.loads((model_root / "jupyter_tfserving.json").read_text())
    assert state["models"]["demo"] == {"canary_weight": 0.3, "previous_stable": None,
                                       "unloaded": [3]}

    second = make_service(model_root)
    try:
        for v in (1, 2):
            second.manager.wait_for("demo", v, [ServableState.AVAILABLE], WAIT)
        deadline_labels = {}
        for _ in range(100):
            deadline_labels = second.manager.labels("demo")
            if deadline_labels == {"stable": 1, "canary": 2}:
                break
            second.control.reload()
        assert deadline_labels == {"stable": 1, "canary": 2}
        described = second.control.describe_model("demo")
        assert described["traffic"] == {"1": 0.7, "2": 0.3}
        assert [v["version"] for v in described["versions"]
                if v["state"] == "AVAILABLE"] == [2, 1]
        assert 3 not in {s.version for s in second.manager.version_statuses("demo")
                         if s.state is ServableState.AVAILABLE}
    finally:
        second.stop(5)


def test_a_model_published_into_a_configured_repository_is_added_to_the_config(
        model_root, tmp_path):
    (model_root / "models.config").write_text(
        'model_config_list { config { name: "kept" base_path: "kept" model_platform: '
        '"tensorflow" } }\n')
    (model_root / "kept" / "1").mkdir(parents=True)
    service = make_service(model_root)
    try:
        publish(service, tmp_path, "fresh")
        names = [m.name for m in read_config(model_root).model_config_list.config]
        assert names == ["kept", "fresh"]
        # the relative base_path of the hand-written entry is kept as written
        assert read_config(model_root).model_config_list.config[0].base_path == "kept"
        assert routed(service, "fresh", 2) == {1: 2}
    finally:
        service.stop(5)


def test_tfserving_handoff_config_pins_what_is_served(service, tmp_path):
    publish(service, tmp_path, "demo")
    service.control.set_label("demo", "stable", 1)
    publish(service, tmp_path, "demo")
    service.control.set_canary("demo", 0.1)
    publish(service, tmp_path, "demo")
    service.control.unload_version("demo", 3)
    service.manager.wait_for("demo", 3, [ServableState.END], WAIT)

    from jupyter_tfserving.platforms.python import write_python_version

    src = tmp_path / "py"
    write_python_version(str(src), abs)
    answer = service.control.publish_version("pyfn", pack_directory(str(src)), None)
    service.manager.wait_for("pyfn", answer["version"], [ServableState.AVAILABLE], WAIT)

    handoff = service.control.tfserving_config()
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(handoff["model_config"], config)
    (entry,) = config.model_config_list.config
    assert entry.name == "demo" and os.path.isabs(entry.base_path)
    # TF Serving loads exactly these, so every label names a loaded version
    assert list(entry.model_version_policy.specific.versions) == [1, 2]
    assert dict(entry.version_labels) == {"stable": 1, "canary": 2}
    assert handoff["skipped"] == [{
        "name": "pyfn", "reason": "served by the python platform, which TF Serving cannot load"}]


# ----------------------------------------------------------------------------- rollout


def test_publish_with_rollout_stable_keeps_the_old_version_for_rollback(service, tmp_path):
    first = service.control.publish_version("demo", archive(tmp_path, "1"), rollout="stable")
    # the first version: AVAILABLE when the answer comes, serving everything, no label needed
    assert first["version"] == 1 and first["rollout"] == "stable"
    assert first["model"]["versions"][0]["state"] == "AVAILABLE"
    assert first["model"]["traffic"] == {"1": 1.0} and first["model"]["labels"] == {}

    second = service.control.publish_version("demo", archive(tmp_path, "2"), rollout="stable")
    model = second["model"]
    assert (second["version"], model["labels"], model["traffic"]) == (2, {"stable": 2},
                                                                      {"2": 1.0})
    assert model["previous_stable"] == 1  # kept loaded (latest(1) would have unloaded it)
    assert {v["version"]: v["state"] for v in model["versions"]} == {2: "AVAILABLE",
                                                                    1: "AVAILABLE"}
    rolled = service.control.rollback("demo")
    assert (rolled["labels"], rolled["traffic"]) == ({"stable": 1}, {"1": 1.0})


def test_publish_with_rollout_canary_splits_traffic(service, tmp_path):
    service.control.publish_version("demo", archive(tmp_path, "1"), rollout="stable")
    published = service.control.publish_version("demo", archive(tmp_path, "2"),
                                                rollout="canary", weight=0.25)
    model = published["model"]
    assert model["labels"] == {"stable": 1, "canary": 2}
    assert model["traffic"] == {"1": 0.75, "2": 0.25}
    assert model["canary"] == {"version": 2, "weight": 0.25}
    promoted = service.control.promote("demo")
    assert (promoted["labels"], promoted["traffic"]) == ({"stable": 2}, {"2": 1.0})


def test_publish_rollout_of_a_version_that_fails_to_load_labels_nothing_new(
        model_root, tmp_path):
    factory = FakeLoaderFactory()
    service = make_service(model_root, factory)
    try:
        service.control.publish_version("demo", archive(tmp_path, "1"), rollout="stable")
        factory.script("demo", 2, failures=-1)
        with pytest.raises(ServingError) as err:
            service.control.publish_version("demo", archive(tmp_path, "2"), rollout="stable")
        assert err.value.code == Code.FAILED_PRECONDITION
        assert err.value.message == "Version 2 of model demo failed to load: no such file"
        described = service.control.describe_model("demo")
        # 1 was pinned as stable before 2 arrived, so it still serves everything
        assert (described["labels"], described["traffic"]) == ({"stable": 1}, {"1": 1.0})
    finally:
        service.stop(5)


@pytest.mark.parametrize(("rollout", "weight", "message"), [
    ("sideways", None, "Invalid rollout 'sideways'"),
    ("canary", None, "rollout=canary needs a canary weight"),
    ("stable", 0.5, "A canary weight needs rollout=canary"),
    (None, 0.5, "A canary weight needs rollout=canary"),
    ("canary", 2.0, "Canary weight must be a number between 0 and 1"),
])
def test_publish_refuses_a_bad_rollout_before_unpacking(service, model_root, tmp_path,
                                                       rollout, weight, message):
    with pytest.raises(ServingError, match=message) as err:
        service.control.publish_version("demo", archive(tmp_path), rollout=rollout,
                                        weight=weight)
    assert err.value.code == Code.INVALID_ARGUMENT
    assert not (model_root / "demo").exists()


# ----------------------------------------------------------------------------- bounded memory


def test_a_thousand_versions_keep_the_statistics_bounded(model_root, tmp_path):
    """1,000 versions published, served once and unloaded one after another (latest(1) unloads
    each when the next is AVAILABLE): the manager's status history and the per-version
    statistics stay bounded, while the last ended versions' figures stay readable."""
    service = make_service(model_root)
    kept = service.manager.options.max_end_versions_kept
    packed = archive(tmp_path, "tiny")
    try:
        for version in range(1, 1001):
            service.control.publish_version("demo", packed)
            service.manager.wait_for("demo", version, [ServableState.AVAILABLE], WAIT)
            service.dataplane.record_request("demo", version, "predict", Code.OK, 0.001, "REST")
            if version > 1:
                service.manager.wait_for("demo", version - 1, [ServableState.END], WAIT)
            assert len(service.stats.versions) <= kept + 2, version
        statuses = service.manager.version_statuses("demo")
        assert len(statuses) == kept + 1
        assert [s.version for s in statuses] == list(range(1000, 1000 - kept - 1, -1))
        assert set(service.stats.versions) == {("demo", v) for v in range(1000 - kept, 1001)}
        report = service.stats_report()["models"][0]["versions"]
        assert report[1]["version"] == 999 and report[1]["state"] == "END"
        assert report[1]["request_count"] == 1
    finally:
        service.stop(5)


def test_a_versions_warmup_is_in_its_management_json(model_root, tmp_path):
    """What the loader's warmup ran is in ``GET P/api/models/{m}`` and ``GET P/api/stats``;
    null for a version that replayed nothing."""

    class WarmingFactory(FakeLoaderFactory):
        def __call__(self, servable_id, spec):
            loader = super().__call__(servable_id, spec)
            if servable_id.version == 1:
                loader.warmup_report = WarmupReport(records=2, requests=6, seconds=0.5)
            return loader

    service = make_service(model_root, WarmingFactory())
    try:
        for version in (1, 2):
            service.control.publish_version("demo", archive(tmp_path, str(version)), version)
            service.manager.wait_for("demo", version, [ServableState.AVAILABLE], WAIT)
        described = {v["version"]: v["warmup"]
                     for v in service.control.describe_model("demo")["versions"]}
        stats = {v["version"]: v["warmup"]
                 for v in service.stats_report()["models"][0]["versions"]}
        # version 1 may be unloading by now (latest(1)): its status keeps what it ran
        assert described == stats == {1: {"requests": 6, "seconds": 0.5}, 2: None}
    finally:
        service.stop(5)


def test_wait_loaded_blocks_until_no_version_is_loading(model_root, tmp_path):
    """The command line's start-up: the first scan, then every version AVAILABLE or END."""
    import threading

    factory = FakeLoaderFactory()
    gate = threading.Event()
    factory.script("demo", 1, gate=gate)
    factory.script("broken", 1, failures=-1)
    for name in ("demo", "broken"):
        (model_root / name / "1").mkdir(parents=True)
        (model_root / name / "1" / "saved_model.pb").write_bytes(b"graph")
    service = make_service(model_root, factory)
    try:
        assert service.wait_loaded(0.2) is False  # demo/1 is held LOADING
        threading.Timer(0.2, gate.set).start()
        assert service.wait_loaded(WAIT) is True
        states = {name: service.manager.version_statuses(name)[0].state
                  for name in ("demo", "broken")}
        assert states == {"demo": ServableState.AVAILABLE, "broken": ServableState.END}
    finally:
        gate.set()
        service.stop(5)
