"""A small knn search that runs on the data node's event loop answers exactly what the worker-thread path answers.

``DataNodeService.search_encoded`` runs a small top-level knn search on the loop when no other search is in the
node, and hands everything else to a worker thread. These tests send each request both ways over loopback HTTP (a
``search_pipeline=_none`` URL parameter changes nothing in the answer but keeps the search off the loop) and check the
hits against an exact numpy search: ids, order, scores, ``_source``, errors; then under 8 concurrent searches while
documents are written and the graph is rebuilt. The service is observed (which path answered), never replaced.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import aiohttp
import numpy as np
import pytest

from datanode.keys import DATANODE
from tests.fixtures.datanode import os_client

pytestmark = pytest.mark.integration

DIM = 8
N = 300
HEADERS = {"Content-Type": "application/json"}


def vectors(seed: int, n: int) -> np.ndarray:
    return np.round(np.random.default_rng(seed).normal(size=(n, DIM)), 4)


DOCS = vectors(1, N)
QUERIES = vectors(2, 12)


def exact(space: str, query: np.ndarray, k: int, docs: np.ndarray = DOCS) -> tuple[list[str], list[float]]:
    """The k best ids and their k-NN scores by brute force (float32, as faiss computes them)."""
    d, q = docs.astype(np.float32), query.astype(np.float32)
    if space == "l2":
        raw = ((d - q) ** 2).sum(axis=1)
        scores, order = 1 / (1 + raw), np.argsort(raw, kind="stable")
    else:
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        q = q / np.linalg.norm(q)
        raw = d @ q
        scores, order = (1 + raw) / 2, np.argsort(-raw, kind="stable")
    return [str(i) for i in order[:k]], [float(scores[i]) for i in order[:k]]


@pytest.fixture
def node(data_node: Any) -> Any:
    """Two indices (l2, cosinesimil) of N documents, refreshed; the service's loop-side answers counted."""
    client = os_client(data_node.url)
    for name, space in (("l2", "l2"), ("cos", "cosinesimil")):
        client.indices.create(index=name, body={"settings": {"index": {"knn": True}}, "mappings": {"properties": {
            "v": {"type": "knn_vector", "dimension": DIM, "method": {"name": "hnsw", "engine": "faiss",
                                                                     "space_type": space}},
            "tag": {"type": "keyword"}}}})
        lines = "".join(json.dumps({"index": {"_id": str(i)}}) + "\n" + json.dumps({"v": v, "tag": f"t{i}"}) + "\n"
                        for i, v in enumerate(DOCS.tolist()))
        assert not client.bulk(index=name, body=lines, refresh=True)["errors"]
        client.search(index=name, body={"query": {"knn": {"v": {"vector": [0.0] * DIM, "k": 1}}}})  # builds the graph
    client.close()
    service = data_node.app[DATANODE]
    answered = {"loop": 0}
    at_once = service._search_at_once

    def counting(*args: Any) -> str | None:
        text = at_once(*args)
        if text is not None:
            answered["loop"] += 1
        return text

    service._search_at_once = counting
    data_node.answered = answered
    return data_node


async def post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with session.post(url, data=json.dumps(body), headers=HEADERS) as resp:
        return resp.status, await resp.json()


def both_ways(node: Any, index: str, body: Any) -> tuple[tuple[int, Any], tuple[int, Any], int]:
    """(answer on the loop path, answer from a worker thread, how many searches the loop answered)."""

    async def run() -> tuple[tuple[int, Any], tuple[int, Any], int]:
        async with aiohttp.ClientSession() as session:
            before = node.answered["loop"]
            fast = await post(session, f"{node.url}/{index}/_search", body)
            loop_answers = node.answered["loop"] - before
            slow = await post(session, f"{node.url}/{index}/_search?search_pipeline=_none", body)
            return fast, slow, loop_answers

    fast, slow, loop_answers = asyncio.run(run())
    for status, answer in (fast, slow):
        if status == 200:
            answer.pop("took")
    return fast, slow, loop_answers


@pytest.mark.parametrize("index, space", [("l2", "l2"), ("cos", "cosinesimil")])
@pytest.mark.parametrize("extra, k, size, with_source", [
    ({}, 10, 10, True),
    ({"_source": False}, 10, 5, False),
    ({"_source": ["tag"], "from": 2}, 7, 4, True),
    ({"track_total_hits": False}, 3, 10, True),
])
def test_loop_path_answers_the_exact_hits_the_worker_path_answers(node: Any, index: str, space: str,
                                                                   extra: dict[str, Any], k: int, size: int,
                                                                   with_source: bool) -> None:
    for q in QUERIES[:4]:
        body = {"size": size, **extra, "query": {"knn": {"v": {"vector": q.tolist(), "k": k}}}}
        fast, slow, loop_answers = both_ways(node, index, body)
        assert loop_answers == 1  # the first request was answered on the loop
        assert fast == slow
        status, answer = fast
        start = extra.get("from", 0)
        ids, scores = exact(space, q, k)
        hits = answer["hits"]["hits"]
        assert status == 200
        assert [h["_id"] for h in hits] == ids[start:start + size]
        assert [h["_score"] for h in hits] == pytest.approx(scores[start:start + size], rel=1e-5)
        assert answer["hits"]["max_score"] == pytest.approx(scores[0], rel=1e-5)
        if extra.get("track_total_hits") is False:
            assert "total" not in answer["hits"]
        else:
            assert answer["hits"]["total"] == {"value": k, "relation": "eq"}
        for hit in hits:
            if not with_source:
                assert "_source" not in hit
            elif extra.get("_source") == ["tag"]:
                assert hit["_source"] == {"tag": f"t{hit['_id']}"}
            else:
                assert hit["_source"] == {"v": DOCS[int(hit["_id"])].tolist(), "tag": f"t{hit['_id']}"}


def test_boost_and_ef_search_on_the_loop_path(node: Any) -> None:
    q = QUERIES[5]
    body = {"query": {"knn": {"v": {"vector": q.tolist(), "k": 5, "boost": 2.0, "_name": "near",
                                    "method_parameters": {"ef_search": 50}}}}}
    fast, slow, loop_answers = both_ways(node, "l2", body)
    assert loop_answers == 1 and fast == slow
    ids, scores = exact("l2", q, 5)
    assert [h["_id"] for h in fast[1]["hits"]["hits"]] == ids
    assert [h["_score"] for h in fast[1]["hits"]["hits"]] == pytest.approx([2 * s for s in scores], rel=1e-5)


@pytest.mark.parametrize("body, status, error_type, reason", [
    ({"query": {"knn": {"v": {"vector": [1.0, 2.0], "k": 3}}}}, 400, "illegal_argument_exception",
     "Query vector has invalid dimension: 2. Dimension should be: 8"),
    ({"query": {"knn": {"v": {"vector": [1.0] * DIM, "k": 3, "colour": "red"}}}}, 400, "parsing_exception",
     "[knn] unknown token [colour] after [v]"),
    ({"query": {"knn": {"tag": {"vector": [1.0] * DIM, "k": 3}}}}, 400, "illegal_argument_exception",
     "Field 'tag' is not knn_vector type."),
    ({"query": {"knn": {"v": {"vector": [1.0] * DIM, "k": 0}}}}, 400, "illegal_argument_exception",
     "[knn] requires k to be in the range (0, 10000]"),
    ({"query": {"knn": {"v": {"vector": [1.0, "x", 3, 4, 5, 6, 7, 8], "k": 3}}}}, 400, "parsing_exception",
     "[knn] failed to parse field [vector]: the query vector must be an array of numbers"),
])
def test_errors_are_the_same_on_both_paths(node: Any, body: dict[str, Any], status: int, error_type: str,
                                           reason: str) -> None:
    fast, slow, _ = both_ways(node, "l2", body)
    assert fast == slow
    assert fast[0] == status
    assert reason in json.dumps(fast[1]["error"])
    assert error_type in json.dumps(fast[1]["error"])


def test_eight_concurrent_searches_while_documents_are_written(node: Any) -> None:
    """8 searches in flight at a time, a writer adding far-away documents with refreshes (so graphs are rebuilt
    under the searches): every answer is the exact top 10 of the original documents, and the loop answered some
    searches alone but not all (concurrent ones went to worker threads)."""
    far = vectors(3, 200) + 1000.0  # never among the top 10 of any query (l2)
    expected = [exact("l2", q, 10) for q in QUERIES]
    writes_done = threading.Event()
    loop_before = node.answered["loop"]

    def writer() -> None:
        client = os_client(node.url)
        try:
            for start in range(0, len(far), 20):
                lines = "".join(json.dumps({"index": {"_id": f"far{start + i}"}}) + "\n" + json.dumps({"v": v}) + "\n"
                                for i, v in enumerate(far[start:start + 20].tolist()))
                assert not client.bulk(index="l2", body=lines, refresh=True)["errors"]
        finally:
            client.close()
            writes_done.set()

    async def searches() -> list[tuple[int, int, Any]]:
        out: list[tuple[int, int, Any]] = []
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> None:
                qi = i % len(QUERIES)
                body = {"_source": False, "query": {"knn": {"v": {"vector": QUERIES[qi].tolist(), "k": 10}}}}
                status, answer = await post(session, f"{node.url}/l2/_search", body)
                out.append((qi, status, answer))

            i = 0
            while not writes_done.is_set() or i < 400:
                await asyncio.gather(*(one(i + j) for j in range(8)))
                i += 8
            for i in range(40):  # one at a time: each may run on the loop
                await one(i)
        return out

    thread = threading.Thread(target=writer)
    thread.start()
    results = asyncio.run(searches())
    thread.join()
    for qi, status, answer in results:
        assert status == 200, answer
        ids, scores = expected[qi]
        assert [h["_id"] for h in answer["hits"]["hits"]] == ids
        assert [h["_score"] for h in answer["hits"]["hits"]] == pytest.approx(scores, rel=1e-5)
        assert answer["hits"]["total"]["value"] == 10
    on_loop = node.answered["loop"] - loop_before
    assert 0 < on_loop < len(results)
    client = os_client(node.url)
    assert client.count(index="l2")["count"] == N + len(far)
    client.close()
