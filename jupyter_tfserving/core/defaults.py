"""Every default of the server's options, in one place (imported as ``core.defaults``).

Read by ``TFServingApp``'s traits, by the plain option records of the core
(``ServiceOptions``, ``ManagerOptions``), by the kernel's embedded server and by the command
line, so the same server behaves the same whichever way it was started. Plain stdlib (the
Jupyter data directory is looked up lazily, by the functions that need it).
"""

from __future__ import annotations

import os

# REST prefix under the server's base_url: {base_url}tfserving/v1/models/...
URL_PREFIX = "tfserving"
# The repository's config file and the JSON state file beside it.
CONFIG_FILE_NAME = "models.config"

# Scans of the repository and of the config file (TF Serving's flags of the same name; the
# config default re-reads it, where TF Serving's 0 reads it once, because notebooks edit it).
FILE_SYSTEM_POLL_WAIT_SECONDS = 1.0
MODEL_CONFIG_FILE_POLL_WAIT_SECONDS = 1.0

# The manager (TF Serving's --max_num_load_retries; its one-minute retry interval is shorter
# here so a broken version shows its error soon).
MAX_NUM_LOAD_RETRIES = 5
LOAD_RETRY_INTERVAL_SECONDS = 1.0
NUM_LOAD_THREADS = 2
# END versions kept in a model's status history (older ones are forgotten, with their stats).
MAX_END_VERSIONS_KEPT = 16

# Requests.
NUM_REQUEST_THREADS = 8
REST_API_TIMEOUT_IN_MS = 30_000
MAX_UPLOAD_BYTES = 4 << 30
MAX_REQUEST_BYTES = 64 << 20
MAX_JSON_DEPTH = 64
MAX_TENSOR_ELEMENTS = 1 << 24


def request_timeout_seconds(rest_api_timeout_in_ms: int) -> float | None:
    """TF Serving's --rest_api_timeout_in_ms as seconds (0: no deadline)."""
    return rest_api_timeout_in_ms / 1000 if rest_api_timeout_in_ms > 0 else None


def jupyter_tfserving_dir() -> str:
    """``<jupyter data dir>/tfserving``: the default home of the repository and the key."""
    from jupyter_core.paths import jupyter_data_dir

    return os.path.join(jupyter_data_dir(), "tfserving")


def default_model_root() -> str:
    return os.path.join(jupyter_tfserving_dir(), "models")


def default_signing_key_file() -> str:
    return os.path.join(jupyter_tfserving_dir(), "signing_key")


# gRPC (TF Serving's PredictionService and ModelService, beside REST). The port: 0 picks a free
# one on the server's IP, -1 serves no TCP port (TF Serving's --port is 8500).
GRPC_PORT = 0
# Largest gRPC message, in and out (TF Serving allows 2 GiB; here the REST body limit).
GRPC_MAX_MESSAGE_BYTES = MAX_REQUEST_BYTES
# How long a stopping server lets gRPC calls in flight finish before cancelling them.
GRPC_SHUTDOWN_GRACE_SECONDS = 10.0
# How long a gRPC caller's allowed (token, address, method) stays allowed without asking the
# identity provider and authorizer again (they cost ~0.1 ms a call; a revoked token or a changed
# authorizer decision reaches gRPC within this time). 0 asks on every call.
GRPC_AUTH_CACHE_SECONDS = 10.0
