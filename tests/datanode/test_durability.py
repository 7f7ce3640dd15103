"""Durability: the data node in its own process, killed with SIGKILL right after (and while) acknowledging
``_bulk`` requests, then restarted on the same data dir: every acknowledged write is there, exactly once, and
deleted documents never come back (not in get, count, knn, rank_feature or match)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import ConnectionError as OSConnectionError
from opensearchpy import NotFoundError, OpenSearch

from datanode.keys import DATANODE
from datanode.node import DataNode
from datanode.storage import DataDirInUse
from tests.fixtures.datanode import DataNodeThread, os_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SERVE = ("import sys; from aiohttp import web; from datanode.app import create_app; "
         "web.run_app(create_app(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]), print=None)")
MAPPING = {"settings": {"index": {"knn": True}}, "mappings": {"properties": {
    "text": {"type": "text"}, "n": {"type": "integer"},
    "v": {"type": "knn_vector", "dimension": 4, "method": {"name": "hnsw", "space_type": "l2"}},
    "sp": {"type": "rank_features"}}}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeProcess:
    """A data node in its own process: ``create_app`` + ``web.run_app``, or (``cli=True``) the real
    ``neuralpipe serve --roles data`` command."""

    def __init__(self, data_dir: Path, *, cli: bool = False) -> None:
        self.port = free_port()
        command = ([sys.executable, "-m", "neuralpipe.cli", "serve", "--roles", "data", "--host", "127.0.0.1",
                    "--port", str(self.port), "--data-dir", str(data_dir), "--log-level", "WARNING"] if cli
                   else [sys.executable, "-c", SERVE, str(data_dir), str(self.port)])
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.client = OpenSearch(f"http://127.0.0.1:{self.port}", timeout=60, max_retries=0)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client.info()
                return
            except OSConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"data node did not start: {self.proc.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.05)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


def doc(i: int) -> dict[str, Any]:
    return {"text": f"doc{i} shared", "n": i, "v": [float(i), 1.0, 0.0, 0.0], "sp": {f"t{i % 7}": 1.0 + i % 5}}


def bulk_body(start: int, count: int, deletes: list[int]) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = []
    for i in range(start, start + count):
        body += [{"index": {"_index": "d", "_id": str(i)}}, doc(i)]
    for i in deletes:
        body.append({"delete": {"_index": "d", "_id": str(i)}})
    return body


def all_ids(client: OpenSearch) -> list[str]:
    res = client.search(index="d", body={"size": 10000, "query": {"match_all": {}}, "_source": False})
    return [h["_id"] for h in res["hits"]["hits"]]


def check(client: OpenSearch, alive: set[str], deleted: set[str]) -> None:
    ids = all_ids(client)
    assert len(ids) == len(set(ids)), "a document came back twice"
    assert set(ids) == alive
    assert client.count(index="d")["count"] == len(alive)
    knn = client.search(index="d", body={"size": 10000, "_source": False, "query": {
        "knn": {"v": {"vector": [0.0, 1.0, 0.0, 0.0], "k": 10000}}}})
    assert {h["_id"] for h in knn["hits"]["hits"]} == alive
    sparse = client.search(index="d", body={"size": 10000, "_source": False, "query": {"bool": {"should": [
        {"rank_feature": {"field": f"sp.t{k}", "linear": {}}} for k in range(7)]}}})
    assert {h["_id"] for h in sparse["hits"]["hits"]} == alive
    text = client.search(index="d", body={"size": 10000, "_source": False, "query": {"match": {"text": "shared"}}})
    assert {h["_id"] for h in text["hits"]["hits"]} == alive
    for doc_id in list(deleted)[:20]:
        with pytest.raises(NotFoundError):
            client.get(index="d", id=doc_id)


def test_kill9_right_after_bulk_answers_loses_nothing(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path)
    try:
        node.client.indices.create(index="d", body=MAPPING)
        alive: set[str] = set()
        deleted: set[str] = set()
        for batch in range(5):
            drop = list(range(batch * 100 - 100, batch * 100 - 60)) if batch else []
            res = node.client.bulk(body=bulk_body(batch * 100, 100, drop))
            assert res["errors"] is False
            alive |= {str(i) for i in range(batch * 100, batch * 100 + 100)}
            alive -= {str(i) for i in drop}
            deleted |= {str(i) for i in drop}
        node.client.update(index="d", id="499", body={"doc": {"n": -1}})
        node.kill9()  # the last answer has been read: everything above was acknowledged
    finally:
        node.stop()
    node = NodeProcess(tmp_path)
    try:
        check(node.client, alive, deleted)
        assert node.client.get(index="d", id="499")["_source"]["n"] == -1
        assert node.client.get(index="d", id="499")["_version"] == 2
    finally:
        node.stop()


def test_kill9_during_a_bulk_stream(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path)
    acked: list[int] = []
    in_flight: list[int] = []
    try:
        node.client.indices.create(index="d", body=MAPPING)

        def writer() -> None:
            batch = 0
            while True:
                in_flight[:] = [batch]
                try:
                    node.client.bulk(body=bulk_body(batch * 50, 50, []))
                except Exception:  # noqa: BLE001  (the node died mid-request)
                    return
                acked.append(batch)
                batch += 1

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        while len(acked) < 8:
            time.sleep(0.01)
        node.kill9()
        thread.join(30)
    finally:
        node.stop()
    node = NodeProcess(tmp_path)
    try:
        present = set(all_ids(node.client))
        for batch in acked:
            assert {str(i) for i in range(batch * 50, batch * 50 + 50)} <= present
        pending = {str(i) for b in in_flight if b not in acked for i in range(b * 50, b * 50 + 50)}
        assert pending <= present or not (pending & present), "a bulk request was half applied"
        assert node.client.count(index="d")["count"] == len(present)
    finally:
        node.stop()


def test_restart_reloads_indices_documents_and_pipelines(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    node = DataNodeThread(data_dir).start()
    client = os_client(node.url)
    client.indices.create(index="d", body=MAPPING)
    client.bulk(body=bulk_body(0, 120, list(range(10))), refresh=True)
    client.ingest.put_pipeline(id="p", body={"processors": [
        {"text_chunking": {"algorithm": {"delimiter": {}}, "field_map": {"text": "chunks"}}}]})
    query = {"size": 5, "query": {"knn": {"v": {"vector": [50.0, 1.0, 0.0, 0.0], "k": 5}}}}
    before = client.search(index="d", body=query)["hits"]
    mapping = client.indices.get_mapping(index="d")
    client.close()
    node.stop()
    assert list((data_dir / "indices").glob("*/vec-0.faiss"))  # a clean stop saves the HNSW graph
    node = DataNodeThread(data_dir).start()
    client = os_client(node.url)
    try:
        index = node.app[DATANODE].node.indices["d"]
        assert not index.is_open  # opened on first use
        after = client.search(index="d", body=query)["hits"]
        restored = index.root.vectors["v"]
        assert restored.graph is not None and restored.graph.ntotal == 120  # the graph was read, with its dead
        assert after == before
        assert client.indices.get_mapping(index="d") == mapping
        assert "p" in client.ingest.get_pipeline(id="p")
        check(client, {str(i) for i in range(10, 120)}, {str(i) for i in range(10)})
        client.index(index="d", id="new", body=doc(7), refresh=True)
        assert client.get(index="d", id="new")["_seq_no"] > client.get(index="d", id="119")["_seq_no"]
    finally:
        client.close()
        node.stop()


def test_neuralpipe_serve_data_role_survives_kill9(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, cli=True)
    try:
        node.client.indices.create(index="d", body=MAPPING)
        assert node.client.bulk(body=bulk_body(0, 30, [3, 4]))["errors"] is False
        node.kill9()
    finally:
        node.stop()
    node = NodeProcess(tmp_path, cli=True)
    try:
        check(node.client, {str(i) for i in range(30)} - {"3", "4"}, {"3", "4"})
    finally:
        node.stop()


def test_one_data_node_per_data_dir(tmp_path: Path) -> None:
    first = DataNode(tmp_path)
    try:
        with pytest.raises(DataDirInUse, match=r"is in use by another data node \(pid \d+\)"):
            DataNode(tmp_path)
    finally:
        first.close()
    DataNode(tmp_path).close()  # free again once the first one stopped
