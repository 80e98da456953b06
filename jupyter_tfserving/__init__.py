"""jupyter_tfserving: TensorFlow Serving, re-thought for people who live in Jupyter.

Importing the package is cheap: it imports neither jupyter_server nor TensorFlow. The server
extension (``TFServingApp``) is found through ``_jupyter_server_extension_points``; in a
notebook, ``%load_ext jupyter_tfserving`` registers ``%tfserving`` and puts ``serve``,
``dashboard``, ``bulk_predict`` and ``evaluate`` in the namespace, and ``from jupyter_tfserving
import serve`` works too (loaded on first use).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import TFServingApp

    return [{"module": "jupyter_tfserving.app", "app": TFServingApp}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_tfserving``."""
    from .kernel.magics import register

    register(ipython)


def __getattr__(name: str) -> Any:
    if name in ("serve", "dashboard", "bulk_predict", "evaluate", "jobs", "ServedModel",
                "TFServingClient", "TFServingError"):
        from . import kernel

        return getattr(kernel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
