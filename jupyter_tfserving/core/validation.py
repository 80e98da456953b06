"""The one copy of every rule on names and numbers a client can send (DESIGN §2, §3).

Model names, versions, labels and canary weights are checked here and nowhere else: the manager,
the control plane, the model config reader, the REST and (later) gRPC front ends and the kernel
side all call these, so each rule has one error text. Each ``check_*`` returns the value (typed)
or raises :class:`~.status.ServingError` INVALID_ARGUMENT. Plain stdlib.
"""

from __future__ import annotations

import math
import re

from .status import invalid_argument

# A model name is one safe path component: letters, digits, '_', '-', '.', not starting with '.'.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
# A label: 1-128 ASCII letters, digits, '_', '-' or '.'.
_LABEL = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
# The largest version: TF Serving's versions are int64.
MAX_VERSION = 2**63 - 1


def is_valid_model_name(name: object) -> bool:
    """True when ``name`` can be a model name and a directory name under the repository."""
    return isinstance(name, str) and bool(_MODEL_NAME.match(name))


def check_model_name(name: object) -> str:
    """``name``, or INVALID_ARGUMENT saying what a model name may contain."""
    if not is_valid_model_name(name):
        raise invalid_argument(
            f"Invalid model name {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "not starting with '.' or '-'"
        )
    assert isinstance(name, str)
    return name


def _version_error(version: object) -> Exception:
    return invalid_argument(
        f"Invalid version {version!r}: a version is an integer from 0 to {MAX_VERSION}")


def check_version(version: object) -> int:
    """``version`` if it is an int (not a bool) from 0 to 2**63-1, else INVALID_ARGUMENT."""
    if isinstance(version, bool) or not isinstance(version, int) or \
            not 0 <= version <= MAX_VERSION:
        raise _version_error(version)
    return version


def _is_version_text(text: str) -> bool:
    """True for ASCII decimal digits: ``str.isdigit()`` also takes other scripts' digits
    ("١"), which ``int()`` would read as another version's number."""
    return text.isascii() and text.isdigit()


def parse_version(value: object) -> int:
    """A version from a URL segment, a query argument or a JSON field (TF Serving writes
    versions as strings, so a string of ASCII digits is taken too); INVALID_ARGUMENT
    otherwise, with the same text as :func:`check_version`."""
    if isinstance(value, str):
        if not _is_version_text(value) or len(value) > 19 or int(value) > MAX_VERSION:
            raise _version_error(value)
        return int(value)
    return check_version(value)


def check_label(label: object) -> str:
    """``label`` if it is 1-128 ASCII letters, digits, '_', '-' or '.', else INVALID_ARGUMENT."""
    if not isinstance(label, str) or not _LABEL.match(label):
        raise invalid_argument(
            f"Invalid label {label!r}: use 1-128 letters, digits, '_', '-' or '.'")
    return label


def check_canary_weight(weight: object) -> float:
    """``weight`` as a float if it is a number from 0 to 1, else INVALID_ARGUMENT."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
            math.isnan(weight) or not 0.0 <= weight <= 1.0:
        raise invalid_argument(f"Canary weight must be a number between 0 and 1, got {weight!r}")
    return float(weight)
