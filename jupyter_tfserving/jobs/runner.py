"""Running one bulk job: a served version's Predict over a data set, shard by shard.

A :class:`JobRunner` belongs to one service; :meth:`JobRunner.start` checks a :class:`JobSpec`
(the data set lists, the output directory is allowed, the model routes to a version with the
signature), pins that version with a handle held for the job's life (so the version unloads
only after the job ends or is cancelled), and runs the job on a thread of its own:

- each shard is read (:mod:`.sources`), its signature inputs cast to the signature's dtypes,
  cut into calls of ``batch_size`` rows that go through the data plane's bulk lane (the shared
  scheduler runs them only when no online batch is ready), and written with the shard's other
  columns as keys (:mod:`.sinks`), whole or not at all; the manifest then lists the shard;
- a job started again on the same output directory with the same spec skips the shards the
  manifest lists (resume); a different spec there is refused;
- progress (rows and shards done, rows per second, ETA) is readable at any time from any
  thread; cancel stops between calls, keeping the complete shards; a failure names the file and
  rows, keeps the complete shards and leaves other jobs and online traffic alone.

With a ``state_file``, the runner records every job (spec, pinned version, state, progress)
there as JSON after each change of state and each shard; a runner made on that file after a
restart lists the jobs that were running as ``interrupted``, and :meth:`JobRunner.resume`
starts one again (it skips its complete shards). :meth:`JobRunner.stop` ends the running jobs
as ``interrupted`` too.

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
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.dtypes import FLOAT_DTYPES, INT_DTYPES
from ..core.manager import Manager
from ..core.servable import DEFAULT_SIGNATURE, SignatureInfo
from ..core.serving_state import write_atomically
from ..core.status import Code, ServingError, invalid_argument
from ..dataplane import DataPlane, ModelRef
from . import sinks
from .sources import (
    DEFAULT_ROWS_PER_SHARD,
    Columns,
    Shard,
    Source,
    confine,
    open_source,
    select_inputs,
)

log = logging.getLogger(__name__)


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
    ``signature``, the data set ``inputs`` (files, directories, globs) and where the results go
    (``output`` directory, ``output_format``); ``batch_size`` rows per call, shards of
    ``rows_per_shard`` rows; an ``.npy`` array feeds the signature's only input."""

    model: str
    inputs: tuple[str, ...]
    output: str
    version: int | None = None
    label: str | None = None
    signature: str | None = None
    output_format: str = "parquet"
    batch_size: int = 256
    rows_per_shard: int = DEFAULT_ROWS_PER_SHARD

    def manifest_spec(self, version: int) -> dict[str, Any]:
        """The part of the spec a resumed job must share (its manifest records it)."""
        return {"model": self.model, "version": version,
                "signature": self.signature or DEFAULT_SIGNATURE,
                "inputs": list(self.inputs), "output_format": self.output_format,
                "rows_per_shard": self.rows_per_shard}


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
    """One job's spec, pinned version, state and progress (updated by its thread)."""

    id: str
    spec: JobSpec
    version: int
    state: JobState = JobState.PENDING
    progress: Progress = field(default_factory=Progress)
    error: str | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _interrupt: bool = field(default=False, repr=False)  # cancelled by the runner's stop()

    def to_json(self) -> dict[str, Any]:
        now = time.time()
        p = self.progress
        return {"id": self.id, "state": self.state.value, "model": self.spec.model,
                "version": self.version, "signature": self.spec.signature or DEFAULT_SIGNATURE,
                "inputs": list(self.spec.inputs), "output": self.spec.output,
                "output_format": self.spec.output_format,
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


def _cast(columns: Columns, signature: SignatureInfo, where: str) -> Columns:
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
                spec = JobSpec(**{**record["spec"], "inputs": tuple(record["spec"]["inputs"])})
                job = Job(str(record["id"]), spec, int(record["version"]),
                          JobState(record["state"]), Progress(**record["progress"]),
                          record.get("error"))
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
                        "error": j.error} for j in self._jobs.values()]
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
        return self.start(job_id, spec)

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

    def start(self, job_id: str, spec: JobSpec) -> Job:
        """Check ``spec``, pin its version and start the job's thread; the job. Blocking
        (lists the data set): call it off the event loop. Raises ServingError for a bad spec
        (nothing started) and ALREADY_EXISTS for a job id in use."""
        if spec.batch_size <= 0:
            raise invalid_argument(f"batch_size must be positive; was {spec.batch_size}")
        if spec.output_format not in sinks.OUTPUT_FORMATS:
            raise invalid_argument(f"Unknown output format {spec.output_format!r}")
        output = confine(spec.output, self.roots)
        handle = self._manager.acquire(spec.model, spec.version, spec.label)
        try:
            signature_name = spec.signature or DEFAULT_SIGNATURE
            signatures = handle.servable.signatures()
            if signature_name not in signatures:
                raise invalid_argument(f"Model {spec.model} version {handle.id.version} has no "
                                       f"signature {signature_name}")
            signature = signatures[signature_name]
            only = next(iter(signature.inputs)) if len(signature.inputs) == 1 else "x"
            source = open_source(list(spec.inputs), self.roots,
                                 rows_per_shard=spec.rows_per_shard, npy_column=only)
            os.makedirs(output, exist_ok=True)
            pinned = dataclasses.replace(spec, output=output)
            manifest = sinks.read_manifest(output) or {}
            wanted = pinned.manifest_spec(handle.id.version)
            if manifest and manifest.get("spec") != wanted:
                raise ServingError(Code.FAILED_PRECONDITION, f"{output} holds another job's "
                                   f"results (its manifest: {manifest.get('spec')})")
            job = Job(job_id, pinned, handle.id.version)
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
        job._thread = threading.Thread(
            target=self._run, args=(job, source, signature_name, signature, handle, wanted,
                                    done),
            name=f"tfserving-job-{job_id}", daemon=True)
        job.state = JobState.RUNNING
        self._save()
        job._thread.start()
        return job

    def _run(self, job: Job, source: Source, signature_name: str, signature: SignatureInfo,
             handle: Any, wanted: dict[str, Any], done: dict[int, int]) -> None:
        progress = job.progress
        progress.started_at = time.time()
        shards: dict[str, Any] = {str(i): {"file": os.path.basename(
            sinks.shard_file(job.spec.output, i, job.spec.output_format)), "rows": rows}
            for i, rows in done.items()}
        stopped = JobState.CANCELLED
        try:
            for shard in source.shards:
                if job._cancel.is_set():
                    job.state = JobState.INTERRUPTED if job._interrupt else stopped
                    return
                if shard.index in done:
                    continue
                rows = self._shard(job, source, shard, signature_name, signature)
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
            progress.finished_at = time.time()
            handle.release()
            self._save()

    def _shard(self, job: Job, source: Source, shard: Shard, signature_name: str,
               signature: SignatureInfo) -> int | None:
        """Run and write one shard; its rows (None: cancelled midway, nothing written)."""
        where = f"{shard.path} rows {shard.start}-{shard.stop}"
        columns = source.read(shard)
        inputs = _cast(select_inputs(columns, signature.inputs, where), signature, where)
        keys = {k: v for k, v in columns.items() if k not in signature.inputs and v.ndim == 1}
        ref = ModelRef(job.spec.model, job.version)
        futures: list[Future[dict[str, np.ndarray]]] = []
        try:
            for start in range(0, shard.rows, job.spec.batch_size):
                if job._cancel.is_set():
                    return None
                chunk = {k: v[start:start + job.spec.batch_size] for k, v in inputs.items()}

                def decode(sig: SignatureInfo, c: Columns = chunk) -> Columns:
                    return c

                call = self._dataplane.begin_predict(ref, signature_name, decode)
                futures.append(self._dataplane.submit_predict(call, bulk=True))
            outputs = [f.result() for f in futures]
        except ServingError as exc:
            raise ServingError(exc.code, f"{where}: {exc.message}") from None
        if not outputs:
            results: Columns = {name: np.empty((0,)) for name in signature.outputs}
        else:
            results = {name: np.concatenate([o[name] for o in outputs])
                       for name in outputs[0]}
        path = sinks.shard_file(job.spec.output, shard.index, job.spec.output_format)
        return sinks.write_shard(path, {**keys, **results}, job.spec.output_format)
