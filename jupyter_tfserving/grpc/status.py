"""Canonical error codes -> gRPC status, as TF Serving's ``util/grpc_status_util.cc`` does.

The data plane raises :class:`~jupyter_tfserving.core.status.ServingError` with TF Serving's
canonical codes, whose numbers are gRPC's: the code passes through unchanged. Messages longer
than 1,024 characters are cut there and marked ``...TRUNCATED``, as TF Serving's ``ToGRPCStatus``
cuts them. Plain functions, called by the servicers on the event loop.
"""

from __future__ import annotations

import re

import grpc  # type: ignore[import-untyped]

from ..core.status import Code, ServingError

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


# The data plane words an unknown predict signature for REST (TF Serving's JSON decoder, which
# looks the signature up first, says INVALID_ARGUMENT); TF Serving's gRPC Predict finds it
# missing in RunPredict: FAILED_PRECONDITION, its own words.
_REST_SIGNATURE_NOT_FOUND = re.compile(
    r'^Serving signature name: "(?P<name>.*)" not found in signature def$', re.DOTALL)


def predict_error(exc: ServingError) -> ServingError:
    """A predict's error as TF Serving's gRPC Predict reports it."""
    match = _REST_SIGNATURE_NOT_FOUND.match(exc.message)
    if exc.code == Code.INVALID_ARGUMENT and match:
        error = ServingError(Code.FAILED_PRECONDITION,
                             f'Serving signature key "{match["name"]}" not found.')
        error.version = exc.version
        return error
    return exc


def examples_error(exc: ServingError) -> ServingError:
    """A classify/regress error as TF Serving's gRPC Classify/Regress reports it (an unknown
    signature stays INVALID_ARGUMENT there, in the classifier's words)."""
    match = _REST_SIGNATURE_NOT_FOUND.match(exc.message)
    if exc.code == Code.INVALID_ARGUMENT and match:
        error = ServingError(Code.INVALID_ARGUMENT,
                             f"No signature was found with the name: {match['name']}")
        error.version = exc.version
        return error
    return exc
