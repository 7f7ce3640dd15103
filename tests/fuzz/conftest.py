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
def ml_only_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzNode]:
    """``neuralpipe serve --roles ml`` with no model: its node-level routes (``/``, ``/health``, ``/metrics``) are the
    ML node's own there, not the data node's."""
    root: Path = tmp_path_factory.mktemp("fuzz-ml-only")
    node = ServedNode.start(root / "data", roles="ml")
    client = node.client()
    try:
        yield FuzzNode(node, client, Sentinels(""), {})
    finally:
        client.close()
        node.stop()
        shutil.rmtree(root / "data", ignore_errors=True)
