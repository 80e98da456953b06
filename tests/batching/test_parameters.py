"""BatchingParameters: TF Serving's defaults, text format and validation rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jupyter_tfserving.batching import (
    BatchingParameters,
    BatchingParametersProto,
    parse_batching_parameters,
    read_batching_parameters_file,
)
from jupyter_tfserving.core.status import Code, ServingError

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "tfserving"


def test_defaults_are_tf_servings() -> None:
    p = BatchingParameters()
    assert p.max_batch_size == 1000
    assert p.batch_timeout_micros == 0
    assert p.max_enqueued_batches == 10
    assert p.num_batch_threads == (os.cpu_count() or 1)
    assert p.allowed_batch_sizes == ()
    assert p.pad_variable_length_inputs is False
    assert p.enable_large_batch_splitting is False
    assert p.max_execution_batch_size is None
    assert p.execution_batch_size == 1000
    p.validate()


def test_parse_tf_serving_testdata_file() -> None:
    path = TESTDATA / "batching_config.txt"
    if not path.is_file():
        pytest.skip(f"TF Serving's batching_config.txt is not at {path} (../shared is absent)")
    p = read_batching_parameters_file(str(path))
    assert p.max_batch_size == 128
    assert p.batch_timeout_micros == 0
    assert p.max_enqueued_batches == 1000000
    assert p.num_batch_threads == 8
    # Fields the file leaves out keep the defaults.
    assert p.allowed_batch_sizes == ()
    assert p.enable_large_batch_splitting is False


def test_parse_every_field() -> None:
    text = """
        max_batch_size { value: 256 }
        batch_timeout_micros { value: 5000 }
        max_enqueued_batches { value: 100 }
        num_batch_threads { value: 3 }
        thread_pool_name { value: "pool" }
        allowed_batch_sizes: 16
        allowed_batch_sizes: [32, 64]
        pad_variable_length_inputs: true
        enable_large_batch_splitting { value: true }
        max_execution_batch_size { value: 64 }
    """
    p = parse_batching_parameters(text)
    assert p == BatchingParameters(
        max_batch_size=256,
        batch_timeout_micros=5000,
        max_enqueued_batches=100,
        num_batch_threads=3,
        thread_pool_name="pool",
        allowed_batch_sizes=(16, 32, 64),
        pad_variable_length_inputs=True,
        enable_large_batch_splitting=True,
        max_execution_batch_size=64,
    )
    assert p.execution_batch_size == 64


def test_message_class_matches_tf_serving() -> None:
    d = BatchingParametersProto.DESCRIPTOR
    assert d.full_name == "tensorflow.serving.BatchingParameters"
    numbers = {f.name: f.number for f in d.fields}
    assert numbers["max_batch_size"] == 1
    assert numbers["batch_timeout_micros"] == 2
    assert numbers["max_enqueued_batches"] == 3
    assert numbers["num_batch_threads"] == 4
    assert numbers["thread_pool_name"] == 5
    assert numbers["allowed_batch_sizes"] == 6
    assert numbers["pad_variable_length_inputs"] == 7
    assert d.fields_by_name["max_batch_size"].message_type.full_name == "google.protobuf.Int64Value"
    assert (
        d.fields_by_name["enable_large_batch_splitting"].message_type.full_name
        == "google.protobuf.BoolValue"
    )


@pytest.mark.parametrize(
    "text",
    [
        "max_batch_size: 128",  # a wrapper field written as a scalar
        "max_batch_size { value: 128 ",  # unbalanced
        "no_such_field { value: 1 }",
        "pad_variable_length_inputs: maybe",
    ],
)
def test_bad_text_is_invalid_argument(text: str) -> None:
    with pytest.raises(ServingError) as info:
        parse_batching_parameters(text)
    assert info.value.code == Code.INVALID_ARGUMENT


def test_parse_validates() -> None:
    with pytest.raises(ServingError) as info:
        parse_batching_parameters("max_batch_size { value: 8 } allowed_batch_sizes: [2, 4]")
    assert info.value.code == Code.INVALID_ARGUMENT
    assert "must match max_batch_size" in info.value.message


@pytest.mark.parametrize(
    "params, fragment",
    [
        (BatchingParameters(max_batch_size=0), "max_batch_size"),
        (BatchingParameters(max_enqueued_batches=0), "max_enqueued_batches"),
        (BatchingParameters(num_batch_threads=0), "num_batch_threads"),
        (BatchingParameters(batch_timeout_micros=-1), "batch_timeout_micros"),
        (BatchingParameters(max_batch_size=8, allowed_batch_sizes=(4, 2, 8)), "increasing"),
        (BatchingParameters(max_batch_size=8, allowed_batch_sizes=(2, 2, 8)), "increasing"),
        (BatchingParameters(max_batch_size=8, allowed_batch_sizes=(2, 4)), "expected 8"),
        (BatchingParameters(max_batch_size=8, allowed_batch_sizes=(0, 8)), "positive"),
        (
            BatchingParameters(
                max_batch_size=8, enable_large_batch_splitting=True, max_execution_batch_size=16
            ),
            "must not exceed",
        ),
        (
            BatchingParameters(
                max_batch_size=8,
                enable_large_batch_splitting=True,
                max_execution_batch_size=4,
                allowed_batch_sizes=(2, 8),
            ),
            "expected 4",
        ),
    ],
)
def test_validate_rejects(params: BatchingParameters, fragment: str) -> None:
    with pytest.raises(ServingError) as info:
        params.validate()
    assert info.value.code == Code.INVALID_ARGUMENT
    assert fragment in info.value.message


def test_validate_accepts_allowed_sizes_ending_at_execution_size() -> None:
    BatchingParameters(max_batch_size=8, allowed_batch_sizes=(2, 4, 8)).validate()
    BatchingParameters(
        max_batch_size=8,
        enable_large_batch_splitting=True,
        max_execution_batch_size=4,
        allowed_batch_sizes=(2, 4),
    ).validate()
    # max_execution_batch_size is ignored without splitting.
    BatchingParameters(
        max_batch_size=8, max_execution_batch_size=4, allowed_batch_sizes=(8,)
    ).validate()


def test_merged() -> None:
    base = BatchingParameters(max_batch_size=64, num_batch_threads=2)
    m = base.merged(max_batch_size=32, allowed_batch_sizes=[8, 32], batch_timeout_micros=None)
    assert m.max_batch_size == 32
    assert m.allowed_batch_sizes == (8, 32)
    assert m.batch_timeout_micros == 0
    assert m.num_batch_threads == 2
    assert base.max_batch_size == 64
    with pytest.raises(ServingError) as info:
        base.merged(max_batch_sise=3)
    assert info.value.code == Code.INVALID_ARGUMENT


def test_parameters_are_hashable() -> None:
    a = BatchingParameters(allowed_batch_sizes=[10, 1000])  # type: ignore[arg-type]
    assert a == BatchingParameters(allowed_batch_sizes=(10, 1000))
    assert hash(a) == hash(BatchingParameters(allowed_batch_sizes=(10, 1000)))


def test_read_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ServingError) as info:
        read_batching_parameters_file(str(tmp_path / "missing.txt"))
    assert info.value.code == Code.NOT_FOUND
    bad = tmp_path / "bad.txt"
    bad.write_text("max_batch_size {", encoding="utf-8")
    with pytest.raises(ServingError) as info:
        read_batching_parameters_file(str(bad))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert str(bad) in info.value.message
    good = tmp_path / "good.txt"
    good.write_text("max_batch_size { value: 7 }\n", encoding="utf-8")
    assert read_batching_parameters_file(str(good)).max_batch_size == 7


# ------------------------------------------------------------------------ batch_timeout "auto"


def test_auto_timeout_with_a_latency_target() -> None:
    """Ours: batch_timeout_micros "auto" (any case) with batch_latency_target_ms; fixed values
    keep TF Serving's meaning, and the target defaults to 10 ms."""
    p = BatchingParameters(batch_timeout_micros="Auto", batch_latency_target_ms=25)
    p.validate()
    assert p.batch_timeout_micros == "auto" and p.adaptive
    assert p.batch_latency_target_ms == 25
    assert not BatchingParameters(batch_timeout_micros=5000).adaptive
    assert BatchingParameters().batch_latency_target_ms == 10.0
    m = BatchingParameters(max_batch_size=64).merged(batch_timeout_micros="auto")
    assert m.adaptive and m.max_batch_size == 64
    assert m.merged(batch_timeout_micros=100).batch_timeout_micros == 100


def test_text_format_cannot_say_auto() -> None:
    """TF Serving's file keeps its Int64Value: "auto" there is a parse error, and a file's
    parameters are never adaptive (the server's own configuration says auto)."""
    with pytest.raises(ServingError) as info:
        parse_batching_parameters('batch_timeout_micros { value: "auto" }')
    assert info.value.code == Code.INVALID_ARGUMENT
    assert not parse_batching_parameters("batch_timeout_micros { value: 0 }").adaptive


@pytest.mark.parametrize(
    "params, fragment",
    [
        (BatchingParameters(batch_timeout_micros="soon"),  # type: ignore[arg-type]
         "batch_timeout_micros must be a non-negative integer (microseconds) or 'auto'; "
         "was 'soon'"),
        (BatchingParameters(batch_timeout_micros=None),  # type: ignore[arg-type]
         "or 'auto'; was None"),
        (BatchingParameters(batch_timeout_micros=True), "or 'auto'; was True"),
        (BatchingParameters(batch_timeout_micros="auto", batch_latency_target_ms=0),
         "batch_latency_target_ms must be a positive number of milliseconds; was 0"),
        (BatchingParameters(batch_latency_target_ms=-5.0), "was -5.0"),
        (BatchingParameters(batch_latency_target_ms=float("nan")), "was nan"),
        (BatchingParameters(batch_latency_target_ms="fast"),  # type: ignore[arg-type]
         "was 'fast'"),
    ],
)
def test_bad_auto_settings_are_invalid_argument(params: BatchingParameters,
                                                fragment: str) -> None:
    with pytest.raises(ServingError) as info:
        params.validate()
    assert info.value.code == Code.INVALID_ARGUMENT
    assert fragment in info.value.message
