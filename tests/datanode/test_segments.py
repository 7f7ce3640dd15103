"""Opening an index costs what a request touches: indices open on first use, from the segment a clean stop saved
(vector graphs and postings read from files, never re-indexed from SQLite), and a segment that
is stale (a crash after acknowledged writes), damaged or missing is never trusted: the index is rebuilt from SQLite.
Each check compares answers with what the data node said before, or with a node that was never restarted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch, helpers

from datanode.keys import DATANODE
from tests.datanode.test_durability import MAPPING, NodeProcess, bulk_body, check
from tests.fixtures.datanode import DataNodeThread, os_client

pytestmark = pytest.mark.integration

CHUNKS = {"settings": {"index.knn": True}, "mappings": {"properties": {
    "title": {"type": "text"}, "tag": {"type": "keyword"}, "n": {"type": "integer"},
    "passages": {"type": "nested", "properties": {
        "text": {"type": "text"},
        "knn": {"type": "knn_vector", "dimension": 2, "method": {"name": "hnsw", "space_type": "l2"}}}},
    "flat": {"type": "knn_vector", "dimension": 2, "method": {"name": "flat", "space_type": "innerproduct"}}}}}

QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("d", {"size": 20, "query": {"knn": {"v": {"vector": [50.0, 1.0, 0.0, 0.0], "k": 20}}}}),
    ("d", {"size": 20, "query": {"match": {"text": "doc7 shared"}}}),
    ("d", {"size": 20, "query": {"bool": {"should": [{"rank_feature": {"field": "sp.t3", "linear": {}}},
                                                     {"range": {"n": {"gte": 100}}}]}}}),
    ("d", {"size": 5, "sort": [{"n": "desc"}], "query": {"match_all": {}}}),
    ("chunks", {"query": {"nested": {"path": "passages", "score_mode": "max", "inner_hits": {"size": 2},
                                     "query": {"knn": {"passages.knn": {"vector": [0, 0], "k": 5}}}}}}),
    ("chunks", {"query": {"nested": {"path": "passages", "score_mode": "sum", "inner_hits": {},
                                     "query": {"match": {"passages.text": "alpha beta"}}}}}),
    ("chunks", {"query": {"bool": {"must": [{"match": {"title": "common"}}], "filter": [{"term": {"tag": "b"}}]}}}),
    ("chunks", {"query": {"knn": {"flat": {"vector": [1, -1], "k": 4, "filter": {"range": {"n": {"lt": 8}}}}}}}),
]


def chunk_doc(i: int) -> dict[str, Any]:
    return {"title": f"common title{i}", "tag": "ab"[i % 2], "n": i, "flat": [float(i), float(i % 3)],
            "passages": [{"text": ["alpha", "beta", "alpha beta"][(i + k) % 3] + f" p{k}", "knn": [i + k, k]}
                         for k in range(1 + i % 3)]}


def first_writes(client: OpenSearch) -> None:
    client.indices.create(index="d", body=MAPPING)
    client.bulk(body=bulk_body(0, 120, list(range(10))), refresh=True)
    client.indices.create(index="chunks", body=CHUNKS)
    helpers.bulk(client, [{"_index": "chunks", "_id": str(i), **chunk_doc(i)} for i in range(12)], refresh=True)
    client.delete(index="chunks", id="4", refresh=True)


def later_writes(client: OpenSearch) -> None:
    """Writes to indices whose text fields are not loaded yet: updates, deletes and new documents."""
    client.bulk(body=bulk_body(115, 10, [20, 21]), refresh=True)
    client.update(index="d", id="30", body={"doc": {"text": "doc7 moved", "n": 999}}, refresh=True)
    client.index(index="chunks", id="5", body=chunk_doc(50), refresh=True)
    client.index(index="chunks", id="new", body=chunk_doc(7), refresh=True)
    client.delete(index="chunks", id="6", refresh=True)


def answers(client: OpenSearch) -> list[dict[str, Any]]:
    out = []
    for index, body in QUERIES:
        res = client.search(index=index, body=body)
        out.append(res["hits"])
    return out


def test_reopened_indices_answer_as_a_node_that_never_stopped(tmp_path: Path) -> None:
    reference = DataNodeThread(tmp_path / "reference").start()
    restarted = DataNodeThread(tmp_path / "restarted").start()
    ref, client = os_client(reference.url), os_client(restarted.url)
    try:
        for c in (ref, client):
            first_writes(c)
        restarted.stop()
        restarted = DataNodeThread(tmp_path / "restarted").start()
        client = os_client(restarted.url)
        node = restarted.app[DATANODE].node
        assert not node.indices["d"].is_open and not node.indices["chunks"].is_open
        for c in (ref, client):
            later_writes(c)
        assert node.indices["d"].is_open
        assert answers(client) == answers(ref)
        restarted.stop()  # saves the segments again (they changed), then a third start reads them
        restarted = DataNodeThread(tmp_path / "restarted").start()
        client = os_client(restarted.url)
        assert answers(client) == answers(ref)
    finally:
        ref.close()
        client.close()
        reference.stop()
        restarted.stop()


def test_a_search_opens_only_the_index_it_reads(tmp_path: Path) -> None:
    node = DataNodeThread(tmp_path).start()
    client = os_client(node.url)
    first_writes(client)
    client.close()
    node.stop()
    node = DataNodeThread(tmp_path).start()
    client = os_client(node.url)
    try:
        res = client.search(index="chunks", body={"query": {"knn": {"flat": {"vector": [1, 0], "k": 2}}}})
        assert [h["_id"] for h in res["hits"]["hits"]] == ["11", "10"]
        indices = node.app[DATANODE].node.indices
        assert indices["chunks"].is_open
        assert not indices["d"].is_open
        counts = {row["index"]: row["docs.count"] for row in client.cat.indices(format="json")}
        assert counts == {"d": "110", "chunks": "11"}
        assert not indices["d"].is_open  # counted from SQLite
    finally:
        client.close()
        node.stop()


def test_a_stale_segment_after_kill9_is_rebuilt_not_trusted(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path)
    try:
        node.client.indices.create(index="d", body=MAPPING)
        assert node.client.bulk(body=bulk_body(0, 100, []))["errors"] is False
    finally:
        node.stop()  # clean: the segment is saved
    assert list((tmp_path / "indices").glob("*/vec-0.faiss"))
    node = NodeProcess(tmp_path)
    try:
        assert node.client.bulk(body=bulk_body(100, 50, list(range(10))))["errors"] is False
        node.kill9()  # acknowledged, but the segment on disk still holds the first 100 documents
    finally:
        node.stop()
    node = NodeProcess(tmp_path)
    try:
        check(node.client, {str(i) for i in range(10, 150)}, {str(i) for i in range(10)})
    finally:
        node.stop()


@pytest.mark.parametrize("damage", ["missing graph", "truncated graph", "no segment", "wrong owners",
                                    "wrong postings", "missing terms"])
def test_a_damaged_or_missing_segment_is_rebuilt(tmp_path: Path, damage: str) -> None:
    node = DataNodeThread(tmp_path).start()
    client = os_client(node.url)
    client.indices.create(index="d", body=MAPPING)
    client.bulk(body=bulk_body(0, 120, list(range(10))), refresh=True)
    before = answers_of_d(client)
    client.close()
    node.stop()
    (segment,) = (tmp_path / "indices").iterdir()
    if damage == "missing graph":
        (segment / "vec-0.faiss").unlink()
    elif damage == "truncated graph":
        data = (segment / "vec-0.faiss").read_bytes()
        (segment / "vec-0.faiss").write_bytes(data[: len(data) // 2])
    elif damage == "no segment":
        for path in segment.iterdir():
            path.unlink()
        segment.rmdir()
    elif damage == "wrong postings":
        (segment / "post-0.slots.npy").write_bytes((segment / "post-0.ptr.npy").read_bytes())
    elif damage == "missing terms":
        (segment / "post-0.terms.json").unlink()
    else:
        (segment / "vec-0.owner.npy").write_bytes((segment / "vec-0.live.npy").read_bytes())
    node = DataNodeThread(tmp_path).start()
    client = os_client(node.url)
    try:
        assert answers_of_d(client) == before
        check(client, {str(i) for i in range(10, 120)}, {str(i) for i in range(10)})
        assert node.app[DATANODE].node.indices["d"].root.vectors["v"].graph is not None
    finally:
        client.close()
        node.stop()
    assert (segment / "vec-0.faiss").exists()  # saved again at the clean stop


def answers_of_d(client: OpenSearch) -> list[dict[str, Any]]:
    return [client.search(index=index, body=body)["hits"] for index, body in QUERIES if index == "d"]
