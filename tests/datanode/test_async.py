"""The async opensearch-py client (aiohttp transport) and its bulk helpers against the data node."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opensearchpy import NotFoundError
from opensearchpy.helpers import async_bulk, async_streaming_bulk

from tests.fixtures.datanode import async_os_client

pytestmark = pytest.mark.integration


async def test_async_client_bulk_helpers_and_search(data_node: Any) -> None:
    client = async_os_client(data_node.url)
    try:
        assert (await client.info())["version"]["distribution"] == "opensearch"
        await client.indices.create(index="a", body={"settings": {"index": {"knn": True}}, "mappings": {"properties": {
            "text": {"type": "text"}, "v": {"type": "knn_vector", "dimension": 2, "space_type": "cosinesimil"}}}})
        actions = [{"_index": "a", "_id": str(i), "text": f"document number {i}", "v": [1.0, float(i)]}
                   for i in range(300)]
        ok, errors = await async_bulk(client, actions, chunk_size=64, refresh=True)
        assert ok == 300 and errors == []
        bad = [{"_index": "a", "_id": "bad", "v": [1.0]}, {"_index": "a", "_id": "good", "text": "fine", "v": [0, 1]}]
        results = [item async for item in async_streaming_bulk(client, bad, raise_on_error=False, max_retries=2)]
        assert [ok for ok, _ in results] == [False, True]
        assert results[0][1]["index"]["error"]["type"] == "mapper_parsing_exception"
        await client.indices.refresh(index="a")
        assert (await client.count(index="a"))["count"] == 301
        res = await client.search(index="a", body={"query": {"match": {"text": "number 42"}}, "size": 1})
        assert res["hits"]["hits"][0]["_id"] == "42"
        res = await client.search(index="a", body={"query": {"knn": {"v": {"vector": [0, 1], "k": 1}}}})
        assert res["hits"]["hits"][0]["_id"] == "good" and res["hits"]["hits"][0]["_score"] == pytest.approx(1.0)
        await client.delete(index="a", id="good", refresh=True)
        with pytest.raises(NotFoundError):
            await client.get(index="a", id="good")
    finally:
        await client.close()


async def test_concurrent_writers_of_one_document_end_in_commit_order(data_node: Any) -> None:
    client = async_os_client(data_node.url)
    try:
        await client.indices.create(index="c", body={"mappings": {"properties": {"n": {"type": "integer"}}}})

        async def writer(k: int) -> None:
            for i in range(20):
                await client.index(index="c", id="same", body={"n": k * 100 + i})

        await asyncio.gather(*(writer(k) for k in range(4)))
        got = await client.get(index="c", id="same")
        assert got["_version"] == 80
        hits = await client.search(index="c", body={"query": {"term": {"n": got["_source"]["n"]}}})
        assert [h["_id"] for h in hits["hits"]["hits"]] == ["same"]  # memory agrees with the stored version
        assert (await client.count(index="c"))["count"] == 1
    finally:
        await client.close()
