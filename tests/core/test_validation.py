"""One validator per rule, one error text each (core.validation)."""

from __future__ import annotations

import math

import pytest

from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.core.validation import (
    MAX_VERSION,
    check_canary_weight,
    check_label,
    check_model_name,
    check_version,
    is_valid_model_name,
    parse_version,
)


def _refused(fn, value) -> str:
    with pytest.raises(ServingError) as err:
        fn(value)
    assert err.value.code == Code.INVALID_ARGUMENT
    return err.value.message


@pytest.mark.parametrize("name", ["m", "half_plus_two", "a.b-c_1", "9", "x" * 128])
def test_model_names_accepted(name):
    assert check_model_name(name) == name and is_valid_model_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "-x", "a/b", "a:b", "x" * 129,
                                  "é", None, 3])
def test_model_names_refused(name):
    assert not is_valid_model_name(name)
    assert _refused(check_model_name, name).startswith(f"Invalid model name {name!r}: use 1-128")


def test_versions():
    assert check_version(0) == 0 and check_version(MAX_VERSION) == MAX_VERSION
    for bad in (-1, MAX_VERSION + 1, True, 1.0, "1", None):
        assert _refused(check_version, bad) == (
            f"Invalid version {bad!r}: a version is an integer from 0 to {MAX_VERSION}")


def test_parse_version_takes_ascii_digit_strings_with_the_same_error():
    assert parse_version("007") == 7 and parse_version(7) == 7
    assert parse_version(str(MAX_VERSION)) == MAX_VERSION
    for bad in ("\u0661", "1.0", "-1", "", " 1", str(MAX_VERSION + 1), "1" * 20, True):
        assert _refused(parse_version, bad).startswith(f"Invalid version {bad!r}: a version is")


def test_labels():
    for good in ("stable", "canary", "a.b-c_1", "x" * 128):
        assert check_label(good) == good
    for bad in ("", "x" * 129, "a/b", "a:b", "é", None, 1):
        assert _refused(check_label, bad) == (
            f"Invalid label {bad!r}: use 1-128 letters, digits, '_', '-' or '.'")


def test_canary_weights():
    assert check_canary_weight(0) == 0.0 and check_canary_weight(1) == 1.0
    assert check_canary_weight(0.25) == 0.25
    for bad in (-0.1, 1.5, math.nan, math.inf, True, "0.5", None):
        assert _refused(check_canary_weight, bad) == (
            f"Canary weight must be a number between 0 and 1, got {bad!r}")
