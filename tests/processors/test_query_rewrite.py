"""Rewritten query bodies equal what neural-search hands to k-NN / Lucene."""

import pytest

from opensearch_contract.errors import IllegalArgument, ParsingError
from processors import SearchPipeline, run_search
from processors.query import rewrite

from .fakes import RecordingML

pytestmark = pytest.mark.unit


async def test_neural_becomes_knn_with_defaults_and_passthrough():
    ml = RecordingML()
    q = {"neural": {"vec": {"query_text": "abc", "model_id": "dense-name", "filter": {"term": {"lang": "en"}},
                            "method_parameters": {"ef_search": 50}, "boost": 2.0}}}
    out = (await rewrite(q, ml=ml)).query
    assert out == {"knn": {"vec": {"vector": [3.0, 1.0], "k": 10, "filter": {"term": {"lang": "en"}},
                                   "method_parameters": {"ef_search": 50}, "boost": 2.0}}}
    assert ml.calls == [("text_embedding", "dense-id", ["abc"])]


@pytest.mark.parametrize("radial", [{"min_score": 0.8}, {"max_distance": 0.5}])
async def test_radial_search_replaces_k(radial):
    out = (await rewrite({"neural": {"v": {"query_text": "x", "model_id": "m", **radial}}}, ml=RecordingML())).query
    assert out == {"knn": {"v": {"vector": [1.0, 1.0], **radial}}}


async def test_neural_errors():
    with pytest.raises(IllegalArgument, match="Only one of k, max_distance, or min_score can be provided"):
        await rewrite({"neural": {"v": {"query_text": "x", "model_id": "m", "k": 3, "min_score": 0.1}}},
                      ml=RecordingML())
    with pytest.raises(IllegalArgument, match="model_id must be provided"):
        await rewrite({"neural": {"v": {"query_text": "x"}}}, ml=RecordingML())
    with pytest.raises(ParsingError, match=r"\[neural\] query does not support \[size\]"):
        await rewrite({"neural": {"v": {"query_text": "x", "model_id": "m", "size": 3}}}, ml=RecordingML())
    with pytest.raises(ParsingError, match="doesn't support multiple fields"):
        await rewrite({"neural": {"a": {"query_text": "x"}, "b": {"query_text": "y"}}}, ml=RecordingML())


async def test_neural_rewritten_everywhere_in_the_tree_with_one_call_per_model():
    ml = RecordingML()
    q = {"bool": {
        "should": [{"neural": {"v": {"query_text": "one", "model_id": "m"}}},
                   {"nested": {"path": "p", "query": {"neural": {"p.knn": {"query_text": "three", "model_id": "m",
                                                                           "expand_nested_docs": True}}}}}],
        "filter": {"constant_score": {"filter": {"neural_sparse": {"s": {"query_tokens": {"hi": 1.5}}}}}}}}
    out = (await rewrite(q, ml=ml)).query
    text = repr(out)
    assert "'neural'" not in text and "neural_sparse" not in text
    assert out["bool"]["should"][1]["nested"]["query"] == {
        "knn": {"p.knn": {"vector": [5.0, 1.0], "k": 10, "expand_nested_docs": True}}}
    assert out["bool"]["filter"]["constant_score"]["filter"] == {
        "bool": {"should": [{"rank_feature": {"field": "s.hi", "linear": {}, "boost": 1.5}}]}}
    assert ml.calls == [("text_embedding", "m", ["one", "three"])]


async def test_neural_sparse_with_model_and_dotted_tokens_reported():
    ml = RecordingML()
    res = await rewrite({"neural_sparse": {"s": {"query_text": "a b.c d", "model_id": "tok", "boost": 3}}}, ml=ml)
    assert res.query == {"bool": {"should": [
        {"rank_feature": {"field": "s.a", "linear": {}, "boost": 1.0}},
        {"rank_feature": {"field": "s.d", "linear": {}, "boost": 3.0}}], "boost": 3}}
    assert len(res.warnings) == 1 and "['b.c']" in res.warnings[0]


async def test_neural_sparse_kept_for_clusters_with_neural_search():
    res = await rewrite({"neural_sparse": {"s": {"query_text": "a b.c", "model_id": "tok"}}}, ml=RecordingML(),
                        sparse_mode="neural_sparse")
    assert res.query == {"neural_sparse": {"s": {"query_tokens": {"a": 1.0, "b.c": 2.0}}}}
    assert res.warnings == []


async def test_neural_sparse_without_tokens_matches_nothing():
    res = await rewrite({"neural_sparse": {"s": {"query_tokens": {"x.y": 1.0}}}}, ml=RecordingML())
    assert res.query == {"match_none": {}}


async def test_enricher_fills_model_ids():
    pipe = SearchPipeline.from_body("s", {"request_processors": [{"neural_query_enricher": {
        "default_model_id": "dense-name", "neural_field_default_id": {"s": "tok"}}}]}, ml=None)
    ml = RecordingML()
    seen = {}

    async def search_fn(index, body):
        seen["body"] = body
        return {"hits": {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []}}

    await run_search("i", {"query": {"bool": {"must": [{"neural": {"v": {"query_text": "q"}}},
                                                       {"neural_sparse": {"s": {"query_text": "q"}}}]}}},
                     search_fn=search_fn, ml=ml, pipeline=pipe)
    assert ("text_embedding", "dense-id", ["q"]) in ml.calls and ("sparse_encoding", "tok", ["q"]) in ml.calls
    assert seen["body"]["query"]["bool"]["must"][0] == {"knn": {"v": {"vector": [1.0, 1.0], "k": 10}}}


async def test_hybrid_must_be_top_level_and_bounded():
    async def search_fn(index, body):
        raise AssertionError("not reached")

    ml = RecordingML()
    with pytest.raises(IllegalArgument, match="hybrid query must be a top level query"):
        await run_search("i", {"query": {"bool": {"must": [{"hybrid": {"queries": [{"match_all": {}}]}}]}}},
                         search_fn=search_fn, ml=ml)
    with pytest.raises(ParsingError, match="Number of sub-queries exceeds maximum"):
        await run_search("i", {"query": {"hybrid": {"queries": [{"match_all": {}}] * 6}}}, search_fn=search_fn, ml=ml)


async def test_neural_under_an_unknown_parent_is_an_error_not_sent_unrewritten():
    q = {"span_containing": {"big": {"neural": {"v": {"query_text": "x", "model_id": "m"}}}}}
    with pytest.raises(ParsingError, match=r"\[neural\] clause found under \[big\]"):
        await rewrite(q, ml=RecordingML())
