"""Fuzz finding F6 (ML-only part): on a node whose root the ML role answers (``create_app``, ``neuralpipe serve
--roles ml``), a wrong method on ``/``, ``/health``, ``/metrics``, ``/_cluster/settings`` or a path no route matches
gets OpenSearch's JSON error (as under ``/_plugins/_ml``), not aiohttp's plain text."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mlnode.app import create_app
from mlnode.settings import MLSettings
from neuralpipe.node import NodeSpec, build_app

pytestmark = [pytest.mark.integration]


def _app(kind: str, tmp_path: Path):
    settings = MLSettings.load(data_dir=tmp_path / "ml")
    if kind == "create_app":
        return create_app(settings)
    return build_app(NodeSpec(("ml",), tmp_path, settings), own_url="http://127.0.0.1:1")


@pytest.mark.parametrize("kind", ["create_app", "serve --roles ml"])
@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("POST", "/", "GET, HEAD"),
    ("TRACE", "/metrics", "GET, HEAD"),
    ("DELETE", "/health", "GET, HEAD"),
    ("DELETE", "/_cluster/settings", "GET, HEAD, PUT"),
])
async def test_wrong_method_is_a_shaped_405(tmp_path, kind, method, path, allowed):
    async with TestClient(TestServer(_app(kind, tmp_path))) as client:
        resp = await client.request(method, path)
        body = await resp.json()
        assert resp.status == 405 and body["status"] == 405
        assert body["error"]["reason"] == (f"Incorrect HTTP method for uri [{path}] and method [{method}], "
                                           f"allowed: [{allowed}]")


@pytest.mark.parametrize("kind", ["create_app", "serve --roles ml"])
async def test_unknown_path_is_a_shaped_400(tmp_path, kind):
    async with TestClient(TestServer(_app(kind, tmp_path))) as client:
        resp = await client.get("/no/such/path")
        body = await resp.json()
        assert resp.status == 400 and body["error"]["type"] == "illegal_argument_exception"
        assert body["error"]["reason"] == "no handler found for uri [/no/such/path] and method [GET]"
        resp = await client.get("/")  # the node's own routes still answer
        assert resp.status == 200 and (await resp.json())["version"]["distribution"] == "neuralpipe-mlnode"
