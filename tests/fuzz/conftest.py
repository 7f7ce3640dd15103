"""Fixtures of the fuzz and load tests: one ``neuralpipe serve --roles ml,data`` subprocess per module, with a
sentinel model and index recorded before any generated request reaches it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz.node import FuzzNode, Sentinels, ServedNode, setup_sentinels


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory, model_zips: Any) -> Iterator[FuzzNode]:
    root: Path = tmp_path_factory.mktemp("fuzz-node")
    node = ServedNode.start(root / "data")
    client = node.client()
    try:
        sentinels, ids = setup_sentinels(client, model_zips)
        yield FuzzNode(node, client, sentinels, ids)
    finally:
        client.close()
        node.stop()
        shutil.rmtree(root / "data", ignore_errors=True)


@pytest.fixture(scope="module")
def single_role_node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzNode]:
    """``neuralpipe serve --roles ml`` (no model) or ``--roles data`` (no index): alone, each role answers the
    node-level routes (``/``, ``/health``, ``/metrics``) with its own handlers, not the combined node's."""
    root: Path = tmp_path_factory.mktemp(f"fuzz-{request.param}-only")
    node = ServedNode.start(root / "data", roles=request.param)
    client = node.client()
    try:
        yield FuzzNode(node, client, Sentinels(""), {})
    finally:
        client.close()
        node.stop()
        shutil.rmtree(root / "data", ignore_errors=True)
