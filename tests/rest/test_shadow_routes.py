"""The shadow routes beyond the document's checks (tests/rest/test_openapi.py feeds those): a
worst pair's request as JSON (kept only while request logging is on), and a promote over REST
ending a shadow."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
from jsonschema import Draft202012Validator

from jupyter_tfserving.core.servable import ExampleBatch, Feature
from jupyter_tfserving.rest.management import request_json
from tests.rest.test_openapi import DOC_URI, REGISTRY, _stable_1_and_version_2


def _valid_request(instance: object) -> bool:
    schema = {"$ref": f"{DOC_URI}#/components/schemas/ShadowWorst/properties/request"}
    return Draft202012Validator(schema, registry=REGISTRY).is_valid(instance)


def test_a_kept_request_is_json_in_the_documents_form():
    tensors = {"x": np.float32([[1.5], [0.25]]), "s": np.array([b"ab", b"\xff"], object)}
    encoded = request_json(tensors)
    assert encoded == {"x": [[1.5], [0.25]], "s": ["ab", {"b64": "/w=="}]}
    assert request_json({"x": np.int64([1, 2])}) == {"x": [1, 2]}
    batch = ExampleBatch([{"f": Feature("float", [0.5]), "b": Feature("bytes", [b"\xff", b"k"])},
                          {"i": Feature("int64", [3, 4])}], context={"c": Feature("float", [1.0])})
    examples = request_json(batch)
    assert examples == {"examples": [{"f": [0.5], "b": [{"b64": "/w=="}, "k"]}, {"i": [3, 4]}],
                        "context": {"c": [1.0]}}
    assert all(_valid_request(d) for d in (encoded, examples, None))


async def test_promote_over_rest_ends_the_shadow(rest, publish, exported_models: Path):
    name, api = await _stable_1_and_version_2(rest, publish, exported_models)
    code, report, _ = await rest.call(f"{api}:shadow", {"version": 2, "fraction": 1})
    assert code == 200 and report["active"], report
    code, _, _ = await rest.call(f"{api}:promote", {"version": 2})
    assert code == 200
    deadline = time.monotonic() + 10
    while (report := (await rest.call(f"{api}/shadow"))[1])["active"]:
        assert time.monotonic() < deadline, report
        await asyncio.sleep(0.05)
    assert report["end_reason"] == "promoted"
    code, refused, _ = await rest.call(f"{api}:shadow", {"version": 2, "fraction": 1})
    assert code == 400 and "serves the unversioned requests" in refused["error"]


async def test_worst_pairs_carry_their_request_while_logging(rest, publish,
                                                             exported_models: Path):
    name, api = await _stable_1_and_version_2(rest, publish, exported_models)
    code, status, _ = await rest.call(f"{api}:logging", {"sampling_rate": 1.0})
    assert code == 200, status
    code, report, _ = await rest.call(f"{api}:shadow", {"version": 2, "fraction": 1})
    assert code == 200, report
    code, _, _ = await rest.call(f"/v1/models/{name}:predict", {"instances": [[1.5]]})
    assert code == 200
    deadline = time.monotonic() + 30
    while (report := (await rest.call(f"{api}/shadow"))[1])["pairs"] < 1:
        assert time.monotonic() < deadline, report
        await asyncio.sleep(0.05)
    assert report["worst"][0]["request"] == {"x": [[1.5]]}
    code, _, _ = await rest.call(f"{api}:logging", {"sampling_rate": 0})
    assert code == 200
    report = (await rest.call(f"{api}/shadow"))[1]
    assert report["worst"][0]["request"] is None
