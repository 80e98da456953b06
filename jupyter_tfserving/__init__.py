"""jupyter_tfserving: TensorFlow Serving, re-thought for people who live in Jupyter.

Importing the package is cheap: it imports neither jupyter_server nor TensorFlow. The server
extension (``TFServingApp``) is found through ``_jupyter_server_extension_points``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import TFServingApp

    return [{"module": "jupyter_tfserving.app", "app": TFServingApp}]
