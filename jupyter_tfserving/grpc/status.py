"""Canonical error codes -> gRPC status, as TF Serving's ``util/grpc_status_util.cc`` does.

The data plane raises :class:`~jupyter_tfserving.core.status.ServingError` with TF Serving's
canonical codes, whose numbers are gRPC's: the code passes through unchanged. Messages longer
than 1,024 characters are cut there and marked ``...TRUNCATED``, as TF Serving's ``ToGRPCStatus``
cuts them. Plain functions, called by the servicers on the event loop.
"""

from __future__ import annotations

import grpc  # type: ignore[import-untyped]

from ..core.status import Code, ServingError, SignatureNotFound

# TF Serving's kErrorMessageLimit.
ERROR_MESSAGE_LIMIT = 1024
TRUNCATED_SUFFIX = "...TRUNCATED"

_BY_NUMBER: dict[int, grpc.StatusCode] = {status.value[0]: status for status in grpc.StatusCode}


def grpc_code(code: Code) -> grpc.StatusCode:
    """The gRPC status code of a canonical code (UNKNOWN for a number gRPC lacks)."""
    return _BY_NUMBER.get(int(code), grpc.StatusCode.UNKNOWN)


def grpc_message(message: str) -> str:
    """``message`` cut at :data:`ERROR_MESSAGE_LIMIT` characters, as TF Serving sends it."""
    if len(message) > ERROR_MESSAGE_LIMIT:
        return message[:ERROR_MESSAGE_LIMIT] + TRUNCATED_SUFFIX
    return message


def predict_error(exc: ServingError) -> ServingError:
    """A predict's error as TF Serving's gRPC Predict reports it: an unknown signature is
    FAILED_PRECONDITION there (RunPredict finds it missing), in its own words."""
    if isinstance(exc, SignatureNotFound):
        return _reworded(exc, Code.FAILED_PRECONDITION,
                         f'Serving signature key "{exc.signature_name}" not found.')
    return exc


def _reworded(exc: ServingError, code: Code, message: str) -> ServingError:
    error = ServingError(code, message)
    error.version = exc.version
    return error
