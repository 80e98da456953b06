"""Bulk jobs on Apache Beam: the server's job (DESIGN §9) for data that outgrows one machine.

The optional ``beam`` extra (``pip install jupyter_tfserving[beam]``). This module imports
``apache_beam`` at its top; nothing else in the package imports it, so the package works without
Beam. Three pieces:

- :func:`resolve_version` finds a version in a model repository (its directory or its
  ``models.config``) by number, by label or unversioned, as the server would route it, from the
  config, the serving state file beside it and the version directories on disk (see the
  function for the one rule that differs: a canary takes no unversioned traffic here);
- :class:`RepositoryModelHandler` is a ``ModelHandler`` for ``apache_beam.ml.inference``: it
  pins one version at construction (in the process that builds the pipeline, so every worker
  runs the same one), loads it on each worker with the package's own platform loader
  (``platforms.make_loader``: SavedModel, TF Lite, python), and runs one chosen signature on
  Beam's batches. An element is one row (:data:`Row`); each gets a ``PredictionResult`` whose
  ``inference`` is that row of every output;
- :func:`build_job_pipeline` and :func:`run_job_on_beam` run a :class:`~.runner.JobSpec` as
  the server's :class:`~.runner.JobRunner` does: the same checks before anything runs, the same
  sources listed into the same shards, per shard the same file (``part-NNNNN.<ext>`` with the
  same key columns and result columns, in the same order and dtypes) and the same
  ``manifest.json``, so an output directory is interchangeable between the two engines: either
  resumes the other's, skipping the shards its manifest lists. The pipeline: the shards to do
  -> each read on a worker (inputs cast, keys chosen by the runner's own functions) -> one
  element per row through ``RunInference`` -> the results packed per shard -> grouped by shard
  with its keys -> the shard's file, its rows back in order -> the manifest. Beam writes the
  manifest once, after every shard of the run is written (the server rewrites it after each
  shard): a run that fails leaves complete part files that the manifest does not list, and a
  rerun does them again. Result columns come in the order of the signature's outputs as the
  process that builds the pipeline loads them (a SavedModel's order is its process's own), so
  every worker writes the same order.

Who calls: a notebook or a script, in the process that builds the pipeline (it needs the
repository and the data set on a file system it can list); the workers then read the shards,
load the version and write the results, so the repository, the data and the output directory
must be on a file system every worker sees at the same paths (local disk for ``DirectRunner``,
a shared mount for Flink, Spark or Dataflow workers). Paths are confined to ``roots`` as the
server confines them only when ``roots`` are given. Errors found before the pipeline runs are
ServingError with the server's codes and messages; errors on the workers are reported by the
runner (``DirectRunner``: a RuntimeError naming the ServingError and its message).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    ModelHandler,
    PredictionResult,
    RunInference,
)
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from ..core import defaults
from ..core.model_spec import ModelSpec
from ..core.repository import discover_models, list_versions
from ..core.routing import traffic_split
from ..core.servable import DEFAULT_SIGNATURE, LoadSpec, Servable, SignatureInfo
from ..core.serving_state import STATE_FILE_NAME, ModelServingState, ServingStateFile
from ..core.state import ServableId
from ..core.status import Code, ServingError, invalid_argument, not_found
from ..model_config import read_model_config
from ..platforms import make_loader
from ..platforms.python import read_platform
from . import sinks
from .runner import (
    JobSpec,
    cast_inputs,
    check_spec,
    key_columns,
    prepare_job,
    result_columns,
)
from .sources import EXAMPLES_COLUMN, Columns, Shard, Source, confine, select_inputs

__all__ = [
    "BeamJob",
    "RepositoryModelHandler",
    "ResolvedVersion",
    "Row",
    "build_job_pipeline",
    "resolve_version",
    "run_job_on_beam",
]

# One element of :class:`RepositoryModelHandler`: one row, by input name; each value is the
# row's own array (the column's shape without its batch dimension; strings as ``object`` arrays
# of bytes), as ``column[i, ...]`` gives it.
Row = dict[str, np.ndarray]

# Without roots every absolute path is allowed (open_source always confines).
_ANYWHERE = (os.path.abspath(os.sep),)


# ----------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class ResolvedVersion:
    """One version of one model in a repository: its directory and its platform."""

    model: str
    version: int
    path: str
    platform: str


def _repository_models(repository: str) -> tuple[list[ModelSpec], str]:
    """The models of ``repository`` (a model root, or a ``models.config`` file) as the server
    reads them: a root's ``models.config`` if it has one, else its discovered models; and the
    directory the serving state file lives in (the config's)."""
    if os.path.isfile(repository):
        return read_model_config(repository), os.path.dirname(os.path.abspath(repository))
    if not os.path.isdir(repository):
        raise not_found(f"No model repository at {repository} (a model root directory or its "
                        f"{defaults.CONFIG_FILE_NAME})")
    root = os.path.abspath(repository)
    config = os.path.join(root, defaults.CONFIG_FILE_NAME)
    return (read_model_config(config) if os.path.isfile(config) else discover_models(root)), root


def resolve_version(repository: str, model: str, version: int | None = None,
                    label: str | None = None) -> ResolvedVersion:
    """The version of ``model`` that the server of ``repository`` (its model root, or the path
    of its ``models.config``) would answer a request for ``version``, ``label`` or neither
    with, from what is on disk.

    The versions the server would serve: those of the model's directory that its version
    policy picks, those its labels name and its previous ``stable`` (kept for a rollback), less
    those a user unloaded (the serving state file, ``jupyter_tfserving.json``, beside the
    config). ``version``: one of those, else NOT_FOUND. ``label``: a label of ``models.config``
    that names one of those, else INVALID_ARGUMENT (the server holds such a label pending and
    answers as for an unknown one). Neither: the ``stable`` label's version if it names one of
    those, else the highest of them (TF Serving's latest). The server sends a ``canary`` its
    weight of unversioned requests, chosen per request; a job is one choice for all its rows,
    so here the canary takes none: name it (``label="canary"``) to run it. The server routes to
    AVAILABLE versions; from disk a version is taken to load. The platform is the config's
    unless the version directory names its own (``servable.json``), as the server's source
    does. Raises ServingError; blocking (reads the config, state file and directories)."""
    if version is not None and label is not None:
        raise invalid_argument("A request may name a version or a label, not both")
    specs, config_dir = _repository_models(repository)
    spec = next((s for s in specs if s.name == model), None)
    if spec is None:
        raise not_found(f"Could not find model {model} in {repository} (its models: "
                        f"{', '.join(s.name for s in specs) or 'none'})")
    state = ServingStateFile(os.path.join(config_dir, STATE_FILE_NAME)).load().get(
        model, ModelServingState())
    on_disk = {v: p for v, p in list_versions(spec.base_path).items() if v not in state.unloaded}
    pinned = {state.previous_stable} if state.previous_stable is not None else set()
    served = spec.version_policy.aspired(on_disk) | {
        v for v in (*spec.labels.values(), *pinned) if v in on_disk}
    if version is not None:
        if version not in served:
            raise not_found(f"Servable not found for request: Specific({model}, {version}): "
                            f"the versions served are {sorted(served) or 'none'} (on disk: "
                            f"{sorted(list_versions(spec.base_path)) or 'none'}; version "
                            f"policy {spec.version_policy}; unloaded: "
                            f"{sorted(state.unloaded) or 'none'})")
        chosen = version
    elif label is not None:
        if spec.labels.get(label) not in served:
            why = (f"it names version {spec.labels[label]}, which is not served" if label in
                   spec.labels else f"the labels are {sorted(spec.labels) or 'none'}")
            raise invalid_argument(f"Unrecognized servable version label: {label} ({why})")
        chosen = spec.labels[label]
    else:
        live = {k: v for k, v in spec.labels.items() if v in served}
        split = traffic_split(live, 0.0, served)
        if not split:
            raise not_found(f"Servable not found for request: Latest({model}): no version of "
                            f"it is on disk under {spec.base_path}")
        (chosen,) = split
    path = on_disk[chosen]
    return ResolvedVersion(model, chosen, path, read_platform(path) or spec.platform)


# ----------------------------------------------------------------------------- the handler


def _stack(values: Sequence[np.ndarray], name: str, where: str) -> np.ndarray:
    try:
        return np.stack([np.asarray(v) for v in values])
    except ValueError as exc:  # rows of different shapes
        raise invalid_argument(f"{where}: the rows of input {name} do not stack into one "
                               f"batch: {exc}") from None


class RepositoryModelHandler(ModelHandler[Row, PredictionResult, Servable]):
    """Runs signature ``signature`` (default ``serving_default``) of one version of ``model``
    in ``repository``, picked by ``version``, ``label`` or neither (:func:`resolve_version`,
    at construction: the handler is pinned to it). Elements are :data:`Row`; Beam batches them
    (``batch_size`` rows, fewer at the end of a bundle), the handler stacks a batch into the
    signature's inputs, casts them to its dtypes as the server's jobs do, and returns one
    ``PredictionResult(row, {output: that row of it}, model_id="<model>/<version>")`` per
    row. ``signing_key`` (python servables) and ``prefer_tflite_model`` are the server's
    options of the same names. ``handler_kwargs`` go to Beam's ``ModelHandler``
    (``large_model``, ``model_copies``, ``max_batch_duration_secs``, ...)."""

    def __init__(self, repository: str, model: str, *, version: int | None = None,
                 label: str | None = None, signature: str | None = None, batch_size: int = 256,
                 signing_key: bytes | None = None, prefer_tflite_model: bool = False,
                 **handler_kwargs: Any) -> None:
        if batch_size <= 0:
            raise invalid_argument(f"batch_size must be positive; was {batch_size}")
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size, **handler_kwargs)
        self.resolved = resolve_version(repository, model, version, label)
        self.signature_name = signature or DEFAULT_SIGNATURE
        self._signing_key = signing_key
        self._prefer_tflite_model = prefer_tflite_model

    def _load(self) -> Servable:
        r = self.resolved
        extra: dict[str, Any] = {}
        if r.platform == "python" and self._signing_key is not None:
            extra["signing_key"] = self._signing_key
        elif r.platform == "tensorflow" and self._prefer_tflite_model:
            extra["prefer_tflite_model"] = True
        return make_loader(ServableId(r.model, r.version),
                           LoadSpec(r.path, r.platform, extra)).load()

    def _signature(self, servable: Servable) -> SignatureInfo:
        signatures = servable.signatures()
        if self.signature_name not in signatures:
            raise invalid_argument(f"Model {self.resolved.model} version {self.resolved.version}"
                                   f" has no signature {self.signature_name} (its signatures: "
                                   f"{', '.join(sorted(signatures))})")
        return signatures[self.signature_name]

    def signature_info(self) -> SignatureInfo:
        """The chosen signature, from a load of the version in this process (then closed):
        what the process building a pipeline checks a job against. INVALID_ARGUMENT when the
        version has no such signature; the load's error when it does not load."""
        servable = self._load()
        try:
            return self._signature(servable)
        finally:
            servable.close()

    def load_model(self) -> Servable:
        """The pinned version, loaded (on a Beam worker); INVALID_ARGUMENT without the
        signature."""
        servable = self._load()
        try:
            self._signature(servable)
        except BaseException:
            servable.close()
            raise
        return servable

    def run_inference(self, batch: Sequence[Row], model: Servable,
                      inference_args: dict[str, Any] | None = None
                      ) -> Iterable[PredictionResult]:
        self.validate_inference_args(inference_args)
        if not batch:
            return []
        r = self.resolved
        where = f"Model {r.model} version {r.version} signature {self.signature_name}"
        signature = self._signature(model)
        select_inputs(batch[0], signature.inputs, where)  # names the missing inputs
        stacked = {name: _stack([row[name] for row in batch], name, where)
                   for name in signature.inputs}
        outputs = model.run(self.signature_name, cast_inputs(stacked, signature, where))
        for name, values in outputs.items():
            if np.ndim(values) == 0 or len(values) != len(batch):
                raise invalid_argument(f"{where}: output {name} has the shape "
                                       f"{np.shape(values)}, not one row per input row "
                                       f"({len(batch)})")
        model_id = f"{r.model}/{r.version}"
        return [PredictionResult(row, {name: values[i, ...] for name, values in outputs.items()},
                                 model_id) for i, row in enumerate(batch)]

    def validate_inference_args(self, inference_args: dict[str, Any] | None) -> None:
        if inference_args:
            raise invalid_argument("RepositoryModelHandler takes no inference_args (a "
                                   f"signature's inputs are the row's): {sorted(inference_args)}")

    def get_num_bytes(self, batch: Sequence[Row]) -> int:
        """The batch's array bytes, for Beam's metrics (its default pickles every batch)."""
        return sum(int(np.asarray(v).nbytes) for row in batch for v in row.values())

    def get_metrics_namespace(self) -> str:
        return "jupyter_tfserving"


# ----------------------------------------------------------------------------- a job


@dataclass(frozen=True)
class BeamJob:
    """A job built into a pipeline: its spec (``output`` resolved), the pinned version, its
    signature's outputs in the order the building process's load lists them, the listed source
    and the shards a previous run completed (index -> rows), skipped here."""

    spec: JobSpec
    version: int
    signature_name: str
    outputs: tuple[str, ...]
    examples_input: str | None
    source: Source
    done: Mapping[int, int]

    @property
    def todo(self) -> tuple[Shard, ...]:
        return tuple(s for s in self.source.shards if s.index not in self.done)

    def summary(self, seconds: float) -> dict[str, Any]:
        """What a completed run did, in the server job's words (``Job.to_json``)."""
        spec = self.spec
        this_run = sum(s.rows for s in self.todo)
        return {"state": "completed", "engine": "beam", "model": spec.model,
                "version": self.version, "signature": self.signature_name,
                "method": spec.method, "inputs": list(spec.inputs), "keys": list(spec.keys),
                "output": spec.output, "output_format": spec.output_format,
                "rows_total": self.source.rows, "rows_done": self.source.rows,
                "shards_total": len(self.source.shards),
                "shards_done": len(self.source.shards), "shards_skipped": len(self.done),
                "rows_this_run": this_run, "seconds": seconds,
                "rows_per_second": this_run / seconds if seconds > 0 else None}


class _ReadShard(beam.DoFn):
    """A shard -> its rows ``((shard, row), Row)`` for the handler, and on the ``keys``
    output ``(shard, (rows, key columns))``: the inputs cast and the keys chosen as the
    server's job does for that shard."""

    def __init__(self, job: BeamJob, signature: SignatureInfo) -> None:
        self._job = job
        self._signature = signature

    def process(self, shard: Shard) -> Iterator[Any]:
        job, signature = self._job, self._signature
        where = job.source.where(shard)
        columns = job.source.read(shard)
        inputs: Columns
        if job.examples_input is not None:
            inputs = {job.examples_input: columns[EXAMPLES_COLUMN]}
        else:
            inputs = cast_inputs(select_inputs(columns, signature.inputs, where), signature,
                                 where)
        yield beam.pvalue.TaggedOutput(
            "keys", (shard.index, (shard.rows, key_columns(columns, job.spec.keys, inputs, where))))
        for i in range(shard.rows):
            yield (shard.index, i), {name: values[i, ...] for name, values in inputs.items()}


# A pack: rows of one shard (their indices in it), their outputs and, for a prediction_log,
# their inputs, each stacked; what crosses the shuffle instead of one element per row.
_Pack = tuple[np.ndarray, dict[str, np.ndarray], "dict[str, np.ndarray] | None"]


def _pack(items: list[tuple[int, Mapping[str, np.ndarray], Row | None]]) -> _Pack:
    rows = np.array([item[0] for item in items], dtype=np.int64)
    outputs = {name: np.stack([item[1][name] for item in items]) for name in items[0][1]}
    first = items[0][2]
    inputs = None if first is None else {
        name: np.stack([item[2][name] for item in items if item[2] is not None])
        for name in first}
    return rows, outputs, inputs


class _PackByShard(beam.DoFn):
    """``((shard, row), result)`` -> ``(shard, pack)``: a bundle's results of one shard,
    up to ``PACK_ROWS`` rows a pack (one element to encode for the shuffle, not one a row)."""

    PACK_ROWS = 4096

    def __init__(self, with_inputs: bool) -> None:
        self._with_inputs = with_inputs
        self._items: dict[int, list[tuple[int, Mapping[str, np.ndarray], Row | None]]] = {}

    def start_bundle(self) -> None:
        self._items = {}

    def process(self, keyed: tuple[tuple[int, int], Any]) -> Iterator[tuple[int, _Pack]]:
        (index, row), result = keyed  # result: a PredictionResult (its fields are generic)
        outputs: Mapping[str, np.ndarray] = result.inference
        inputs: Row | None = result.example if self._with_inputs else None
        items = self._items.setdefault(index, [])
        items.append((row, outputs, inputs))
        if len(items) >= self.PACK_ROWS:
            yield index, _pack(self._items.pop(index))

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for index, items in self._items.items():
            yield WindowedValue((index, _pack(items)), GlobalWindow().max_timestamp(),
                                (GlobalWindow(),))
        self._items = {}


class _WriteShard(beam.DoFn):
    """``(shard, {"rows": its packs, "keys": [(rows, key columns)]})`` -> the shard's file,
    written as the server's job writes it; yields ``(shard, rows)``."""

    def __init__(self, job: BeamJob) -> None:
        self._job = job

    def process(self, item: tuple[int, Mapping[str, Iterable[Any]]]) -> Iterator[tuple[int, int]]:
        job, (index, groups) = self._job, item
        shard = job.source.shards[index]
        where = job.source.where(shard)
        ((rows, keys),) = list(groups["keys"])
        packs: list[_Pack] = list(groups["rows"])
        got = np.concatenate([p[0] for p in packs]) if packs else np.empty(0, np.int64)
        order = np.argsort(got, kind="stable")
        if not np.array_equal(got[order], np.arange(rows)):
            raise ServingError(Code.INTERNAL, f"{where}: {len(got)} results came back for "
                               f"{rows} rows")
        spec = job.spec
        # A SavedModel's outputs come in an order of its process's own (protobuf map order):
        # every worker writes them in the order of the process that built the pipeline.
        names = [n for n in job.outputs if n in packs[0][1]]
        names += [n for n in packs[0][1] if n not in names]
        try:
            outputs = result_columns(spec.method, {
                name: np.concatenate([p[1][name] for p in packs])[order] for name in names})
        except ServingError as exc:
            raise ServingError(exc.code, f"{where}: {exc.message}") from None
        path = sinks.shard_file(spec.output, index, spec.output_format)
        if spec.output_format == "prediction_log":
            inputs = {name: np.concatenate([p[2][name] for p in packs if p[2] is not None])[order]
                      for name in packs[0][2] or {}}
            log = sinks.LogSpec(spec.method, spec.model, job.version, job.signature_name)
            yield index, sinks.write_prediction_log(path, log, inputs, outputs)
        else:
            yield index, sinks.write_shard(path, {**keys, **outputs}, spec.output_format)


def _write_manifest(written: list[tuple[int, int]], job: BeamJob) -> None:
    """The manifest of every complete shard (earlier runs' and this one's), as the server's
    job writes it; nothing when this run wrote no shard (as the server's)."""
    if not written:
        return
    spec = job.spec
    shards = {str(i): {"file": os.path.basename(sinks.shard_file(spec.output, i,
                                                                 spec.output_format)),
                       "rows": rows}
              for i, rows in sorted({**job.done, **dict(written)}.items())}
    sinks.write_manifest(spec.output, {"spec": spec.manifest_spec(job.version),
                                       "shards": shards})


class _RunJob(beam.PTransform):
    def __init__(self, job: BeamJob, signature: SignatureInfo,
                 handler: RepositoryModelHandler) -> None:
        super().__init__()
        self._job, self._signature, self._handler = job, signature, handler

    def expand(self, begin: Any) -> Any:
        job = self._job
        read = (begin
                | "Shards" >> beam.Create(list(job.todo))
                | "Spread" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(_ReadShard(job, self._signature)).with_outputs(
                    "keys", main="rows"))
        with_inputs = job.spec.output_format == "prediction_log"
        results = (read.rows
                   | "Run" >> RunInference(KeyedModelHandler(self._handler))
                   | "Pack" >> beam.ParDo(_PackByShard(with_inputs)))
        written = ({"rows": results, "keys": read.keys}
                   | "Gather" >> beam.CoGroupByKey()
                   | "Write" >> beam.ParDo(_WriteShard(job)))
        return (written
                | "Written" >> beam.combiners.ToList()
                | "Manifest" >> beam.Map(_write_manifest, job))


def build_job_pipeline(pipeline: beam.Pipeline, spec: JobSpec, repository: str, *,
                       roots: Sequence[str] | None = None, signing_key: bytes | None = None,
                       prefer_tflite_model: bool = False,
                       signature_method_name_check: bool = True,
                       label: str | None = None) -> BeamJob:
    """Add the job ``spec`` over the model repository ``repository`` (a model root or its
    ``models.config``) to ``pipeline``; the job as built. Checks everything the server's
    :meth:`~.runner.JobRunner.start` checks, in its order and with its errors, before adding
    anything: the spec's values, the output directory (inside ``roots`` when given), the
    version (:func:`resolve_version`) and its signature (one load of the version here), the
    method, the data set (listed here, cut into the same shards) and the manifest already in
    the output directory (another spec's: FAILED_PRECONDITION); the shards it lists are
    skipped. The options after ``roots`` are the server's of the same names. Blocking."""
    check_spec(spec)
    allowed = list(roots) if roots is not None else list(_ANYWHERE)
    output = confine(spec.output, allowed)
    handler = RepositoryModelHandler(
        repository, spec.model, version=spec.version, label=spec.label,
        signature=spec.signature, batch_size=spec.batch_size, signing_key=signing_key,
        prefer_tflite_model=prefer_tflite_model)
    version, signature_name = handler.resolved.version, handler.signature_name
    signature = handler.signature_info()
    prepared = prepare_job(spec, output, allowed, signature_name, signature, version,
                           signature_method_name_check)
    pinned, source, examples_input = prepared.spec, prepared.source, prepared.examples_input
    manifest = prepared.manifest
    job = BeamJob(pinned, version, signature_name, tuple(signature.outputs), examples_input,
                  source, sinks.completed_shards(output, manifest))
    _ = pipeline | (label or f"Job {output}") >> _RunJob(job, signature, handler)
    return job


def run_job_on_beam(spec: JobSpec, repository: str,
                    pipeline_options: PipelineOptions | Sequence[str] | None = None, *,
                    roots: Sequence[str] | None = None, signing_key: bytes | None = None,
                    prefer_tflite_model: bool = False,
                    signature_method_name_check: bool = True) -> dict[str, Any]:
    """Run the job ``spec`` (see :func:`build_job_pipeline`) on a pipeline of its own with
    ``pipeline_options`` (a ``PipelineOptions`` or command-line flags such as
    ``["--runner=FlinkRunner", ...]``; none: ``DirectRunner``), wait for it, and return what
    it did (:meth:`BeamJob.summary`). Raises ServingError for a bad spec (nothing run),
    ABORTED when the pipeline ends other than DONE, and the runner's error for a failure on
    the workers. Blocking."""
    if pipeline_options is None:  # not PipelineOptions(): it would parse this process's argv
        options = PipelineOptions(flags=[])
    elif isinstance(pipeline_options, PipelineOptions):
        options = pipeline_options
    else:
        options = PipelineOptions(flags=list(pipeline_options))
    pipeline = beam.Pipeline(options=options)
    job = build_job_pipeline(pipeline, spec, repository, roots=roots, signing_key=signing_key,
                             prefer_tflite_model=prefer_tflite_model,
                             signature_method_name_check=signature_method_name_check)
    started = time.monotonic()
    state = pipeline.run().wait_until_finish()
    if state != PipelineState.DONE:
        raise ServingError(Code.ABORTED, f"The Beam pipeline of the job on {spec.output} ended "
                           f"{state}")
    return job.summary(time.monotonic() - started)
