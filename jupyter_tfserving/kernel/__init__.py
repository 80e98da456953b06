"""The kernel side: ``serve()``, ``dashboard()``, ``%tfserving``, the REST client and the
embedded server.

Talks to the server only over REST (DESIGN §1); imports nothing of jupyter_server except in
``embedded`` (the fallback server itself), and TensorFlow only to export a model.
"""

from __future__ import annotations

from .client import ServerUnavailable, TFServingClient, TFServingError, find_server
from .serving import ServedModel, connect, serve
from .widgets import Dashboard, dashboard

__all__ = ["Dashboard", "ServedModel", "ServerUnavailable", "TFServingClient", "TFServingError",
           "connect", "dashboard", "find_server", "serve"]
