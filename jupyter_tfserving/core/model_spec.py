"""What a source knows about one model: where its versions live and which of them to serve.

Built from ``models.config`` (``jupyter_tfserving.model_config``) or by discovering the model
directories of the repository (``core.repository``); consumed by ``core.source``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from .status import invalid_argument
from .version_policy import Latest, VersionPolicy

# A model name is one safe path component: letters, digits, '_', '-', '.', not starting with '.'.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


def is_valid_model_name(name: str) -> bool:
    """True when ``name`` can be a model name and a directory name under the repository."""
    return bool(_MODEL_NAME.match(name)) and name not in (".", "..")


def check_model_name(name: str) -> str:
    """Return ``name`` or raise INVALID_ARGUMENT explaining what a model name may contain."""
    if not isinstance(name, str) or not is_valid_model_name(name):
        raise invalid_argument(
            f"Invalid model name {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "not starting with '.' or '-'"
        )
    return name


@dataclass(frozen=True)
class ModelSpec:
    """One model of the repository.

    ``base_path`` is absolute; ``labels`` are the version labels the configuration asks for.
    ``pinned`` versions are aspired whatever the policy (the previous ``stable``, kept for a
    rollback); ``unloaded`` versions are never aspired (a user unloaded them; their files stay).
    """

    name: str
    base_path: str
    platform: str = "tensorflow"
    version_policy: VersionPolicy = field(default_factory=Latest)
    labels: Mapping[str, int] = field(default_factory=dict)
    pinned: frozenset[int] = frozenset()
    unloaded: frozenset[int] = frozenset()
