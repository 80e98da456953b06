"""Canonical error codes and the one exception type the serving path raises.

Every layer raises :class:`ServingError` with a TF Serving canonical code; the REST layer maps the
code to an HTTP status in one place (``rest.errors``). Messages are written for the client: they
never contain a traceback.
"""

from __future__ import annotations

import enum


class Code(enum.IntEnum):
    """gRPC / TensorFlow canonical status codes (the numbers match ``tensorflow.errors``)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class ServingError(Exception):
    """An error with a canonical code and a client-facing message."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = Code(code)
        self.message = message
        # The version a request had been routed to when it failed (None: routing failed).
        self.version: int | None = None

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(Code.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(Code.FAILED_PRECONDITION, message)


def unimplemented(message: str) -> ServingError:
    return ServingError(Code.UNIMPLEMENTED, message)


class SignatureNotFound(ServingError):
    """A request named a signature the servable does not have (INVALID_ARGUMENT). Predict's
    default words are REST's (TF Serving's JSON decoder); classify and regress word it as TF
    Serving's classifier and regressor do, on both front ends (``message``); a front end whose
    TF Serving counterpart words it otherwise (gRPC Predict) maps it by type."""

    def __init__(self, signature_name: str, message: str | None = None) -> None:
        super().__init__(Code.INVALID_ARGUMENT, message or
                         f'Serving signature name: "{signature_name}" not found in signature def')
        self.signature_name = signature_name
