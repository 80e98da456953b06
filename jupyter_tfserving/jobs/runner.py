"""Running one bulk job: a served version's Predict, Classify or Regress over a data set,
shard by shard.

A :class:`JobRunner` belongs to one service; :meth:`JobRunner.start` checks a :class:`JobSpec`
(the data set lists, the output directory is allowed, the model routes to a version with the
signature, the method suits the signature and the data), pins that version with a handle held
for the job's life (so the version unloads only after the job ends or is cancelled), and runs
the job on a thread of its own:

- each shard is read (:mod:`.sources`), its signature inputs cast to the signature's dtypes,
  cut into calls of ``batch_size`` rows (at most one batch of the model's batching) that go
  through the data plane's bulk lane (the shared scheduler runs them only when no online batch
  is ready; at most ``CALLS_IN_FLIGHT`` of a job at once), and written with its key columns
  (:mod:`.sinks`), whole or not at all; the manifest then lists the shard;
- TFRecord files of tf.Example feed their records, serialized, to a signature's one input that
  parses them: predict (a DT_STRING input), classify and regress (as TF Serving's Classify and
  Regress run a signature: what ``Servable.run_examples`` does, here through the bulk lane,
  with the data plane's signature method-name check and result checks, so a job's results
  equal the data plane's classify and regress). Classify and regress read TFRecord files
  only;
- a job started again on the same output directory with the same spec skips the shards the
  manifest lists (resume); a different spec there is refused;
- progress (rows and shards done, rows per second, ETA) is readable at any time from any
  thread; cancel stops between calls, keeping the complete shards; a failure names the file and
  rows, keeps the complete shards and leaves other jobs and online traffic alone.

With a ``state_file``, the runner records every job (spec, pinned version, state, progress)
there as JSON after each change of state and each shard; a runner made on that file after a
restart lists the jobs that were running as ``interrupted``, and :meth:`JobRunner.resume`
starts one again (it skips its complete shards). :meth:`JobRunner.stop` ends the running jobs
as ``interrupted`` too; :meth:`JobRunner.forget` takes an ended job off the list (its results
stay).

Nothing here imports tornado, Jupyter or TensorFlow.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..batching.scheduler import QUEUE_FULL_MESSAGE
from ..core.dtypes import FLOAT_DTYPES, INT_DTYPES
from ..core.handle import ServableHandle
from ..core.manager import Manager
from ..core.servable import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD, SignatureInfo
from ..core.serving_state import write_atomically
from ..core.status import Code, ServingError, invalid_argument
from ..dataplane import DataPlane, PredictCall, check_method, classifications, regressions
from . import sinks
from .sources import (
    DEFAULT_ROWS_PER_SHARD,
    EXAMPLES_COLUMN,
    Columns,
    Shard,
    Source,
    confine,
    open_source,
    select_inputs,
)

log = logging.getLogger(__name__)

# A job's calls queued or running at once: enough to keep the batch threads busy, few enough
# that a job holds little memory and leaves the bulk queue to other jobs.
CALLS_IN_FLIGHT = 8

# How long a job waits, at most, for room in a full bulk queue before it looks again.
_FULL_QUEUE_POLL_SECONDS = 0.05

# A job's method -> the signature method name and the words of the data plane's check of it
# (None: predict runs any signature).
METHODS: dict[str, tuple[str, str] | None] = {
    "predict": None, "classify": (CLASSIFY_METHOD, "classification"),
    "regress": (REGRESS_METHOD, "regression")}


class JobState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the server stopped while it ran; resumable


@dataclass(frozen=True)
class JobSpec:
    """What to run: ``model`` (with ``version`` or ``label``, else its unversioned route),
    ``signature``, ``method`` (``predict``, ``classify``, ``regress``), the data set ``inputs``
    (files, directories, globs) and where the results go (``output`` directory,
    ``output_format``: ``parquet``, ``npz`` or ``prediction_log``); ``batch_size`` rows per
    call, shards of ``rows_per_shard`` rows; an ``.npy`` array feeds the signature's only
    input. ``keys``: the columns copied from the data into the results beside the outputs
    (TFRecord: scalar features of every record); empty, every 1-D column that is not an input
    (TFRecord: none). A ``prediction_log`` holds no keys. The results' columns: the signature's
    outputs (predict), ``classes`` and ``scores`` [rows, K] (classify), ``value``
    (regress)."""

    model: str
    inputs: tuple[str, ...]
    output: str
    version: int | None = None
    label: str | None = None
    signature: str | None = None
    output_format: str = "parquet"
    batch_size: int = 256
    rows_per_shard: int = DEFAULT_ROWS_PER_SHARD
    method: str = "predict"
    keys: tuple[str, ...] = ()

    def manifest_spec(self, version: int) -> dict[str, Any]:
        """The part of the spec a resumed job must share (its manifest records it)."""
        return {"model": self.model, "version": version,
                "signature": self.signature or DEFAULT_SIGNATURE, "method": self.method,
                "inputs": list(self.inputs), "output_format": self.output_format,
                "rows_per_shard": self.rows_per_shard, "keys": list(self.keys)}


@dataclass
class Progress:
    rows_total: int = 0
    rows_done: int = 0
    shards_total: int = 0
    shards_done: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    rows_this_run: int = 0  # rows done since this run started (skipped shards left out)

    def rows_per_second(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        elapsed = (self.finished_at or now) - self.started_at
        return self.rows_this_run / elapsed if elapsed > 0 else None

    def eta_seconds(self, now: float) -> float | None:
        rate = self.rows_per_second(now)
        if not rate or self.finished_at is not None:
            return None
        return (self.rows_total - self.rows_done) / rate


@dataclass
class Job:
    """One job's spec, pinned version, state and progress (updated by its thread), and when
    it was created (epoch seconds; a resumed job keeps it)."""

    id: str
    spec: JobSpec
    version: int
    state: JobState = JobState.PENDING
    progress: Progress = field(default_factory=Progress)
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _interrupt: bool = field(default=False, repr=False)  # cancelled by the runner's stop()

    def to_json(self) -> dict[str, Any]:
        now = time.time()
        p = self.progress
        return {"id": self.id, "state": self.state.value, "model": self.spec.model,
                "version": self.version, "signature": self.spec.signature or DEFAULT_SIGNATURE,
                "method": self.spec.method, "inputs": list(self.spec.inputs),
                "keys": list(self.spec.keys), "output": self.spec.output,
                "output_format": self.spec.output_format, "created_at": self.created_at,
                "rows_total": p.rows_total, "rows_done": p.rows_done,
                "shards_total": p.shards_total, "shards_done": p.shards_done,
                "rows_per_second": p.rows_per_second(now), "eta_seconds": p.eta_seconds(now),
                "error": self.error}

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job's thread ended; False if ``timeout`` passed first."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()


def cast_inputs(columns: Columns, signature: SignatureInfo, where: str) -> Columns:
    """The signature's inputs in its dtypes (INVALID_ARGUMENT naming a column that does not
    fit)."""
    out: Columns = {}
    for name, info in signature.inputs.items():
        values = columns[name]
        dtype = FLOAT_DTYPES.get(info.dtype) or INT_DTYPES.get(info.dtype)
        if dtype is None:
            out[name] = values
            continue
        try:
            cast = values.astype(dtype, casting="unsafe") if values.dtype != object else \
                np.asarray(values, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise invalid_argument(f"{where}: column {name} does not fit the signature's "
                                   f"{info.dtype}: {exc}") from None
        if values.dtype.kind == "f" and np.dtype(dtype).kind in "iu" and not np.array_equal(
                cast, values):
            raise invalid_argument(f"{where}: column {name} holds fractions; the signature "
                                   f"wants {info.dtype}")
        out[name] = cast
    return out


class JobRunner:
    """Runs bulk jobs on one data plane (see the module docstring). ``roots``: the directories
    jobs may read from and write to."""

    def __init__(self, dataplane: DataPlane, manager: Manager, roots: Sequence[str],
                 state_file: str | None = None) -> None:
        self._dataplane = dataplane
        self._manager = manager
        self.roots = [os.path.realpath(r) for r in roots]
        self.state_file = state_file
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._load()

    # ------------------------------------------------------------------ the jobs' record

    def _load(self) -> None:
        """The recorded jobs; those that were running are ``interrupted`` now. A record that
        cannot be read is logged and left alone (no job is listed from it)."""
        if not self.state_file:
            return
        try:
            with open(self.state_file, encoding="utf-8") as f:
                records = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("jupyter_tfserving: cannot read the jobs in %s: %s", self.state_file, exc)
            return
        for record in records if isinstance(records, list) else []:
            try:
                spec = JobSpec(**{**record["spec"], "inputs": tuple(record["spec"]["inputs"]),
                                  "keys": tuple(record["spec"].get("keys", ()))})
                progress = Progress(**record["progress"])
                job = Job(str(record["id"]), spec, int(record["version"]),
                          JobState(record["state"]), progress, record.get("error"),
                          float(record.get("created_at", progress.started_at or 0.0)))
            except (KeyError, TypeError, ValueError):
                continue
            if job.state in (JobState.PENDING, JobState.RUNNING):
                job.state = JobState.INTERRUPTED
            self._jobs[job.id] = job

    def _save(self) -> None:
        """Record every job (see the module docstring); a failure to write is logged."""
        if not self.state_file:
            return
        with self._lock:
            records = [{"id": j.id, "spec": dataclasses.asdict(j.spec), "version": j.version,
                        "state": j.state.value, "progress": dataclasses.asdict(j.progress),
                        "error": j.error, "created_at": j.created_at}
                       for j in self._jobs.values()]
        with self._save_lock:
            try:
                write_atomically(self.state_file, json.dumps(records, indent=1) + "\n")
            except OSError as exc:
                log.error("jupyter_tfserving: cannot record the jobs in %s: %s",
                          self.state_file, exc)

    def resume(self, job_id: str) -> Job:
        """Start an ended job again with its spec; it skips its complete shards."""
        job = self.get(job_id)
        if job.state in (JobState.PENDING, JobState.RUNNING):
            raise ServingError(Code.ALREADY_EXISTS, f"Job {job_id} is running")
        spec = job.spec
        if spec.version is None and spec.label is None:  # the version it ran, not the route's
            spec = dataclasses.replace(spec, version=job.version)
        return self._start(job_id, spec, job.created_at)

    def stop(self, timeout: float | None = None) -> None:
        """End the running jobs as ``interrupted`` (resumable), waiting up to ``timeout``
        seconds for each to stop after its current call."""
        running = [j for j in self.jobs() if j.state is JobState.RUNNING]
        for job in running:
            job._interrupt = True
            job._cancel.set()
        for job in running:
            job.wait(timeout)
        self._save()

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ServingError(Code.NOT_FOUND, f"No job {job_id}")
        return job

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def cancel(self, job_id: str) -> Job:
        """Ask the job to stop after its current call (its complete shards stay)."""
        job = self.get(job_id)
        job._cancel.set()
        return job

    def forget(self, job_id: str) -> Job:
        """Take an ended job off the list (and the state file); its results stay. NOT_FOUND
        for an unknown job, FAILED_PRECONDITION for a pending or running one."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise ServingError(Code.NOT_FOUND, f"No job {job_id}")
            if job.state in (JobState.PENDING, JobState.RUNNING):
                raise ServingError(Code.FAILED_PRECONDITION, f"Job {job_id} is {job.state.value}"
                                   ": cancel it, then forget it once it has ended")
            del self._jobs[job_id]
        self._save()
        return job

    def start(self, job_id: str, spec: JobSpec) -> Job:
        """Check ``spec``, pin its version and start the job's thread; the job. Blocking
        (lists the data set): call it off the event loop. Raises ServingError for a bad spec
        (nothing started) and ALREADY_EXISTS for a job id in use."""
        return self._start(job_id, spec, None)

    def _start(self, job_id: str, spec: JobSpec, created_at: float | None) -> Job:
        check_spec(spec)
        output = confine(spec.output, self.roots)
        handle = self._manager.acquire(spec.model, spec.version, spec.label)
        try:
            signature_name = spec.signature or DEFAULT_SIGNATURE
            signatures = handle.servable.signatures()
            if signature_name not in signatures:
                raise invalid_argument(f"Model {spec.model} version {handle.id.version} has no "
                                       f"signature {signature_name}")
            signature = signatures[signature_name]
            prepared = prepare_job(spec, output, self.roots, signature_name, signature,
                                   handle.id.version,
                                   self._dataplane.options.signature_method_name_check)
            source, pinned, manifest = prepared.source, prepared.spec, prepared.manifest
            wanted = pinned.manifest_spec(handle.id.version)
            job = Job(job_id, pinned, handle.id.version)
            if created_at is not None:
                job.created_at = created_at
            with self._lock:
                if job_id in self._jobs and self._jobs[job_id].state in (
                        JobState.PENDING, JobState.RUNNING):
                    raise ServingError(Code.ALREADY_EXISTS, f"Job {job_id} is running")
                self._jobs[job_id] = job
        except BaseException:
            handle.release()
            raise
        done = sinks.completed_shards(output, manifest)
        job.progress = Progress(rows_total=source.rows, shards_total=len(source.shards),
                                rows_done=sum(done.values()), shards_done=len(done))
        plan = _Plan(signature_name, signature, prepared.examples_input)
        job._thread = threading.Thread(
            target=self._run, args=(job, source, plan, handle, wanted, done),
            name=f"tfserving-job-{job_id}", daemon=True)
        job.state = JobState.RUNNING
        self._save()
        job._thread.start()
        return job

    def _run(self, job: Job, source: Source, plan: _Plan, handle: ServableHandle,
             wanted: dict[str, Any], done: dict[int, int]) -> None:
        progress = job.progress
        progress.started_at = time.time()
        shards: dict[str, Any] = {str(i): {"file": os.path.basename(
            sinks.shard_file(job.spec.output, i, job.spec.output_format)), "rows": rows}
            for i, rows in done.items()}
        stopped = JobState.CANCELLED
        todo = [shard for shard in source.shards if shard.index not in done]
        # The next shard is read while this one's calls run, so the model does not wait for
        # the file (one read ahead: a shard's columns are held at most twice).
        reader = ThreadPoolExecutor(1, thread_name_prefix=f"tfserving-job-{job.id}-read")
        ahead = reader.submit(source.read, todo[0]) if todo else None
        try:
            for i, shard in enumerate(todo):
                if job._cancel.is_set():
                    job.state = JobState.INTERRUPTED if job._interrupt else stopped
                    return
                assert ahead is not None
                columns = ahead.result()
                ahead = reader.submit(source.read, todo[i + 1]) if i + 1 < len(todo) else None
                rows = self._shard(job, source, shard, columns, plan, handle)
                if rows is None:
                    job.state = JobState.INTERRUPTED if job._interrupt else stopped
                    return
                shards[str(shard.index)] = {"file": os.path.basename(
                    sinks.shard_file(job.spec.output, shard.index, job.spec.output_format)),
                    "rows": rows}
                sinks.write_manifest(job.spec.output, {"spec": wanted, "shards": shards})
                progress.rows_done += rows
                progress.rows_this_run += rows
                progress.shards_done += 1
                self._save()
            job.state = JobState.COMPLETED
        except ServingError as exc:
            job.error, job.state = exc.message, JobState.FAILED
        except Exception as exc:  # a bug: the job fails, the server goes on
            log.exception("jupyter_tfserving: job %s failed", job.id)
            job.error, job.state = f"Internal error: {type(exc).__name__}", JobState.FAILED
        finally:
            reader.shutdown(wait=True, cancel_futures=True)
            progress.finished_at = time.time()
            handle.release()
            self._save()

    def _shard(self, job: Job, source: Source, shard: Shard, columns: Columns, plan: _Plan,
               handle: ServableHandle) -> int | None:
        """Run and write one shard (it has at least one row) on the version ``handle`` pins;
        its rows (None: cancelled midway, nothing written). Returns or raises only once every
        call it made has ended."""
        spec = job.spec
        where = source.where(shard)
        if plan.examples_input is not None:
            inputs = {plan.examples_input: columns[EXAMPLES_COLUMN]}
        else:
            inputs = cast_inputs(select_inputs(columns, plan.signature.inputs, where),
                                 plan.signature, where)
        keys = key_columns(columns, spec.keys, inputs, where)
        futures: list[Future[dict[str, np.ndarray]]] = []
        try:
            try:
                rows = self._call_rows(spec)
                for start in range(0, shard.rows, rows):
                    chunk = {k: v[start:start + rows] for k, v in inputs.items()}
                    pending = [f for f in futures if not f.done()]
                    if len(pending) >= CALLS_IN_FLIGHT:
                        wait(pending, return_when=FIRST_COMPLETED)
                    future = self._submit(job, handle, plan, chunk, futures)
                    if future is None:
                        return None
                    futures.append(future)
                outputs = [f.result() for f in futures]
            finally:
                wait(futures)  # they run on the job's handle, released once the job ends
            results = result_columns(spec.method, {name: np.concatenate([o[name] for o in outputs])
                                             for name in outputs[0]})
        except ServingError as exc:
            raise ServingError(exc.code, f"{where}: {exc.message}") from None
        path = sinks.shard_file(spec.output, shard.index, spec.output_format)
        if spec.output_format == "prediction_log":
            log = sinks.LogSpec(spec.method, spec.model, job.version, plan.signature_name)
            return sinks.write_prediction_log(path, log, inputs, results)
        return sinks.write_shard(path, {**keys, **results}, spec.output_format)


    def _call_rows(self, spec: JobSpec) -> int:
        """Rows per call: ``batch_size``, at most what one batch of the model's batching
        holds (a larger task would be refused)."""
        params = self._dataplane.batching_parameters(spec.model)
        return spec.batch_size if params is None else min(spec.batch_size,
                                                          params.execution_batch_size)

    def _submit(self, job: Job, handle: ServableHandle, plan: _Plan, chunk: Columns,
                futures: Sequence[Future[Columns]]) -> Future[Columns] | None:
        """One call on ``chunk`` in the data plane's bulk lane, on the version ``handle``
        pins; None when the job is cancelled first. While the bulk queue is full (this job's
        earlier calls, or other jobs', wait there), it waits for one of this shard's
        ``futures`` to end, or a moment when none is pending, and tries again."""
        while not job._cancel.is_set():
            # The call runs on the job's handle, lent: the pinned version stays usable for the
            # job even while it unloads (new requests no longer reach it); the caller waits for
            # the call before the job releases its handle.
            call = PredictCall(handle.lend(), plan.signature_name, plan.signature, chunk)
            try:
                return self._dataplane.submit_predict(call, bulk=True)
            except ServingError as exc:
                if exc.message != QUEUE_FULL_MESSAGE:
                    raise
            pending = [f for f in futures if not f.done()]
            if pending:
                wait(pending, timeout=_FULL_QUEUE_POLL_SECONDS, return_when=FIRST_COMPLETED)
            else:
                time.sleep(_FULL_QUEUE_POLL_SECONDS)
        return None


def check_spec(spec: JobSpec) -> None:
    """INVALID_ARGUMENT for a spec's values that no job can run (before anything is looked
    at): both engines call it first."""
    if spec.batch_size <= 0:
        raise invalid_argument(f"batch_size must be positive; was {spec.batch_size}")
    if spec.output_format not in sinks.OUTPUT_FORMATS:
        raise invalid_argument(f"Unknown output format {spec.output_format!r} (one of "
                               f"{', '.join(sorted(sinks.OUTPUT_FORMATS))})")
    if spec.method not in METHODS:
        raise invalid_argument(f"Unknown method {spec.method!r} (one of {', '.join(METHODS)})")
    if spec.keys and spec.output_format == "prediction_log":
        raise invalid_argument("A prediction_log holds no key columns: leave out keys")


@dataclass(frozen=True)
class PreparedJob:
    """A checked job on a version: its data set listed, its spec with the confined output
    directory, the input that takes serialized tf.Examples (or None) and the manifest already
    in the output directory (empty: none)."""

    source: Source
    spec: JobSpec
    examples_input: str | None
    manifest: dict[str, Any]


def prepare_job(spec: JobSpec, output: str, roots: Sequence[str], signature_name: str,
                signature: SignatureInfo, version: int, method_check: bool) -> PreparedJob:
    """What both engines check once they know the version and its signature, in this order:
    the signature's method (``method_check``: the server's signature_method_name_check), the
    data set (listed inside ``roots``, cut into shards), that the data suits the method and
    signature, and that ``output`` (created) holds no other job's results
    (FAILED_PRECONDITION). Blocking."""
    checked = METHODS[spec.method]
    if checked is not None and method_check:
        check_method(signature, *checked)
    only = next(iter(signature.inputs)) if len(signature.inputs) == 1 else "x"
    source = open_source(list(spec.inputs), roots, rows_per_shard=spec.rows_per_shard,
                         npy_column=only, keys=spec.keys)
    examples_input = examples_input_of(spec, source.format, signature, signature_name, version)
    os.makedirs(output, exist_ok=True)
    pinned = dataclasses.replace(spec, output=output)
    manifest = sinks.read_manifest(output) or {}
    if manifest and manifest.get("spec") != pinned.manifest_spec(version):
        raise ServingError(Code.FAILED_PRECONDITION, f"{output} holds another job's results "
                           f"(its manifest: {manifest.get('spec')})")
    return PreparedJob(source, pinned, examples_input, manifest)


@dataclass(frozen=True)
class _Plan:
    """How a started job runs its shards: the signature, and the input that takes a TFRecord
    shard's serialized tf.Examples (None: the data's columns are the signature's inputs)."""

    signature_name: str
    signature: SignatureInfo
    examples_input: str | None


def examples_input_of(spec: JobSpec, fmt: str, signature: SignatureInfo, signature_name: str,
                    version: int) -> str | None:
    """The signature's input that takes serialized tf.Examples when the data is TFRecord,
    else None: a signature with one input (for predict, a DT_STRING one: for classify and
    regress, as in TF Serving, the graph decides). INVALID_ARGUMENT for classify or regress on
    other data, or a signature that cannot take the records."""
    if fmt != "tfrecord":
        if spec.method != "predict":
            raise invalid_argument(f"{spec.method} reads TFRecord files of tf.Example; the "
                                   f"data set {', '.join(spec.inputs)} is {fmt}")
        return None
    what = f"Signature {signature_name} of model {spec.model} version {version}"
    if len(signature.inputs) != 1:
        raise invalid_argument(f"{what} has the inputs {', '.join(signature.inputs)}: TFRecord "
                               "data needs a signature with one input, which takes serialized "
                               "tf.Examples")
    ((name, info),) = signature.inputs.items()
    if spec.method == "predict" and info.dtype != "DT_STRING":
        raise invalid_argument(f"{what} takes {name} as {info.dtype}: TFRecord data needs a "
                               "signature whose one input takes serialized tf.Examples "
                               "(DT_STRING)")
    return name


def key_columns(columns: Columns, keys: Sequence[str], inputs: Columns, where: str) -> Columns:
    """The columns a shard's results carry: ``keys`` (INVALID_ARGUMENT naming ``where`` and
    the missing ones), else every 1-D column that is neither an input nor the records."""
    if keys:
        missing = [k for k in keys if k not in columns]
        if missing:
            raise invalid_argument(f"{where}: no key column {', '.join(missing)} (the data's: "
                                   f"{', '.join(c for c in columns if c != EXAMPLES_COLUMN)})")
        return {k: columns[k] for k in keys}
    return {k: v for k, v in columns.items()
            if k not in inputs and k != EXAMPLES_COLUMN and v.ndim == 1}


def result_columns(method: str, outputs: Columns) -> Columns:
    """The columns a shard's results are written as: predict, the signature's outputs, by
    name (a SavedModel's come in no fixed order, and every shard of a job, in any process and
    on either engine, must have the same columns); classify, :data:`~.sinks.CLASSES`
    (labels) and :data:`~.sinks.SCORES` (float32), both [rows, K], as the data plane's
    :func:`~..dataplane.classifications` checks and reads them ("" and 0.0 where the
    signature has no such output, as TF Serving's ClassificationResult holds them); regress,
    :data:`~.sinks.VALUE` (float32 [rows], its :func:`~..dataplane.regressions`).
    INVALID_ARGUMENT for outputs that do not fit."""
    if method == "classify":
        classified = classifications(outputs)
        shape = (classified.num_examples, classified.num_classes)
        labels = np.empty(shape, dtype=object)
        labels[...] = classified.labels if classified.labels is not None else ""
        scores = classified.scores if classified.scores is not None else np.zeros(
            shape, np.float32)
        return {sinks.CLASSES: labels, sinks.SCORES: scores}
    if method == "regress":
        return {sinks.VALUE: regressions(outputs)}
    return {name: outputs[name] for name in sorted(outputs)}
