"""``ServedModel.logging`` and ``ServedModel.requests`` against the embedded server: the
notebook turns request logging on and reads the logged requests back as arrays, a DataFrame
and PredictionLog messages."""

from __future__ import annotations

import numpy as np
import pytest

from jupyter_tfserving.kernel.client import TFServingError
from jupyter_tfserving.kernel.serving import serve


def double(x):
    return np.asarray(x) * 2.0


def test_logging_from_the_notebook_and_reading_requests_back(server):
    m = serve(double, name="double", example=np.ones((1, 2), np.float32), quiet=True)
    status = m.logging(1.0)
    assert status["sampling_rate"] == 1.0 and status["error"] is None
    assert status["filename_prefix"] == ".logs/double/requests"
    m.predict([[1.0, 2.0], [3.0, 4.0]])
    m.predict([[5.0, 6.0]])

    newest, older = m.requests(as_="arrays")
    assert (newest["version"], newest["method"]) == (1, "predict")
    (name,) = newest["inputs"]
    np.testing.assert_array_equal(newest["inputs"][name], [[5.0, 6.0]])
    np.testing.assert_array_equal(older["inputs"][name], [[1.0, 2.0], [3.0, 4.0]])
    (output,) = newest["outputs"]
    np.testing.assert_array_equal(newest["outputs"][output], [[10.0, 12.0]])

    frame = m.requests(n=2)
    assert len(frame) == 3  # one row per example: 1 + 2
    assert list(frame["request"]) == [0, 1, 1] and set(frame["version"]) == {1}
    assert frame["time"].dt.tz is not None
    np.testing.assert_array_equal(frame[f"outputs.{output}"].iloc[2], [6.0, 8.0])

    logs = m.requests(n=1, as_="logs")
    (record,) = logs
    assert record.WhichOneof("log_type") == "predict_log"
    assert record.predict_log.response.model_spec.name == "double"
    assert record.predict_log.response.model_spec.version.value == 1

    status = m.logging(0)
    assert status["sampling_rate"] == 0.0 and status["logged"] == 2
    m.predict([[7.0, 8.0]])
    assert len(m.requests(as_="arrays")) == 2  # not logged any more


def test_bad_logging_settings_are_the_servers_errors(server):
    m = serve(double, name="double", example=np.ones((1, 2), np.float32), quiet=True)
    with pytest.raises(TFServingError, match="between 0 and 1"):
        m.logging(1.5)
    with pytest.raises(TFServingError, match="leads out of the model repository") as err:
        m.logging(1.0, filename_prefix="../elsewhere")
    assert err.value.status == 403
    with pytest.raises(ValueError, match="as_"):
        m.requests(as_="csv")
