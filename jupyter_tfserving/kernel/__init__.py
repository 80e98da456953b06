"""The kernel side: ``serve()``, ``dashboard()``, ``bulk_predict()``, ``evaluate()``,
``%tfserving``, the REST client and the embedded server.

Talks to the server only over REST (DESIGN §1); imports nothing of jupyter_server except in
``embedded`` (the fallback server itself), and TensorFlow only to export a model.
"""

from __future__ import annotations

from .bulk import BulkJob, JobFailed, bulk_predict, job, jobs
from .client import ServerUnavailable, TFServingClient, TFServingError, find_server
from .evaluation import Evaluation, evaluate
from .serving import ServedModel, connect, serve
from .shadow import ShadowReport
from .widgets import Dashboard, dashboard

__all__ = ["BulkJob", "Dashboard", "Evaluation", "JobFailed", "ServedModel", "ServerUnavailable",
           "ShadowReport", "TFServingClient", "TFServingError", "bulk_predict", "connect",
           "dashboard", "evaluate", "find_server", "job", "jobs", "serve"]
