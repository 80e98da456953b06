"""Reading TF Serving's repository layout from disk: ``<base_path>/<integer version>/``.

Called only from worker threads (the source's poller), never from the IOLoop.
"""

from __future__ import annotations

import os

from .model_spec import ModelSpec
from .validation import is_valid_model_name


def parse_version(dirname: str) -> int | None:
    """The version a directory name stands for (``00000123`` is 123), or None if it is not one.

    Like TF Serving, only names made of ASCII digits count; ``-1``, ``1.0`` and ``v1`` do not.
    """
    if dirname.isascii() and dirname.isdigit():
        return int(dirname)
    return None


def list_versions(base_path: str) -> dict[int, str]:
    """Map version -> version directory for every integer-named directory under ``base_path``.

    A missing or unreadable ``base_path`` has no versions. If two names parse to the same
    version (``1`` and ``001``), the lexicographically smallest name wins, so the answer is
    stable across scans.
    """
    versions: dict[int, str] = {}
    try:
        entries = sorted(os.scandir(base_path), key=lambda e: e.name)
    except OSError:
        return versions
    for entry in entries:
        version = parse_version(entry.name)
        if version is None or version in versions:
            continue
        try:
            if not entry.is_dir():
                continue
        except OSError:
            continue
        versions[version] = entry.path
    return versions


def discover_models(model_root: str, platform: str = "tensorflow") -> list[ModelSpec]:
    """One ``latest(1)`` model per valid-named subdirectory of ``model_root``, used when the
    repository has no ``models.config``. Hidden and invalid names are skipped."""
    specs: list[ModelSpec] = []
    try:
        entries = sorted(os.scandir(model_root), key=lambda e: e.name)
    except OSError:
        return specs
    for entry in entries:
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        if is_dir and is_valid_model_name(entry.name):
            specs.append(ModelSpec(name=entry.name, base_path=os.path.abspath(entry.path),
                                   platform=platform))
    return specs
