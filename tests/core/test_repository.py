"""Reading TF Serving's repository layout."""

from __future__ import annotations

from jupyter_tfserving.core.repository import discover_models, list_versions, parse_version
from jupyter_tfserving.core.validation import is_valid_model_name


def test_parse_version():
    assert parse_version("00000123") == 123
    assert parse_version("7") == 7
    for bad in ("-1", "1.0", "v1", "", " 1", "١", ".staging-1"):
        assert parse_version(bad) is None, bad


def test_list_versions_ignores_files_and_non_integers(tmp_path):
    for name in ("1", "00000002", "010", "10", "tmp", ".staging-3", "v4"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file, not a version")
    versions = list_versions(str(tmp_path))
    assert sorted(versions) == [1, 2, 10]
    assert versions[10].endswith("/010")  # "010" sorts before "10": the first name wins
    assert list_versions(str(tmp_path / "missing")) == {}


def test_discover_models(tmp_path):
    for name in ("a", "b.c", ".hidden", "-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "models.config").write_text("")
    assert [s.name for s in discover_models(str(tmp_path))] == ["a", "b.c"]


def test_model_names():
    for good in ("a", "half_plus_two", "m-1.v2", "A" * 128, "_x"):
        assert is_valid_model_name(good), good
    for bad in ("", ".", "..", "../x", "a/b", "a\\b", ".x", "-x", "A" * 129, "a b", "a:b", "é"):
        assert not is_valid_model_name(bad), bad
