"""What a source knows about one model: where its versions live and which of them to serve.

Built from ``models.config`` (``jupyter_tfserving.model_config``) or by discovering the model
directories of the repository (``core.repository``); consumed by ``core.source``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .version_policy import Latest, VersionPolicy


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
