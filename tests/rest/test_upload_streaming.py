"""Uploads stream to disk: a version larger than jupyter_server's buffered-body limit
(``ServerApp.max_body_size``) still publishes, and ``max_upload_bytes`` holds for a chunked
body whose size nobody declared (tornado cuts it off) as for a declared one (413)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jupyter_tfserving.core.archive import pack_directory

MIB = 1 << 20


@pytest.fixture
def jp_server_config(jp_server_config):
    return {**jp_server_config,
            "ServerApp": {**jp_server_config["ServerApp"], "max_body_size": MIB},
            "TFServingApp": {**jp_server_config["TFServingApp"], "max_upload_bytes": 6 * MIB}}


def big_version(exported_models: Path, tmp_path: Path, extra_bytes: int) -> bytes:
    """half_plus_two/1 plus an incompressible asset, packed."""
    import shutil

    src = tmp_path / "big"
    shutil.copytree(exported_models / "half_plus_two" / "1", src)
    (src / "assets.extra").mkdir(exist_ok=True)
    (src / "assets.extra" / "blob").write_bytes(os.urandom(extra_bytes))
    return pack_directory(str(src))


async def test_an_upload_larger_than_the_buffered_body_limit_publishes(rest, exported_models,
                                                                      tmp_path):
    archive = big_version(exported_models, tmp_path, 3 * MIB)
    assert len(archive) > 2 * MIB  # > ServerApp.max_body_size: tornado would refuse to buffer it
    code, data, _ = await rest.call("/api/models/big/versions", archive,
                                    headers={"Content-Type": "application/gzip"})
    assert code == 201, data
    await rest.wait_for("big", 1)
    code, data, _ = await rest.call("/v1/models/big:predict", {"instances": [[2.0]]})
    assert code == 200 and data == {"predictions": [[3.0]]}


async def test_a_chunked_upload_over_max_upload_bytes_is_413(rest, exported_models, tmp_path,
                                                            model_root):
    archive = big_version(exported_models, tmp_path, 7 * MIB)

    async def chunks(write):
        for start in range(0, len(archive), 256 * 1024):
            await write(archive[start:start + 256 * 1024])

    response = await rest._client.fetch(
        rest.prefix + "/api/models/toobig/versions", method="POST", body_producer=chunks,
        headers={"Authorization": f"token {rest.token}", "Transfer-Encoding": "chunked",
                 "Content-Type": "application/gzip"},
        raise_error=False, request_timeout=60)
    # A body that declared no size is cut off by tornado when it passes the limit (a bare 400
    # and a closed connection); one that declares its size is answered 413 before it is read.
    assert response.code == 400
    assert not (model_root / "toobig").exists() or os.listdir(model_root / "toobig") == []


async def test_a_declared_size_over_max_upload_bytes_is_413_before_the_body_is_read(
        rest, model_root):
    body = b"\0" * (6 * MIB + 1)
    code, data, _ = await rest.call("/api/models/toobig/versions", body,
                                    headers={"Content-Type": "application/gzip"})
    assert code == 413 and "max_upload_bytes" in data["error"]
    assert not (model_root / "toobig").exists()
