"""``serve(model, name=...)`` and the :class:`ServedModel` it returns (DESIGN §6).

Runs in the kernel, blocking its thread. It exports the model (``kernel.export``), publishes it
through the server's management API (the server unpacks it atomically into the repository),
waits until the version is AVAILABLE (or raises with the server's load error), and arranges the
traffic:

- the first version of a model serves all unversioned requests;
- a later version with ``canary=w`` takes a fraction ``w`` of them (the version serving until
  now is labelled ``stable`` *before* the new one is published, so it stays loaded);
- a later version without ``canary`` becomes ``stable`` (published, then promoted: the old one
  stays loaded, and ``rollback()`` puts it back).

The server sequences all of it in the one upload request (``rollout``), so a kernel that dies
midway leaves nothing half-done.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.status import ServingError
from ..core.validation import check_model_name
from .bulk import BulkJob, bulk_predict
from .client import ServerUnavailable, TFServingClient, TFServingError, find_server
from .evaluation import Evaluation, evaluate
from .export import ExportError, example_rows, export_version
from .shadow import ShadowReport

_connection: TFServingClient | None = None


def connect(*, embedded_ok: bool = True, quiet: bool = False) -> TFServingClient:
    """The client for this kernel's server: the one found before if it still answers, else a
    new look (environment, then running servers), else the embedded server in this process
    (said once, on stderr). Raises ServerUnavailable when none can be had."""
    global _connection
    if _connection is not None and _connection.ping():
        return _connection
    client = find_server()
    if client is None:
        if not embedded_ok:
            raise ServerUnavailable("No jupyter_tfserving server is reachable from this kernel")
        from .embedded import get_embedded_server

        server, started = get_embedded_server()
        client = TFServingClient(server.url, server.token)
        if started and not quiet:
            print(f"jupyter_tfserving: no Jupyter server with the extension is reachable; "
                  f"serving from this process at {server.url} (models in {server.model_root})",
                  file=sys.stderr)
    _connection = client
    return client


def reset_connection() -> None:
    """Forget the server found before (tests; a server that moved)."""
    global _connection
    _connection = None


def find_version(model: dict[str, Any], version: int) -> dict[str, Any] | None:
    """``version``'s entry in a model as the management API describes it, or None."""
    for entry in model.get("versions", []):
        if entry["version"] == version:
            return entry
    return None


def wait_until_available(client: TFServingClient, name: str, version: int,
                         timeout: float = 300.0) -> dict[str, Any]:
    """Poll the model until ``version`` is AVAILABLE; its entry. Raises TFServingError with
    the server's load error when it ends in END, TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        model = client.model(name)
        entry = find_version(model, version)
        if entry is not None:
            if entry["state"] == "AVAILABLE":
                return entry
            if entry["state"] == "END":
                message = entry.get("error_message") or "it was unloaded before it became " \
                                                          "available"
                raise TFServingError(400, f"Version {version} of model {name} failed to load: "
                                          f"{message}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Version {version} of model {name} was not AVAILABLE after "
                               f"{timeout:.0f}s (now {entry['state'] if entry else 'unknown'})")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


class ServedModel:
    """One published version of a model, as seen from the notebook.

    ``url`` is this version's predict URL, ``model_url`` the model's (routed by labels and
    canary weight, what production clients call); :meth:`predict` calls this version."""

    def __init__(self, client: TFServingClient, name: str, version: int,
                 example: Any = None) -> None:
        self.client = client
        self.name = name
        self.version = version
        self._example = example

    def __repr__(self) -> str:
        return f"ServedModel(name={self.name!r}, version={self.version}, url={self.url!r})"

    @property
    def url(self) -> str:
        return self.client.predict_url(self.name, self.version)

    @property
    def model_url(self) -> str:
        return self.client.predict_url(self.name)

    @property
    def grpc_target(self) -> str | None:
        """Where the server's TF Serving gRPC services are (``host:port``, or ``unix:path``);
        None when it serves none (the embedded server, ``TFServingApp.grpc_port=-1``)."""
        return self.client.grpc_target

    def grpc_stub(self) -> Any:
        """A ready TF Serving ``PredictionServiceStub`` (``tensorflow-serving-api``) to the
        server, the token in every call's metadata. Address this model in its requests::

            request = predict_pb2.PredictRequest()
            request.model_spec.name = m.name
            request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]]))
            m.grpc_stub().Predict(request, 10.0)

        ServerUnavailable when the server serves no gRPC."""
        return self.client.prediction_stub()

    def curl(self, instances: Any = None, *, versioned: bool = False) -> str:
        """A ``curl`` command line that calls the model from a terminal."""
        if instances is None:
            instances = self._example_instances()
        body = json.dumps({"instances": instances})
        auth = f"-H 'Authorization: token {self.client.token}' " if self.client.token else ""
        url = self.url if versioned else self.model_url
        return f"curl {auth}-d '{body}' {url}"

    def _example_instances(self) -> Any:
        """One row for the curl line: the ``example`` given to serve(), else ones shaped like
        the signature's single input (from the metadata), else ``[[1.0]]``."""
        if self._example is not None:
            return np.asarray(self._example)[:1].tolist()
        try:
            metadata = self.client.call(
                "GET", f"/v1/models/{self.name}/versions/{self.version}/metadata")
            sig = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
            (tensor,) = sig["inputs"].values()
            dims = [int(d["size"]) for d in tensor["tensor_shape"]["dim"]][1:]
            if tensor["dtype"] in ("DT_FLOAT", "DT_DOUBLE", "DT_HALF") and all(d > 0 for d in dims):
                return np.ones([1, *dims]).tolist()
        except (TFServingError, KeyError, ValueError, TypeError):
            pass
        return [[1.0]]

    def predict(self, instances: Any, *, signature_name: str | None = None) -> Any:
        """Call this version over REST in row format (numpy arrays are sent as lists). Returns
        the predictions as a numpy array, or as TF Serving's JSON when they are named outputs
        (a list of dicts)."""
        if isinstance(instances, np.ndarray):
            instances = instances.tolist()
        predictions, _ = self.client.predict(self.name, instances, version=self.version,
                                             signature_name=signature_name)
        if isinstance(predictions, list) and predictions and isinstance(predictions[0], dict):
            return predictions
        return np.asarray(predictions)

    def status(self) -> dict[str, Any]:
        """This version's entry in the management API (state, error, labels, in-flight
        handles), with ``traffic``: its share of the model's unversioned requests."""
        model = self.client.model(self.name)
        entry = find_version(model, self.version) or {"version": self.version,
                                                       "state": "UNKNOWN"}
        return {**entry, "traffic": model.get("traffic", {}).get(str(self.version), 0.0)}

    def canary(self, weight: float) -> dict[str, Any]:
        """Send ``weight`` (0..1) of the model's unversioned requests to this version."""
        return self.client.canary(self.name, weight, self.version)

    def promote(self) -> dict[str, Any]:
        """Make this version ``stable`` (the old stable is kept for :meth:`rollback`)."""
        return self.client.promote(self.name, self.version)

    def rollback(self) -> dict[str, Any]:
        """End the model's canary, or put the previous stable version back."""
        return self.client.rollback(self.name)

    def unload(self) -> dict[str, Any]:
        """Stop serving this version (its files stay in the repository)."""
        return self.client.unload(self.name, self.version)

    def shadow(self, fraction: float = 1.0) -> dict[str, Any]:
        """Mirror ``fraction`` of the model's live unversioned requests to this version (the
        candidate), after the serving version answered them, and compare the answers; 0 ends
        the shadow. The clients' answers never depend on it. Returns the shadow report's JSON
        (:meth:`shadow_report` shows it)."""
        return self.client.shadow(self.name, self.version, fraction)

    def shadow_report(self) -> ShadowReport:
        """The model's shadow report now: agreement, per-output differences, both latencies
        and the worst pairs (with their requests while request logging is on)."""
        return ShadowReport(self.client.shadow_report(self.name))

    def logging(self, rate: float, filename_prefix: str | None = None) -> dict[str, Any]:
        """Log ``rate`` (0 to 1; 0 turns it off) of the model's requests with their answers:
        every version's, REST and gRPC alike, as TF Serving's request logging does
        (``PredictionLog`` records in TFRecord files in the repository, under
        ``.logs/<model>/`` unless ``filename_prefix``, relative to the repository, says
        otherwise; rotated and capped by the server). Stored as the model's
        ``logging_config`` in ``models.config``. Returns the logging status: the rate and
        prefix, records ``logged`` and ``dropped`` (the server's log queue was full), the
        files, and the ``error`` that stopped logging, if one did."""
        return self.client.set_logging(self.name, rate, filename_prefix)

    def requests(self, n: int = 20, as_: str = "dataframe") -> Any:
        """The model's ``n`` (at most 1000) newest logged requests (see :meth:`logging`; every
        version's), newest first:

        - ``"dataframe"``: a pandas DataFrame with one row per example of each request:
          ``time`` (UTC, whole seconds), ``version``, ``method``, ``signature_name``,
          ``request`` (0: the newest), then ``inputs.<name>`` and ``outputs.<name>`` (a
          classify's or regress's inputs are its features, ``inputs.<feature>``);
        - ``"arrays"``: a list of dicts (``time``, ``version``, ``method``,
          ``signature_name``, ``inputs``, ``outputs``) with numpy arrays, read from the
          server's JSON (floats as float64, ``{"b64": ...}`` values as bytes; a classify's or
          regress's inputs as ``{"examples": [...]}``);
        - ``"logs"``: the ``tensorflow_serving.apis.prediction_log_pb2.PredictionLog``
          messages themselves, with their exact tensors (they can warm a version up:
          ``serve(model, name, example=m.requests(as_="logs"))``). Needs TensorFlow here.
        """
        if as_ == "logs":
            return self._prediction_logs(self.client.logged_tfrecord(self.name, n))
        if as_ not in ("arrays", "dataframe"):
            raise ValueError(f"as_ must be 'dataframe', 'arrays' or 'logs', got {as_!r}")
        records = [{**record, "inputs": self._from_json(record["inputs"]),
                    "outputs": self._from_json(record["outputs"])}
                   for record in self.client.logged_requests(self.name, n)]
        return records if as_ == "arrays" else self._requests_frame(records)

    @staticmethod
    def _prediction_logs(data: bytes) -> list[Any]:
        """The records of TFRecord file bytes as PredictionLog messages (TensorFlow's TFRecord
        reader, which reads files only: the bytes go through a temporary one)."""
        import os
        import tempfile

        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        with tempfile.TemporaryDirectory(prefix="tfserving-requests-") as tmp:
            path = os.path.join(tmp, "requests.tfrecord")
            with open(path, "wb") as f:
                f.write(data)
            return [prediction_log_pb2.PredictionLog.FromString(raw)
                    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator()]

    @classmethod
    def _from_json(cls, named: dict[str, Any]) -> dict[str, Any]:
        """A record's inputs or outputs with each tensor as a numpy array (``{"b64": ...}``
        values as bytes, strings as object arrays); ``examples`` stay lists of dicts."""
        import base64

        def plain(value: Any) -> Any:
            if isinstance(value, dict) and set(value) == {"b64"}:
                return base64.b64decode(value["b64"])
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        out: dict[str, Any] = {}
        for name, value in named.items():
            value = plain(value)
            if name in ("examples", "context") and not isinstance(value, (int, float)):
                out[name] = value
                continue
            arr = np.asarray(value)
            out[name] = np.asarray(value, dtype=object) if arr.dtype.kind in "SU" else arr
        return out

    @staticmethod
    def _requests_frame(records: list[dict[str, Any]]) -> Any:
        """Records (as :meth:`requests` makes them with ``"arrays"``) as one DataFrame row
        per example (a request whose tensors do not share a first dimension: one row)."""
        import pandas as pd

        rows: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            base = {"time": pd.Timestamp(record["time"], unit="s", tz="UTC"),
                    "version": record["version"], "method": record["method"],
                    "signature_name": record["signature_name"], "request": index}
            inputs, outputs = record["inputs"], record["outputs"]
            tensors = {f"outputs.{k}": v for k, v in outputs.items()}
            per_row: list[dict[str, Any]] = []
            if "examples" in inputs:
                context = inputs.get("context") or {}
                per_row = [{f"inputs.{k}": v[0] if isinstance(v, list) and len(v) == 1 else v
                            for k, v in {**context, **example}.items()}
                           for example in inputs["examples"]]
            else:
                tensors = {**{f"inputs.{k}": v for k, v in inputs.items()}, **tensors}
            sizes = {len(v) if np.ndim(v) > 0 else -1 for v in tensors.values()}
            count = len(per_row) if per_row else (sizes.pop() if len(sizes) == 1 else -1)
            if count < 0 or any(np.ndim(v) == 0 or len(v) != count for v in tensors.values()):
                whole = {"inputs.examples": inputs["examples"]} if per_row else {}
                rows.append({**base, **whole, **tensors})
                continue
            for i in range(count):
                rows.append({**base, **(per_row[i] if per_row else {}),
                             **{k: v[i] for k, v in tensors.items()}})
        return pd.DataFrame(rows)

    def predict_dataset(self, data: Any, output: str | None = None,
                        **options: Any) -> BulkJob:
        """Run this version over a data set as a server-side bulk job, with a progress bar;
        the job's handle (``.wait()``, ``.cancel()``, ``.result()``). ``data``: a path the
        server reads (file, directory, glob), or an array, dict of arrays or DataFrame sent
        along; ``options``: those of :func:`~.bulk.bulk_predict` (``batch_size``,
        ``output_format``, ``method``, ``wait``...)."""
        return bulk_predict(self.name, data, output, version=self.version, client=self.client,
                            **options)

    def evaluate(self, data: Any, labels: Any, against: Sequence[int] | None = None,
                 **options: Any) -> Evaluation:
        """Compare this version with ``against`` (default: the model's other AVAILABLE
        versions) on labelled data; see :func:`~.evaluation.evaluate`."""
        model = self.client.model(self.name)
        others = [int(v["version"]) for v in model.get("versions", [])
                  if v.get("state") == "AVAILABLE" and int(v["version"]) != self.version]
        versions = [*(against if against is not None else sorted(others)), self.version]
        return evaluate(self.name, data, labels, versions=versions, client=self.client,
                        **options)

    def wait(self, timeout: float = 300.0) -> ServedModel:
        wait_until_available(self.client, self.name, self.version, timeout)
        return self


def serve(model: Any, name: str, version: int | None = None, canary: float | None = None,
          *, example: Any = None, timeout: float = 300.0, quiet: bool = False) -> ServedModel:
    """Publish ``model`` as a new version of ``name`` and return once it is AVAILABLE.

    ``model``: a Keras model, a ``tf.Module`` with signatures, a SavedModel directory, or a
    Python callable / object with ``predict`` (``example``, a batch, gives its signature).
    ``example``, for a TensorFlow model: its warmup, replayed by the server before the version
    is AVAILABLE so the first requests are as fast as later ones (the version's status says
    how many ran, ``m.status()["warmup"]``): an array or dict of arrays (a few rows; one
    ``serving_default`` predict request of them, checked against the signature) or a list of
    ``PredictionLog`` records (e.g. logged requests), written as
    ``assets.extra/tf_serving_warmup_requests`` (see ``kernel.export``).
    ``version``: the version number (default: the next one). ``canary``: serve it to that
    fraction of the model's traffic instead of making it the serving version. Prints a ``curl``
    line unless ``quiet``. Raises ValueError for a bad name, a model that cannot be exported or
    an example that does not fit it, TFServingError with the server's message (its load error
    included), ServerUnavailable.
    """
    try:
        check_model_name(name)
    except ServingError as exc:
        raise ValueError(exc.message) from None
    if canary is not None and (isinstance(canary, bool) or not 0.0 <= float(canary) <= 1.0):
        raise ValueError(f"canary must be a fraction between 0 and 1, got {canary!r}")
    try:
        archive = export_version(model, example=example, model_name=name)
    except ExportError as exc:
        raise ValueError(str(exc)) from None
    client = connect()
    published = client.publish(
        name, archive, version, rollout="canary" if canary is not None else "stable",
        weight=float(canary) if canary is not None else None, timeout=timeout)
    served = ServedModel(client, name, published["version"], example_rows(example))
    if not quiet:
        is_canary = (published["model"]["canary"] or {}).get("version") == served.version
        share = f"{canary:.0%} canary" if canary is not None and is_canary else "serving"
        print(f"jupyter_tfserving: {name} version {served.version} is AVAILABLE ({share})\n"
              f"  {served.model_url}\n  {served.curl()}")
    return served
