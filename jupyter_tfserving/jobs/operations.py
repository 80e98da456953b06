"""The bulk-job operations every front end calls: ``P/api/jobs`` and ``P/api/datasets``.

:class:`JobOperations` turns a client's JSON into a :class:`~.runner.JobSpec` (each member
checked once, here: a wrong type, an unknown member or a bad value is INVALID_ARGUMENT naming
it), resolves relative data paths against the server's ``root_dir`` (``base_dir``), gives the
job an id and hands it to the service's :class:`~.runner.JobRunner`; it answers jobs as JSON
(``Job.to_json``). :meth:`JobOperations.store_dataset` keeps a small data set a notebook sent
(an ``.npy``, an ``.npz`` or a Parquet file) under the repository's hidden ``.datasets``
directory, after checking that it reads as one (arrays without pickle), so that a job can name
it.

Every method blocks (file I/O, listing a data set): front ends call them on worker threads.
Errors are ServingError with TF Serving's codes. Nothing here imports tornado, Jupyter or
TensorFlow.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Mapping
from typing import IO, Any

from ..core.status import ServingError, invalid_argument
from ..core.validation import check_label, check_model_name, parse_version
from . import sinks
from .runner import JobRunner, JobSpec, JobState
from .sources import DEFAULT_ROWS_PER_SHARD

# Where uploaded data sets are kept, under the repository (hidden: never taken for a model).
DATASETS_DIR = ".datasets"
DATASET_FORMATS = {"npy": ".npy", "npz": ".npz", "parquet": ".parquet"}
_JOB_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")
# A call's rows are one batch of the scheduler's bulk lane; more would only hold memory.
MAX_BATCH_SIZE = 1 << 20

_MEMBERS = {"id", "model", "version", "label", "signature_name", "method", "inputs", "output",
            "output_format", "batch_size", "rows_per_shard", "keys"}


def check_job_id(job_id: object) -> str:
    """``job_id`` if it is 1-64 letters, digits, '_', '-' or '.' not starting with '.' or
    '-', else INVALID_ARGUMENT."""
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise invalid_argument(f"Invalid job id {job_id!r}: use 1-64 letters, digits, '_', '-' "
                               "or '.', not starting with '.' or '-'")
    return job_id


def _string(doc: Mapping[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise invalid_argument(f"'{name}' must be a non-empty string")
    return value


def _strings(doc: Mapping[str, Any], name: str) -> tuple[str, ...] | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid_argument(f"'{name}' must be a string or a list of non-empty strings")
    return tuple(value)


def _count(doc: Mapping[str, Any], name: str, default: int, most: int) -> int:
    value = doc.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise invalid_argument(f"'{name}' must be an integer from 1 to {most}; was {value!r}")
    return value


class JobOperations:
    """The jobs of one service, as its front ends see them (see the module docstring).

    ``runner``: the service's job runner; ``base_dir``: what a relative data path is relative
    to (the Jupyter server's ``root_dir``); ``datasets_dir``: where uploaded data sets go (one
    of the runner's roots, or inside one)."""

    def __init__(self, runner: JobRunner, base_dir: str, datasets_dir: str) -> None:
        self.runner = runner
        self.base_dir = os.path.abspath(base_dir)
        self.datasets_dir = os.path.abspath(datasets_dir)

    def _path(self, path: str) -> str:
        return os.path.join(self.base_dir, os.path.expanduser(path))

    def spec(self, doc: Mapping[str, Any]) -> JobSpec:
        """The job a request body asks for (INVALID_ARGUMENT naming what is wrong)."""
        unknown = sorted(set(doc) - _MEMBERS)
        if unknown:
            raise invalid_argument(f"Unknown member(s) {', '.join(map(repr, unknown))}; a job "
                                   f"takes {', '.join(sorted(_MEMBERS))}")
        model = doc.get("model")
        if model is None:
            raise invalid_argument("'model' is required")
        version = parse_version(doc["version"]) if doc.get("version") is not None else None
        label = check_label(doc["label"]) if doc.get("label") is not None else None
        if version is not None and label is not None:
            raise invalid_argument("Give 'version' or 'label', not both")
        inputs = _strings(doc, "inputs")
        output = _string(doc, "output")
        if not inputs or output is None:
            raise invalid_argument("'inputs' (data files, directories or globs) and 'output' "
                                   "(a directory) are required")
        output_format = _string(doc, "output_format") or "parquet"
        if output_format not in sinks.OUTPUT_FORMATS:
            raise invalid_argument(f"Unknown output format {output_format!r} (one of "
                                   f"{', '.join(sorted(sinks.OUTPUT_FORMATS))})")
        method = _string(doc, "method") or "predict"
        return JobSpec(
            model=check_model_name(model), version=version, label=label,
            signature=_string(doc, "signature_name"), method=method,
            inputs=tuple(self._path(p) for p in inputs), output=self._path(output),
            output_format=output_format,
            batch_size=_count(doc, "batch_size", JobSpec.batch_size, MAX_BATCH_SIZE),
            rows_per_shard=_count(doc, "rows_per_shard", DEFAULT_ROWS_PER_SHARD, 1 << 40),
            keys=_strings(doc, "keys") or (),
        )

    def start(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Start the job ``doc`` describes; the job as JSON (its ``id``: the body's, else a
        new one). ALREADY_EXISTS when a job with that id is running."""
        job_id = check_job_id(doc["id"]) if doc.get("id") is not None else uuid.uuid4().hex[:12]
        return self.runner.start(job_id, self.spec(doc)).to_json()

    def list(self) -> dict[str, Any]:
        """Every job the runner knows, oldest first."""
        jobs = sorted(self.runner.jobs(), key=lambda j: (j.created_at, j.id))
        return {"jobs": [job.to_json() for job in jobs]}

    def get(self, job_id: str) -> dict[str, Any]:
        return self.runner.get(job_id).to_json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a pending or running job (it stops after its current call, keeping its
        complete shards); forget an ended one (its results stay on disk). The job as it is
        after the call."""
        job = self.runner.get(job_id)
        if job.state in (JobState.PENDING, JobState.RUNNING):
            return self.runner.cancel(job_id).to_json()
        self.runner.forget(job_id)
        return job.to_json()

    def resume(self, job_id: str) -> dict[str, Any]:
        """Run an ended job again; it skips the shards its manifest lists."""
        return self.runner.resume(job_id).to_json()

    def store_dataset(self, body: IO[bytes], fmt: str) -> dict[str, Any]:
        """Keep an uploaded data set (``fmt``: ``npy``, ``npz`` or ``parquet``) for jobs to
        read: it is copied under :attr:`datasets_dir` with a new name once it reads as that
        format.
        Returns ``{"path", "rows", "columns"}``; INVALID_ARGUMENT for anything else."""
        if fmt not in DATASET_FORMATS:
            raise invalid_argument(f"Unknown data set format {fmt!r} (one of "
                                   f"{', '.join(sorted(DATASET_FORMATS))})")
        os.makedirs(self.datasets_dir, exist_ok=True)
        path = os.path.join(self.datasets_dir, uuid.uuid4().hex + DATASET_FORMATS[fmt])
        described: list[Any] = []

        def write(tmp: str) -> None:  # checked before it is renamed into place
            with open(tmp, "wb") as out:
                shutil.copyfileobj(body, out)
            described.extend(_describe(tmp, fmt))

        sinks.write_then_rename(path, write)
        rows, columns = described
        return {"path": path, "rows": rows, "columns": columns}


def _describe(path: str, fmt: str) -> tuple[int, list[str]]:
    """The rows and columns of a data set file (INVALID_ARGUMENT when it is not one)."""
    from .sources import open_source

    try:
        source = open_source(path, [os.path.dirname(path)])
        columns = source.read(source.shards[0]) if source.shards else {}
    except ServingError as exc:
        raise invalid_argument(f"The upload is not a readable {fmt} data set: "
                               f"{exc.message.replace(path, 'the upload')}") from None
    return source.rows, list(columns)
