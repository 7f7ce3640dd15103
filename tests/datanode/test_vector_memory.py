"""An HNSW field keeps one copy of its vectors: those in the graph are read from faiss's own storage, the ones
written since wait in a small tail until the next search adds them (issue 14: the second copy, in a buffer that
grew by doubling, was the largest part of the node's memory after the postings).

Every answer is checked against numpy's exact top k: unfiltered (the graph), filtered (exact scoring over entries
that lie both in the graph and in the tail), after deletes that compact the field, and after a restart, where the
graph is mapped from the segment file and new writes go to the tail without copying the mapped vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opensearchpy import helpers

from datanode.keys import DATANODE
from tests.fixtures.datanode import DataNodeThread, os_client

pytestmark = pytest.mark.integration

DIM = 8
MAPPING = {"settings": {"index.knn": True}, "mappings": {"properties": {
    "v": {"type": "knn_vector", "dimension": DIM,
          "method": {"name": "hnsw", "space_type": "l2", "parameters": {"m": 16, "ef_construction": 200}}},
    "n": {"type": "integer"}}}}


def vectors(start: int, count: int) -> np.ndarray:
    return np.random.default_rng(start).normal(size=(count, DIM)).astype(np.float32)


def write(client: Any, start: int, vecs: np.ndarray) -> None:
    helpers.bulk(client, [{"_index": "d", "_id": str(start + i), "v": v.tolist(), "n": start + i}
                          for i, v in enumerate(vecs)], refresh=False)


def exact(stored: dict[int, np.ndarray], q: np.ndarray, k: int, keep: Any = lambda i: True) -> list[str]:
    ids = [i for i in stored if keep(i)]
    dist = [float(np.sum((stored[i] - q) ** 2)) for i in ids]
    return [str(ids[j]) for j in np.argsort(dist, kind="stable")[:k]]


def knn(client: Any, q: np.ndarray, k: int, flt: dict[str, Any] | None = None) -> list[str]:
    clause: dict[str, Any] = {"vector": q.tolist(), "k": k, "method_parameters": {"ef_search": 400}}
    if flt is not None:
        clause["filter"] = flt
    res = client.search(index="d", body={"size": k, "_source": False, "query": {"knn": {"v": clause}}})
    return [h["_id"] for h in res["hits"]["hits"]]


def field(node: DataNodeThread) -> Any:
    return node.app[DATANODE].node.indices["d"].root.vectors["v"]


def test_vectors_live_once_and_every_answer_stays_exact(tmp_path: Path) -> None:
    stored: dict[int, np.ndarray] = {}
    node = DataNodeThread(tmp_path).start()
    try:
        client = os_client(node.url)
        client.indices.create(index="d", body=MAPPING)
        first = vectors(0, 300)
        write(client, 0, first)
        stored.update(enumerate(first))
        q = vectors(10_000, 1)[0]
        assert knn(client, q, 10) == exact(stored, q, 10)
        vf = field(node)
        # the graph holds every vector, and the field reads them from it: no second buffer
        assert vf.vectors.tail.n == 0 and vf.vectors.head.shape == (300, DIM)
        assert not vf.vectors.head.flags.owndata and not vf.vectors.head.flags.writeable
        np.testing.assert_array_equal(vf.vectors.head, first)

        later = vectors(1, 40)  # written after the graph was built: in the tail until a search adds them
        write(client, 300, later)
        stored.update({300 + i: v for i, v in enumerate(later)})
        assert vf.vectors.tail.n == 40 and vf.vectors.n == 340
        # a filter small enough for exact scoring reads entries from both parts
        picked = {5, 17, 250, 299, 300, 301, 320, 339}
        flt = {"terms": {"n": sorted(picked)}}
        assert knn(client, q, 5, flt) == exact(stored, q, 5, lambda i: i in picked)
        assert knn(client, q, 10) == exact(stored, q, 10)  # the search added the tail to the graph
        assert vf.vectors.tail.n == 0 and vf.vectors.head.shape == (340, DIM)

        # deleting most documents compacts the field: a new graph over the survivors
        gone = [i for i in range(340) if i % 5]
        client.bulk(body=[{"delete": {"_index": "d", "_id": str(i)}} for i in gone], refresh=True)
        for i in gone:
            del stored[i]
        assert knn(client, q, 10) == exact(stored, q, 10)
        assert field(node).vectors.n == len(stored)
    finally:
        node.stop()

    restarted = DataNodeThread(tmp_path).start()  # the segment's graph is mapped from its file
    try:
        client = os_client(restarted.url)
        assert knn(client, q, 10) == exact(stored, q, 10)
        more = vectors(2, 25)
        write(client, 1000, more)
        stored.update({1000 + i: v for i, v in enumerate(more)})
        vf = field(restarted)
        assert vf.vectors.tail.n == 25  # the mapped vectors were not copied to take the new ones
        picked = {0, 5, 335, 1000, 1003, 1024}
        assert knn(client, q, 4, {"terms": {"n": sorted(picked)}}) == exact(stored, q, 4, lambda i: i in picked)
        assert knn(client, q, 10) == exact(stored, q, 10)
        assert knn(client, vectors(3, 1)[0], 10) == exact(stored, vectors(3, 1)[0], 10)
    finally:
        restarted.stop()
