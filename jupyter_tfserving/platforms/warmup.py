"""Model warmup, TF Serving's (``servables/tensorflow/saved_model_warmup_util.cc``).

A version directory may hold ``assets.extra/tf_serving_warmup_requests``: a TFRecord file of
``PredictionLog`` records (predict, classify, regress, multi-inference). When the version
loads, before it becomes AVAILABLE, :func:`run_warmup` replays every record
``iterations`` times on the loaded servable, so that its first real requests do not pay for
TensorFlow's lazy initialisation. A record that cannot be read or replayed fails the load with
an error naming the file and the record's number (as TF Serving fails it); more than
:data:`MAX_RECORDS` records is an error too.

Called by the TensorFlow platform's loader on the manager's load thread (blocking; TensorFlow
is loaded by then); the loader keeps the ``core.servable.WarmupReport`` as its
``warmup_report``, which the manager puts in the version's status.

``iterations`` is a server setting, as in TF Serving, where ``num_request_iterations`` lives
only in the server's ``SessionBundleConfig.model_warmup_options`` (set by
``--num_request_iterations_for_warmup``); a version's ``assets.extra/saved_model_config.pb``
(``SavedModelConfig``) has no warmup field, so no per-version value exists to honour.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from ..core.servable import DEFAULT_SIGNATURE, Servable, WarmupReport
from ..core.status import Code, ServingError

__all__ = ["MAX_RECORDS", "WARMUP_FILE", "WarmupReport", "run_warmup"]

log = logging.getLogger(__name__)

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# TF Serving's kMaxNumRecords.
MAX_RECORDS = 1000


def _error(path: str, index: int, message: str, code: Code = Code.INVALID_ARGUMENT
           ) -> ServingError:
    return ServingError(code, f"Warmup record {index} of {path}: {message}")


def _replay(servable: Servable, log_record: Any, path: str, index: int) -> None:
    from ..grpc.codec import decode_inputs, input_to_batch

    kind = log_record.WhichOneof("log_type")
    signatures = servable.signatures()

    def signature_name(spec: Any) -> str:
        name = spec.signature_name or DEFAULT_SIGNATURE
        if name not in signatures:
            raise _error(path, index, f"no signature {name} (the version has "
                                      f"{', '.join(sorted(signatures))})")
        return name

    if kind == "predict_log":
        request = log_record.predict_log.request
        name = signature_name(request.model_spec)
        inputs = decode_inputs(request.inputs, signatures[name])
        servable.run(name, inputs)
    elif kind in ("classify_log", "regress_log"):
        request = getattr(log_record, kind).request
        servable.run_examples(signature_name(request.model_spec),
                              input_to_batch(request.input))
    elif kind == "multi_inference_log":
        request = log_record.multi_inference_log.request
        batch = input_to_batch(request.input)
        for task in request.tasks:
            servable.run_examples(signature_name(task.model_spec), batch)
    else:
        raise _error(path, index, f"log type {kind or '(none)'} cannot warm a model up "
                                  "(predict, classify, regress and multi-inference can)",
                     Code.UNIMPLEMENTED)


def run_warmup(version_dir: str, servable: Servable, iterations: int = 1
               ) -> WarmupReport | None:
    """Replay the version's warmup records (see the module docstring); None when it has no
    warmup file. Raises ServingError naming the record that failed."""
    path = os.path.join(version_dir, WARMUP_FILE)
    if not os.path.isfile(path):
        return None
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import prediction_log_pb2

    records: list[Any] = []
    try:
        for index, raw in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
            if index >= MAX_RECORDS:
                raise _error(path, index, f"more than {MAX_RECORDS} warmup records")
            record = prediction_log_pb2.PredictionLog()
            try:
                record.ParseFromString(raw)
            except DecodeError:
                raise _error(path, index, "not a PredictionLog") from None
            records.append(record)
    except tf.errors.OpError as exc:
        raise ServingError(Code.DATA_LOSS, f"Cannot read the warmup file {path} after "
                                           f"{len(records)} records: {exc.message}") from None
    started = time.perf_counter()
    for _ in range(max(1, iterations)):
        for index, record in enumerate(records):
            try:
                _replay(servable, record, path, index)
            except ServingError as exc:
                if exc.message.startswith("Warmup record"):
                    raise
                raise _error(path, index, exc.message, exc.code) from None
    report = WarmupReport(len(records), len(records) * max(1, iterations),
                          time.perf_counter() - started)
    log.info("jupyter_tfserving: warmed %s up with %d requests in %.3fs", version_dir,
             report.requests, report.seconds)
    return report
