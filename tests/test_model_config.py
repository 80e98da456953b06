"""models.config: TF Serving's text proto, read with its protobuf messages."""

from __future__ import annotations

import os
import time

import pytest

from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.core.version_policy import All, Latest, Specific
from jupyter_tfserving.model_config import ModelConfigFile, parse_model_config, read_model_config
from tests.conftest import testdata_or_skip


def test_policies_labels_and_paths(tmp_path):
    specs = parse_model_config(
        """
        model_config_list {
          config { name: "a" base_path: "/abs/a" model_platform: "tensorflow" }
          config { name: "b" base_path: "rel/b"
                   model_version_policy { latest { num_versions: 3 } } }
          config { name: "c" base_path: "/c" model_version_policy { all {} } }
          config { name: "d" base_path: "/d"
                   model_version_policy { specific { versions: 1 versions: 4 } }
                   version_labels { key: "stable" value: 1 }
                   version_labels { key: "canary" value: 4 } }
        }
        """,
        str(tmp_path),
    )
    a, b, c, d = specs
    assert (a.name, a.base_path, a.platform) == ("a", "/abs/a", "tensorflow")
    assert b.base_path == str(tmp_path / "rel" / "b")
    assert isinstance(a.version_policy, Latest) and a.version_policy.aspired([1, 2]) == {2}
    assert b.version_policy.aspired([1, 2, 3, 4]) == {2, 3, 4}
    assert isinstance(c.version_policy, All)
    assert isinstance(d.version_policy, Specific) and d.version_policy.aspired([1, 2, 4]) == {1, 4}
    assert dict(d.labels) == {"stable": 1, "canary": 4}


def test_environment_placeholders(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELS_DIR", "/srv/models")
    [spec] = parse_model_config('model_config_list { config { name: "m" '
                                'base_path: "${MODELS_DIR}/m" } }', str(tmp_path))
    assert spec.base_path == "/srv/models/m"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("model_config_list { config { name: ", "Invalid model config"),
        ("improperly formatted file", "Invalid model config"),
        ('model_config_list { config { name: "../x" base_path: "/x" } }', "Invalid model name"),
        ('model_config_list { config { name: "x" } }', "no base_path"),
        ('custom_model_config { }', "not supported"),
    ],
)
def test_bad_configs_are_invalid_argument(tmp_path, text, fragment):
    with pytest.raises(ServingError) as info:
        parse_model_config(text, str(tmp_path))
    assert info.value.code == Code.INVALID_ARGUMENT and fragment in info.value.message


def test_tfserving_test_configs():
    testdata = testdata_or_skip()
    specs = read_model_config(str(testdata / "good_model_config.txt"))
    assert [s.name for s in specs] == ["half_plus_two", "half_plus_three"]
    with pytest.raises(ServingError):
        read_model_config(str(testdata / "bad_model_config.txt"))


def test_config_file_rereads_on_change_and_keeps_last_good(tmp_path):
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "a" base_path: "/a" } }')
    config = ModelConfigFile(str(path), poll_wait_seconds=0.01)
    assert [s.name for s in config.specs()] == ["a"]
    time.sleep(0.02)
    path.write_text('model_config_list { config { name: "a" base_path: "/a" } '
                    'config { name: "b" base_path: "/b" } }')
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert [s.name for s in config.specs()] == ["a", "b"]
    time.sleep(0.02)
    path.write_text("garbage {")
    os.utime(path, (time.time() + 10, time.time() + 10))
    assert [s.name for s in config.specs()] == ["a", "b"]
    assert config.error and "Invalid model config" in config.error


def test_config_file_read_once_when_polling_is_off(tmp_path):
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "a" base_path: "/a" } }')
    config = ModelConfigFile(str(path), poll_wait_seconds=0)
    assert [s.name for s in config.specs()] == ["a"]
    path.write_text('model_config_list { config { name: "b" base_path: "/b" } }')
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert [s.name for s in config.specs()] == ["a"]
