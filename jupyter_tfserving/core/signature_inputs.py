"""Which inputs a predict request may send a signature: TF Serving's rules and words, once.

TF Serving checks a PredictRequest's input aliases in two steps (``predict_util.cc``
``VerifyRequestInputsSize``, then TensorFlow's ``saved_model::GetInputValues``); its REST
decoder words a row or column that does not name exactly the signature's inputs with the first
step's message. Both front ends call these functions; they know nothing of any transport.
"""

from __future__ import annotations

from collections.abc import Collection

from .servable import SignatureInfo
from .status import invalid_argument


def _join(names: Collection[str]) -> str:
    return ",".join(sorted(names))


def input_size_mismatch(sent: Collection[str], expected: Collection[str]) -> str:
    """TF Serving's "input size does not match signature" message (``sent`` and ``expected``
    input aliases; "Missing but required" lists every expected alias not sent)."""
    sent_set, expected_set = set(sent), set(expected)
    return (
        f"input size does not match signature: {len(sent_set)}!={len(expected_set)} "
        f"len({{{_join(sent_set)}}}) != len({{{_join(expected_set)}}}). "
        f"Sent extra: {{{_join(sent_set - expected_set)}}}. "
        f"Missing but required: {{{_join(expected_set - sent_set)}}}."
    )


def check_request_inputs(sent: Collection[str], signature: SignatureInfo) -> None:
    """Raise INVALID_ARGUMENT unless a request sending the input aliases ``sent`` may run
    ``signature``, as TF Serving's Predict decides: more inputs than the signature has, or fewer
    when it has no defaults, is a size mismatch; then an input with neither a value nor a
    default, or a sent alias the signature does not have, is refused in TensorFlow's words."""
    inputs = signature.inputs
    sent_set = set(sent)
    if len(sent_set) > len(inputs) or (len(sent_set) < len(inputs)
                                       and not signature.defaults):
        raise invalid_argument(input_size_mismatch(sent_set, inputs))
    for alias in sorted(inputs):
        if alias not in sent_set and alias not in signature.defaults:
            raise invalid_argument(
                f"Signature input alias: {alias}(feed name: {inputs[alias].name}) not found in "
                f"request and no default value provided. Inputs expected to be in the request "
                f"{{{_join(sent_set)}}}, or default input alias set: "
                f"{_join(signature.defaults)}")
    unknown = sent_set - set(inputs)
    if unknown:
        raise invalid_argument(
            f"Inputs contains invalid name. Used request inputs: "
            f"{_join(sent_set & set(inputs))}, request input: {_join(sent_set)}")


__all__ = ["check_request_inputs", "input_size_mismatch"]
