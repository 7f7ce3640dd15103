"""The ML client's query-embedding cache, with the real ML node and the real models: predict calls are counted on
our real client (a subclass recording what it sends), the vectors checked against the node's own answer."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from processors import IngestDocument, IngestPipeline, MLClient
from processors.mlclient import DEFAULT_QUERY_CACHE_SIZE, CacheStats, QueryCache
from processors.search import run_search
from tests.processors.test_ml_inference import CountingML, raw_vectors

pytestmark = [pytest.mark.integration]


def capture(seen: list[dict[str, Any]]) -> Any:
    async def search_fn(index: str, body: dict[str, Any]) -> dict[str, Any]:
        seen.append(copy.deepcopy(body))
        return {"took": 0, "timed_out": False, "hits": {"total": {"value": 0, "relation": "eq"}, "max_score": None,
                                                         "hits": []}}
    return search_fn


def neural(text: str, model_id: str) -> dict[str, Any]:
    return {"query": {"neural": {"vec": {"query_text": text, "model_id": model_id, "k": 3}}}}


def sparse(text: str, model_id: str) -> dict[str, Any]:
    return {"query": {"neural_sparse": {"sp": {"query_text": text, "model_id": model_id}}}}


async def test_repeated_query_makes_no_predict_call(ml_node: Any) -> None:
    dense = ml_node.model_ids["dense"]
    seen: list[dict[str, Any]] = []
    async with CountingML(ml_node.url) as ml:
        await run_search("i", neural("what is neural search", dense), search_fn=capture(seen), ml=ml)
        await run_search("i", neural("what is neural search", dense), search_fn=capture(seen), ml=ml)
        assert len(ml.predicts) == 1
        assert ml.query_cache.stats() == CacheStats(size=DEFAULT_QUERY_CACHE_SIZE, entries=1, hits=1, misses=1)
    (vector,) = await raw_vectors(ml_node.url, dense, ["what is neural search"])
    assert seen[0] == seen[1] == {"query": {"knn": {"vec": {"vector": vector, "k": 3}}}}


async def test_changed_model_id_misses(ml_node: Any) -> None:
    text = "roasted coffee beans"
    async with CountingML(ml_node.url) as ml:
        for model in ("sparse", "tokenizer", "sparse", "tokenizer"):
            await run_search("i", sparse(text, ml_node.model_ids[model]), search_fn=capture([]), ml=ml)
        assert [model_id for model_id, _ in ml.predicts] == [ml_node.model_ids["sparse"],
                                                             ml_node.model_ids["tokenizer"]]
        assert (ml.query_cache.stats().hits, ml.query_cache.stats().misses) == (2, 2)


async def test_ingest_is_not_cached_and_does_not_fill_the_cache(ml_node: Any) -> None:
    dense = ml_node.model_ids["dense"]
    body = {"processors": [{"text_embedding": {"model_id": dense, "field_map": {"text": "vec"}}}]}
    async with CountingML(ml_node.url) as ml:
        pipeline = IngestPipeline.from_body("p", body, ml=ml)
        await pipeline.run([IngestDocument("i", "1", {"text": "same text"})])
        await pipeline.run([IngestDocument("i", "2", {"text": "same text"})])
        await run_search("i", neural("same text", dense), search_fn=capture([]), ml=ml)
        assert len(ml.predicts) == 3
        assert ml.query_cache.stats() == CacheStats(size=DEFAULT_QUERY_CACHE_SIZE, entries=1, hits=0, misses=1)


async def test_least_recently_used_entry_is_evicted(ml_node: Any) -> None:
    dense = ml_node.model_ids["dense"]
    async with CountingML(ml_node.url, query_cache_size=2) as ml:
        for text in ["one", "two", "one", "three", "two", "one"]:
            await run_search("i", neural(text, dense), search_fn=capture([]), ml=ml)
        # "two" was least recently used when "three" came in; then "one" went when "two" came back
        assert [body["text_docs"] for _, body in ml.predicts] == [["one"], ["two"], ["three"], ["two"], ["one"]]
        assert ml.query_cache.stats() == CacheStats(size=2, entries=2, hits=1, misses=5)


async def test_size_zero_turns_it_off(ml_node: Any) -> None:
    dense = ml_node.model_ids["dense"]
    async with CountingML(ml_node.url, query_cache_size=0) as ml:
        for _ in range(2):
            await run_search("i", neural("again", dense), search_fn=capture([]), ml=ml)
        assert len(ml.predicts) == 2 and ml.query_cache.stats().entries == 0


async def test_one_call_holds_only_the_missing_texts_once(ml_node: Any) -> None:
    dense = ml_node.model_ids["dense"]
    seen: list[dict[str, Any]] = []
    async with CountingML(ml_node.url) as ml:
        await run_search("i", neural("cached", dense), search_fn=capture([]), ml=ml)
        vectors = await ml.text_embedding(dense, ["cached", "fresh", "fresh", "cached"], content_type="query")
        assert [body["text_docs"] for _, body in ml.predicts] == [["cached"], ["fresh"]]
        # a caller changing what it got does not change the cache
        vectors[0][0] = 123.0
        await run_search("i", neural("cached", dense), search_fn=capture(seen), ml=ml)
    want = await raw_vectors(ml_node.url, dense, ["cached", "fresh"])
    assert vectors[1] == vectors[2]  # one text asked twice: one vector
    # a call's threads follow the node's load: equal to float rounding, not bit for bit
    assert vectors[1:] == [pytest.approx(w, rel=1e-5, abs=1e-6) for w in (want[1], want[1], want[0])]
    assert seen[0]["query"]["knn"]["vec"]["vector"] == pytest.approx(want[0], rel=1e-5, abs=1e-6)


def test_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match=r"query_cache_size must be >= 0, got \[-1\]"):
        MLClient("http://127.0.0.1:9", query_cache_size=-1)
    assert QueryCache(3).stats() == CacheStats(3, 0, 0, 0)
