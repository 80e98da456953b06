"""Bulk jobs from the notebook: ``bulk_predict(name, data, ...)`` and ``m.predict_dataset``.

A job runs in the server (``P/api/jobs``, DESIGN §9), not in the kernel: it goes on when the
kernel restarts or dies, and :func:`jobs` / :func:`job` find it again. :func:`bulk_predict`
sends the job and returns a :class:`BulkJob` handle; with ``wait=True`` (the default) it first
follows the job with a ``tqdm.auto`` progress bar fed by the job's progress (rows done of the
total, rows per second), and raises :class:`JobFailed` with the server's error (naming the
file and rows) when the job fails. Interrupting the wait (Ctrl-C, the notebook's stop button)
cancels the job; its complete shards stay and :meth:`BulkJob.resume` finishes it.

Data is a path the server can read (a file, a directory or a glob, relative to the notebook's
directory; the server confines it to its ``root_dir`` and the repository), or a small data set
held in memory (a numpy array, a dict of arrays, a pandas DataFrame), uploaded first as one
shard (``P/api/datasets``). Results are read back with :meth:`BulkJob.result`, from the job's
output directory, which the kernel reads where it shares the server's file system.

Runs on the kernel's thread and blocks it; talks to the server only over REST.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .client import TFServingClient, TFServingError

# Where a job's results go when the notebook names no directory (under the server's root_dir).
DEFAULT_OUTPUT_DIR = "tfserving_jobs"
ENDED = ("completed", "failed", "cancelled", "interrupted")


class JobFailed(RuntimeError):
    """A bulk job ended without completing: ``job`` is its last state (``error`` says why)."""

    def __init__(self, job: dict[str, Any]) -> None:
        why = job.get("error") or job["state"]
        super().__init__(f"Job {job['id']} ({job['model']} version {job['version']}) "
                         f"{job['state']}: {why}")
        self.job = job


def upload(client: TFServingClient, data: Any) -> str:
    """Send an in-memory data set (a numpy array: the signature's only input; a dict of
    arrays; a pandas DataFrame) to the server; the path a job names it by. Strings travel as
    bytes; nothing is pickled (the server refuses pickles)."""
    buffer = io.BytesIO()
    if isinstance(data, np.ndarray):
        np.save(buffer, _no_objects("the array", data), allow_pickle=False)
        fmt = "npy"
    elif isinstance(data, Mapping):
        arrays: dict[str, Any] = {str(k): _no_objects(str(k), np.asarray(v))
                                  for k, v in data.items()}
        np.savez(buffer, **arrays)
        fmt = "npz"
    elif hasattr(data, "to_parquet"):  # a pandas DataFrame
        data.to_parquet(buffer, index=False)
        fmt = "parquet"
    else:
        raise TypeError(f"Cannot send a {type(data).__name__} as a data set: give a path, a "
                        "numpy array, a dict of arrays or a pandas DataFrame")
    stored = client.call("POST", "/api/datasets", data=buffer.getvalue(),
                         params={"format": fmt},
                         headers={"Content-Type": "application/octet-stream"}, timeout=600)
    return str(stored["path"])


def _no_objects(name: str, array: np.ndarray) -> np.ndarray:
    """``array`` with strings as fixed-width bytes (an object array would need pickle)."""
    if array.dtype.kind == "U":
        return np.char.encode(array, "utf-8")
    if array.dtype == object:
        values = array.reshape(-1)
        if not all(isinstance(v, (str, bytes)) for v in values):
            raise TypeError(f"{name} holds objects that are neither strings nor bytes; give "
                            "numbers or strings")
        return np.array([v.encode("utf-8") if isinstance(v, str) else v
                         for v in values]).reshape(array.shape)
    return array


class BulkJob:
    """A bulk job in the server, seen from the notebook. ``info`` is its last known state
    (``Job`` in the OpenAPI document): ``state``, ``rows_done``/``rows_total``,
    ``rows_per_second``, ``eta_seconds``, ``error``..."""

    def __init__(self, client: TFServingClient, info: dict[str, Any]) -> None:
        self.client = client
        self.info = info

    def __repr__(self) -> str:
        i = self.info
        return (f"BulkJob(id={i['id']!r}, model={i['model']!r}, version={i['version']}, "
                f"state={i['state']!r}, rows={i['rows_done']}/{i['rows_total']})")

    @property
    def id(self) -> str:
        return str(self.info["id"])

    @property
    def state(self) -> str:
        return str(self.info["state"])

    @property
    def output(self) -> str:
        return str(self.info["output"])

    def refresh(self) -> dict[str, Any]:
        """The job's state now."""
        self.info = self.client.call("GET", f"/api/jobs/{self.id}")
        return self.info

    def wait(self, timeout: float | None = None, *, progress: bool = True,
             poll: float = 0.25) -> BulkJob:
        """Follow the job until it ends (a progress bar unless ``progress`` is False); self
        when it completed. Raises JobFailed when it failed or was cancelled, TimeoutError after
        ``timeout`` seconds (the job goes on). Interrupting the wait cancels the job."""
        bar = _progress_bar(self.info) if progress else None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                info = self.refresh()
                if bar is not None:
                    _update(bar, info)
                if info["state"] in ENDED:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"Job {self.id} still {info['state']} after {timeout}s")
                time.sleep(poll)
        except KeyboardInterrupt:
            self.cancel()
            raise
        finally:
            if bar is not None:
                bar.close()
        if self.state != "completed":
            raise JobFailed(self.info)
        return self

    def cancel(self) -> dict[str, Any]:
        """Stop the job after its current call (its complete shards stay; :meth:`resume`
        finishes it). On an ended job: the server forgets it (its results stay)."""
        self.info = self.client.call("DELETE", f"/api/jobs/{self.id}")
        return self.info

    def resume(self, *, wait: bool = True, progress: bool = True) -> BulkJob:
        """Run an ended job again; it skips the shards already written."""
        self.info = self.client.call("POST", f"/api/jobs/{self.id}:resume")
        return self.wait(progress=progress) if wait else self

    def result(self, *, as_frame: bool = True) -> Any:
        """The job's results, read from its output directory in shard order: a pandas
        DataFrame (``as_frame``; a row's vector in one column), else a dict of numpy arrays;
        for ``prediction_log`` output, the PredictionLog messages. The job must have completed
        and its output directory must be readable from the kernel."""
        if self.state != "completed":
            self.refresh()
            if self.state != "completed":
                raise JobFailed(self.info)
        return read_results(self.output, self.info.get("output_format", "parquet"),
                            as_frame=as_frame)


def read_results(directory: str, output_format: str, *, as_frame: bool = True) -> Any:
    """A job's output directory read back (see :meth:`BulkJob.result`), with the readers
    jobs read their inputs with."""
    from ..jobs import sinks
    from ..jobs.sources import open_source

    manifest = sinks.read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"No job results in {directory} (no manifest there; is it on "
                                "this machine?)")
    files = [os.path.join(directory, entry["file"]) for _, entry in
             sorted(manifest.get("shards", {}).items(), key=lambda kv: int(kv[0]))]
    if not files:
        return pd_or_dict({}, as_frame)
    source = open_source(files, [directory], rows_per_shard=1 << 62)
    parts = [source.read(shard) for shard in source.shards]
    if output_format == "prediction_log":
        from tensorflow_serving.apis import prediction_log_pb2

        logs = []
        for part in parts:
            (records,) = part.values()
            for record in records:
                log = prediction_log_pb2.PredictionLog()
                log.ParseFromString(record)
                logs.append(log)
        return logs
    arrays = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    return pd_or_dict(arrays, as_frame)


def pd_or_dict(arrays: dict[str, np.ndarray], as_frame: bool) -> Any:
    """``arrays`` as a pandas DataFrame (a row's vector in one cell) or as they are."""
    if not as_frame:
        return arrays
    import pandas as pd

    return pd.DataFrame({name: list(v) if v.ndim > 1 else v for name, v in arrays.items()})


def _progress_bar(info: dict[str, Any]) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=info.get("rows_total") or None, unit="rows", unit_scale=True,
                desc=f"{info['model']} v{info['version']} {info['id']}", leave=True)


def _update(bar: Any, info: dict[str, Any]) -> None:
    bar.total = info.get("rows_total") or bar.total
    bar.n = info.get("rows_done", 0)
    rate = info.get("rows_per_second")
    bar.set_postfix_str(f"{info['state']}" + (f", {rate:,.0f} rows/s" if rate else ""),
                        refresh=False)
    bar.refresh()


def job_request(name: str, data: Any, output: str | None, client: TFServingClient, *,
                version: int | None = None, label: str | None = None,
                signature_name: str | None = None, method: str = "predict",
                output_format: str = "parquet", batch_size: int | None = None,
                rows_per_shard: int | None = None, keys: Sequence[str] | None = None,
                job_id: str | None = None) -> dict[str, Any]:
    """The ``POST P/api/jobs`` body for a job (in-memory ``data`` uploaded first)."""
    if isinstance(data, (str, os.PathLike)):
        inputs: list[str] = [os.path.abspath(os.fspath(data))]
    elif isinstance(data, (list, tuple)) and data and all(
            isinstance(p, (str, os.PathLike)) for p in data):
        inputs = [os.path.abspath(os.fspath(p)) for p in data]
    else:
        inputs = [upload(client, data)]
    if output is None:
        output = os.path.join(DEFAULT_OUTPUT_DIR, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-"
                                                  f"{os.urandom(2).hex()}")
    else:
        output = os.path.abspath(os.fspath(output))
    body: dict[str, Any] = {"model": name, "inputs": inputs, "output": output,
                            "method": method, "output_format": output_format}
    for key, value in (("version", version), ("label", label),
                       ("signature_name", signature_name), ("batch_size", batch_size),
                       ("rows_per_shard", rows_per_shard), ("id", job_id)):
        if value is not None:
            body[key] = value
    if keys is not None:
        body["keys"] = list(keys)
    return body


def bulk_predict(name: str, data: Any, output: str | None = None, *,
                 version: int | None = None, label: str | None = None,
                 signature_name: str | None = None, method: str = "predict",
                 output_format: str = "parquet", batch_size: int | None = None,
                 rows_per_shard: int | None = None, keys: Sequence[str] | None = None,
                 job_id: str | None = None, wait: bool = True, progress: bool = True,
                 engine: str = "server", pipeline_options: Any = None,
                 repository: str | None = None,
                 client: TFServingClient | None = None) -> BulkJob:
    """Run model ``name`` (``version`` or ``label``, else its unversioned route, pinned when
    the job starts) over ``data`` as a server-side bulk job writing to ``output`` (a
    directory; default ``tfserving_jobs/<name>-<time>`` under the server's root_dir) in
    ``output_format`` (``parquet``, ``npz`` or ``prediction_log``). ``method``: ``predict``,
    or ``classify``/``regress`` over TFRecord files of tf.Example. Returns the job's handle,
    after following it to its end unless ``wait`` is False. Raises TFServingError for a job
    the server refuses (the message says why), JobFailed when it fails.

    ``engine="beam"`` runs the same job on Apache Beam instead (the ``beam`` extra), from this
    process: ``pipeline_options`` (a ``PipelineOptions`` or flags; default ``DirectRunner``)
    choose the runner, the version is loaded from ``repository`` (default: the directory
    holding the model's base path, as the server reports it), and the output is the same
    files as the server's job would write. It blocks until the pipeline ends."""
    from .serving import connect

    client = client or connect()
    body = job_request(name, data, output, client, version=version, label=label,
                       signature_name=signature_name, method=method,
                       output_format=output_format, batch_size=batch_size,
                       rows_per_shard=rows_per_shard, keys=keys, job_id=job_id)
    if engine == "beam":
        return _run_on_beam(client, body, repository, pipeline_options)
    if engine != "server":
        raise ValueError(f"engine must be 'server' or 'beam', got {engine!r}")
    job = BulkJob(client, client.call("POST", "/api/jobs", json_body=body, timeout=600))
    return job.wait(progress=progress) if wait else job


class BeamRun(BulkJob):
    """A job that ran on Apache Beam from this kernel (``bulk_predict(engine="beam")``): it has
    ended when it is returned; ``info`` is what it did (``run_job_on_beam``'s summary)."""

    def refresh(self) -> dict[str, Any]:
        return self.info

    def wait(self, timeout: float | None = None, *, progress: bool = True,
             poll: float = 0.25) -> BulkJob:
        return self

    def cancel(self) -> dict[str, Any]:
        raise ValueError("A Beam run has ended when it is returned; there is nothing to cancel")

    def resume(self, *, wait: bool = True, progress: bool = True) -> BulkJob:
        raise ValueError("Run bulk_predict(engine='beam') again: it skips complete shards")


def _run_on_beam(client: TFServingClient, body: dict[str, Any], repository: str | None,
                 pipeline_options: Any) -> BeamRun:
    from ..jobs.beam import run_job_on_beam
    from ..jobs.runner import JobSpec
    from ..jobs.sources import DEFAULT_ROWS_PER_SHARD

    if repository is None:
        base_path = client.model(body["model"]).get("base_path")
        if not base_path:
            raise ValueError(f"The server does not say where model {body['model']} is: give "
                             "repository=")
        repository = os.path.dirname(base_path)
    output = body["output"]
    if not os.path.isabs(output):  # the server's default, under its root_dir: here, the cwd
        output = os.path.abspath(output)
    spec = JobSpec(model=body["model"], inputs=tuple(body["inputs"]), output=output,
                   version=body.get("version"), label=body.get("label"),
                   signature=body.get("signature_name"), method=body["method"],
                   output_format=body["output_format"],
                   batch_size=body.get("batch_size") or JobSpec.batch_size,
                   rows_per_shard=body.get("rows_per_shard") or DEFAULT_ROWS_PER_SHARD,
                   keys=tuple(body.get("keys") or ()))
    summary = run_job_on_beam(spec, repository, pipeline_options)
    return BeamRun(client, {"id": "beam", "error": None, **summary})


def jobs(client: TFServingClient | None = None) -> list[BulkJob]:
    """Every job the server knows (those started by earlier kernels included)."""
    from .serving import connect

    client = client or connect()
    return [BulkJob(client, info) for info in client.call("GET", "/api/jobs")["jobs"]]


def job(job_id: str, client: TFServingClient | None = None) -> BulkJob:
    """The handle of job ``job_id`` (TFServingError 404 when the server has none)."""
    from .serving import connect

    client = client or connect()
    return BulkJob(client, client.call("GET", f"/api/jobs/{job_id}"))


__all__ = ["BulkJob", "JobFailed", "TFServingError", "bulk_predict", "job", "jobs",
           "read_results", "upload"]
