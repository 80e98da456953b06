"""What a source knows about one model: where its versions live and which of them to serve.

Built from ``models.config`` (``jupyter_tfserving.model_config``) or by discovering the model
directories of the repository (``core.repository``); consumed by ``core.source``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .version_policy import Latest, VersionPolicy


@dataclass(frozen=True)
class RequestLogging:
    """A model's request logging, as TF Serving's ``ModelConfig.logging_config`` asks for it:
    log each request with probability ``sampling_rate`` (its ``sampling_config``) with the
    log collector ``collector`` (``log_collector_config.type``) to files named from
    ``filename_prefix`` (``log_collector_config.filename_prefix``, "" for the default). Read
    as configured; ``traffic.request_log`` checks and applies it."""

    sampling_rate: float
    filename_prefix: str = ""
    collector: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """One model of the repository.

    ``base_path`` is absolute; ``labels`` are the version labels the configuration asks for.
    ``pinned`` versions are aspired whatever the policy (the previous ``stable``, kept for a
    rollback); ``unloaded`` versions are never aspired (a user unloaded them; their files stay).
    ``logging``: the model's request logging (None: the configuration asks for none).
    """

    name: str
    base_path: str
    platform: str = "tensorflow"
    version_policy: VersionPolicy = field(default_factory=Latest)
    labels: Mapping[str, int] = field(default_factory=dict)
    pinned: frozenset[int] = frozenset()
    unloaded: frozenset[int] = frozenset()
    logging: RequestLogging | None = None
