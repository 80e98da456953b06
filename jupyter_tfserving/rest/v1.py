"""TF Serving's v1 REST answers, built from the data plane's typed results.

The handlers (``rest.handlers``) call the data plane and hand its results here to become TF
Serving's JSON, byte for byte where TF Serving's own tests pin it. Runs on whichever thread the
handler runs the operation on (a request thread, or the IOLoop for small predict answers).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.state import VersionStatus
from ..core.status import Code, ServingError
from ..dataplane import ModelInfo, ModelRef
from . import json_codec


@dataclass(frozen=True)
class Answer:
    """A successful answer: the JSON body and the version that produced it."""

    body: bytes
    version: int


def answer(version: int, encode: Callable[[], bytes]) -> Answer:
    """``encode()`` as the answer of ``version``; an error it raises carries the version."""
    try:
        return Answer(encode(), version)
    except ServingError as exc:
        exc.version = version
        raise


def predict_answer(version: int, outputs: Mapping[str, np.ndarray], row_format: bool) -> Answer:
    """A predict's outputs as TF Serving's JSON (``predictions`` or ``outputs``)."""
    return answer(version, lambda: json_codec.encode_predict_response(outputs, row_format))


def _status_json(status: VersionStatus) -> dict[str, Any]:
    error = status.error
    return {
        "version": str(status.version),
        "state": status.state.value,
        "status": {
            "error_code": error.code.name if error is not None else Code.OK.name,
            "error_message": error.message if error is not None else "",
        },
    }


def status_json(statuses: list[VersionStatus]) -> dict[str, Any]:
    """GetModelStatus's JSON."""
    return {"model_version_status": [_status_json(s) for s in statuses]}


def metadata_json(ref: ModelRef, version: int, metadata: dict[str, Any]) -> dict[str, Any]:
    """GetModelMetadata's JSON with ``signature_def``, as TF Serving writes it."""
    return {
        "model_spec": {"name": ref.name, "signature_name": "", "version": str(version)},
        "metadata": metadata,
    }


def list_models_json(models: list[ModelInfo]) -> dict[str, Any]:
    """``GET /v1/models`` (not in TF Serving): every model with its versions and labels."""
    return {"models": [{
        "name": m.name,
        "labels": {k: str(v) for k, v in sorted(m.labels.items())},
        "model_version_status": [_status_json(s) for s in m.statuses],
    } for m in models]}


def dumps(data: Any) -> bytes:
    return json.dumps(data).encode()
