"""The extension's routes go through jupyter_server's authorizer with one resource name."""

from __future__ import annotations

import pytest
from jupyter_server.auth.authorizer import Authorizer

SEEN: list[tuple[str, str]] = []


class ReadOnlyTFServing(Authorizer):
    """Lets anyone read the ``tfserving`` resource but not write to it; records each check."""

    def is_authorized(self, handler, user, action, resource):
        SEEN.append((action, resource))
        return not (resource == "tfserving" and action == "write")


@pytest.fixture
def jp_server_config(jp_server_config):
    return {**jp_server_config,
            "ServerApp": {**jp_server_config["ServerApp"], "authorizer_class": ReadOnlyTFServing}}


async def test_authorizer_decides_reads_and_writes(rest, publish):
    publish("half_plus_two", 1)
    await rest.wait_for("half_plus_two", 1)
    SEEN.clear()
    code, data, _ = await rest.call("/v1/models/half_plus_two")
    assert code == 200
    code, data, _ = await rest.call("/v1/models/half_plus_two:predict", {"instances": [[1.0]]})
    assert code == 403 and set(data) == {"error"}
    assert ("read", "tfserving") in SEEN and ("write", "tfserving") in SEEN
