"""Search through the real ML node: the query vector / tokens are the model's, and hybrid ranks the documents
the same way as normalizing and combining exact sub-query scores by hand."""

import aiohttp
import numpy as np
import pytest

from processors import IngestDocument, IngestPipeline, MLClient, SearchPipeline, run_search

from .memsearch import MemIndex

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CORPUS = {
    "d1": "Vaccines train the immune system to recognise a virus.",
    "d2": "The stock market fell sharply after the interest rate decision.",
    "d3": "Influenza viruses mutate quickly, so flu vaccines are updated every year.",
    "d4": "A recipe for sourdough bread with a long cold fermentation.",
    "d5": "Antibodies produced after vaccination protect against infection.",
}
QUERY = "how do vaccines protect against viruses"


async def raw(url, algorithm, model_id, texts):
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/_plugins/_ml/_predict/{algorithm}/{model_id}", json={"text_docs": texts}) as r:
            return (await r.json())["inference_results"]


@pytest.fixture
async def index(ml_node):
    body = {"processors": [
        {"text_embedding": {"model_id": ml_node.names["dense"], "field_map": {"text": "dense"}, "batch_size": 8}},
        {"sparse_encoding": {"model_id": ml_node.names["sparse"], "field_map": {"text": "sparse"},
                             "batch_size": 8}}]}
    async with MLClient(ml_node.url) as ml:
        docs = await IngestPipeline.from_body("p", body, ml=ml).run(
            [IngestDocument("docs", i, {"text": t}) for i, t in CORPUS.items()])
    return MemIndex("docs", {d.id: d.source for d in docs})


async def test_neural_query_vector_is_the_models(ml_node, index):
    async with MLClient(ml_node.url) as ml:
        resp = await run_search("docs", {"query": {"neural": {"dense": {"query_text": QUERY, "k": 3,
                                                                       "model_id": ml_node.names["dense"]}}}},
                                search_fn=index.search_fn, ml=ml)
    (sent,) = index.requests
    want = (await raw(ml_node.url, "text_embedding", ml_node.model_ids["dense"], [QUERY]))[0]["output"][0]["data"]
    knn = sent["query"]["knn"]["dense"]
    assert knn["k"] == 3 and np.allclose(knn["vector"], want, atol=1e-6)
    assert [h["_id"] for h in resp["hits"]["hits"]][:1] in (["d1"], ["d5"], ["d3"])
    assert len(resp["hits"]["hits"]) == 3


async def test_inference_free_sparse_query_uses_tokenizer_weights(ml_node, index):
    pipe = SearchPipeline.from_body("s", {"request_processors": [{"neural_query_enricher": {
        "neural_field_default_id": {"sparse": ml_node.names["tokenizer"]}}}]}, ml=None)
    async with MLClient(ml_node.url) as ml:
        pipe.ml = ml
        await pipe.prepare()
        resp = await run_search("docs", {"query": {"neural_sparse": {"sparse": {"query_text": QUERY}}}},
                                search_fn=index.search_fn, ml=ml, pipeline=pipe)
    tokens = (await raw(ml_node.url, "sparse_tokenize", ml_node.model_ids["tokenizer"], [QUERY]))[0]
    tokens = tokens["output"][0]["dataAsMap"]["response"][0]
    should = index.requests[0]["query"]["bool"]["should"]
    assert {c["rank_feature"]["field"]: c["rank_feature"]["boost"] for c in should} == {
        f"sparse.{t}": w for t, w in tokens.items() if "." not in t}
    # score = sum over query tokens of query weight x document weight
    for hit in resp["hits"]["hits"]:
        doc = index.docs[hit["_id"]]["sparse"]
        assert hit["_score"] == pytest.approx(sum(w * doc.get(t, 0.0) for t, w in tokens.items()))


@pytest.mark.parametrize("processor", [
    {"normalization-processor": {"combination": {"technique": "arithmetic_mean",
                                                  "parameters": {"weights": [0.3, 0.7]}}}},
    {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}},
])
async def test_hybrid_ranks_like_exact_scores_combined_by_hand(ml_node, index, processor):
    pipe = SearchPipeline.from_body("h", {"phase_results_processors": [processor]}, ml=None)
    body = {"size": 4, "query": {"hybrid": {
        "queries": [{"neural": {"dense": {"query_text": QUERY, "model_id": ml_node.model_ids["dense"], "k": 5}}},
                    {"neural_sparse": {"sparse": {"query_text": QUERY, "model_id": ml_node.model_ids["sparse"]}}}],
        "filter": {"bool": {"must_not": [{"term": {"text": CORPUS["d4"]}}]}}}}}
    async with MLClient(ml_node.url) as ml:
        resp = await run_search("docs", body, search_fn=index.search_fn, ml=ml, pipeline=pipe)

    # by hand: exact sub-query scores over the filtered corpus
    dense = await raw(ml_node.url, "text_embedding", ml_node.model_ids["dense"], [QUERY])
    qvec = np.array(dense[0]["output"][0]["data"])
    qtok = (await raw(ml_node.url, "sparse_encoding", ml_node.model_ids["sparse"], [QUERY]))[0]
    qtok = qtok["output"][0]["dataAsMap"]["response"][0]
    ids = [i for i in CORPUS if i != "d4"]
    dense = {}
    for i in ids:
        v = np.array(index.docs[i]["dense"])
        dense[i] = (1 + qvec @ v / (np.linalg.norm(qvec) * np.linalg.norm(v))) / 2
    sparse = {i: sum(w * index.docs[i]["sparse"].get(t, 0.0) for t, w in qtok.items() if "." not in t) for i in ids}
    sparse = {i: s for i, s in sparse.items() if s > 0}
    lists = [sorted(dense, key=lambda i: -dense[i]), sorted(sparse, key=lambda i: -sparse[i])]
    if "normalization-processor" in processor:
        norm = []
        for sub, scores in zip(lists, (dense, sparse)):
            lo, hi = min(scores.values()), max(scores.values())
            norm.append({i: max((scores[i] - lo) / (hi - lo), 0.001) if (scores[i] - lo) else 0.001 for i in sub})
        combined = {i: 0.3 * norm[0].get(i, 0.0) + 0.7 * norm[1].get(i, 0.0) for i in ids}
    else:
        combined = {i: sum(1 / (60 + sub.index(i) + 1) for sub in lists if i in sub) for i in ids}
    expected = sorted(combined, key=lambda i: -combined[i])[:4]
    assert [h["_id"] for h in resp["hits"]["hits"]] == expected
    for hit in resp["hits"]["hits"]:
        assert hit["_score"] == pytest.approx(combined[hit["_id"]], rel=1e-5)
    assert resp["hits"]["total"]["value"] == len(ids)
    assert all("neural" not in repr(r["query"]) for r in index.requests)  # nothing reached the index unrewritten
    assert [r["size"] for r in index.requests] == [4, 4]
