"""What TF Serving's ``models.config`` cannot hold, kept in a small JSON file beside it.

Per model: the canary weight, the previous ``stable`` version (what ``rollback`` restores; it
stays loaded), and the versions a user unloaded (kept on disk, never aspired until loaded
again). Labels themselves live in ``models.config`` (DESIGN §2).

Who calls: the control plane (``jupyter_tfserving.control_plane``) reads the file once at
start, changes it under its lock and saves it atomically (write a temporary file in the same
directory, then rename), so a crash never leaves half a file. Plain stdlib: no Jupyter, no
TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

STATE_FILE_NAME = "jupyter_tfserving.json"
_FORMAT = 1


@dataclass
class ModelServingState:
    """The persisted routing state of one model."""

    canary_weight: float = 0.0
    previous_stable: int | None = None
    unloaded: set[int] = field(default_factory=set)

    def is_default(self) -> bool:
        return self.canary_weight == 0.0 and self.previous_stable is None and not self.unloaded

    def to_json(self) -> dict[str, object]:
        return {
            "canary_weight": self.canary_weight,
            "previous_stable": self.previous_stable,
            "unloaded": sorted(self.unloaded),
        }

    @classmethod
    def from_json(cls, data: object) -> ModelServingState:
        if not isinstance(data, dict):
            raise ValueError("a model's state must be an object")
        weight = float(data.get("canary_weight", 0.0))
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"canary_weight {weight} is not between 0 and 1")
        previous = data.get("previous_stable")
        if previous is not None and (not isinstance(previous, int) or previous < 0):
            raise ValueError(f"previous_stable {previous!r} is not a version")
        unloaded = data.get("unloaded", [])
        if not isinstance(unloaded, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in unloaded):
            raise ValueError("unloaded must be a list of versions")
        return cls(weight, previous, set(unloaded))


class ServingStateFile:
    """The state file at ``path``: :meth:`load` reads it, :meth:`save` replaces it atomically."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> dict[str, ModelServingState]:
        """Every model's state. A missing file is an empty state; an unreadable or malformed
        one is logged and treated as empty (the repository still serves; routing extras are
        lost rather than guessed)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("Cannot read %s (%s); starting without canary weights", self.path, exc)
            return {}
        try:
            models = data["models"] if isinstance(data, dict) else None
            if not isinstance(models, dict):
                raise ValueError("no 'models' object")
            return {str(k): ModelServingState.from_json(v) for k, v in models.items()}
        except (KeyError, ValueError, TypeError) as exc:
            log.error("Malformed %s (%s); starting without canary weights", self.path, exc)
            return {}

    def save(self, states: dict[str, ModelServingState]) -> None:
        """Write ``states`` (models in their default state are left out). Raises OSError."""
        data = {
            "format": _FORMAT,
            "models": {k: v.to_json() for k, v in sorted(states.items()) if not v.is_default()},
        }
        write_atomically(self.path, json.dumps(data, indent=2) + "\n")


def write_atomically(path: str, text: str) -> None:
    """Replace the file at ``path`` with ``text``: a temporary file in the same directory,
    flushed to disk, then renamed over it. Raises OSError."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
