"""What ``neuralpipe eval`` sends:
the search bodies per method, the hybrid pipelines, the ingest pipeline and mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuralpipe.eval.methods import METHODS, EvalModels, adapt_ingest_pipeline, search_body, search_pipeline_body
from neuralpipe.eval.run import default_index_name, format_table
from neuralpipe.ingest.setup import use_exact_knn

pytestmark = pytest.mark.unit
MODELS = EvalModels(dense="dense-id", sparse="sparse-id", tokenizer="tok-id")


def test_search_bodies_are_opensearch_query_dsl():
    assert search_body("dense", "q", MODELS)["query"] == {
        "neural": {"passage_embedding": {"query_text": "q", "model_id": "dense-id", "k": 100}}}
    assert search_body("sparse", "q", MODELS)["query"] == {
        "neural_sparse": {"passage_sparse": {"query_text": "q", "model_id": "tok-id"}}}
    assert search_body("bm25", "q", MODELS, k=50) == {
        "size": 50, "_source": False, "query": {"match": {"passage": {"query": "q"}}}}
    hybrid = search_body("hybrid_rrf", "q", MODELS)["query"]["hybrid"]["queries"]
    assert [next(iter(c)) for c in hybrid] == ["match", "neural"]
    with pytest.raises(ValueError, match=r"unknown method \[colbert\], valid: dense, sparse, bm25"):
        search_body("colbert", "q", MODELS)


def test_hybrid_pipelines_match_neural_search_processor_bodies():
    assert search_pipeline_body("hybrid_minmax")["phase_results_processors"] == [
        {"normalization-processor": {"normalization": {"technique": "min_max"},
                                     "combination": {"technique": "arithmetic_mean"}}}]
    assert search_pipeline_body("hybrid_rrf")["phase_results_processors"] == [
        {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}}]
    assert all(search_pipeline_body(m) is None for m in ("dense", "sparse", "bm25"))
    assert set(METHODS) == {"dense", "sparse", "bm25", "hybrid_minmax", "hybrid_rrf"}


def test_user_pipeline_is_repointed_at_the_passage_and_keeps_its_settings():
    body = {"processors": [
        {"text_embedding": {"model_id": "x", "field_map": {"text": "emb"}, "batch_size": 8, "skip_existing": True}},
        {"sparse_encoding": {"model_id": "y", "field_map": {"text": "sp"}, "prune_type": "top_k", "prune_ratio": 50}},
    ]}
    out = adapt_ingest_pipeline(body, MODELS)
    assert out["processors"][0]["text_embedding"] == {
        "model_id": "dense-id", "field_map": {"passage": "passage_embedding"}, "batch_size": 8}
    assert out["processors"][1]["sparse_encoding"] == {
        "model_id": "sparse-id", "field_map": {"passage": "passage_sparse"}, "prune_type": "top_k", "prune_ratio": 50}
    assert body["processors"][0]["text_embedding"]["model_id"] == "x"  # the caller's body is not changed
    with pytest.raises(ValueError, match=r"missing \['sparse_encoding'\]"):
        adapt_ingest_pipeline({"processors": body["processors"][:1]}, MODELS)
    with pytest.raises(ValueError, match=r"not \[text_chunking\]"):
        adapt_ingest_pipeline({"processors": [{"text_chunking": {}}]}, MODELS)


def test_exact_turns_hnsw_into_flat_and_keeps_the_space_type():
    body = {"mappings": {"properties": {
        "passage": {"type": "text"},
        "passage_embedding": {"type": "knn_vector", "dimension": 384,
                              "method": {"name": "hnsw", "engine": "faiss", "space_type": "cosinesimil",
                                         "parameters": {"m": 16}}},
        "nested": {"type": "nested", "properties": {
            "knn": {"type": "knn_vector", "dimension": 4, "method": {"name": "hnsw"}}}},
    }}}
    use_exact_knn(body)
    props = body["mappings"]["properties"]
    assert props["passage_embedding"]["method"] == {"name": "flat", "engine": "faiss", "space_type": "cosinesimil"}
    assert props["nested"]["properties"]["knn"]["method"] == {"name": "flat"}
    assert props["passage"] == {"type": "text"}


def test_index_name_and_table():
    assert default_index_name(Path("/data/SciFact"), exact=True) == "neuralpipe-eval-scifact-exact"
    assert default_index_name(Path("x y"), exact=False) == "neuralpipe-eval-x-y-hnsw"
    table = format_table({"dense": {"ndcg@10": 0.64321, "recall@100": 0.9},
                          "bm25": {"ndcg@10": 0.6, "recall@100": 0.85}})
    lines = table.splitlines()
    assert "nDCG@10" in lines[0] and "recall@100" in lines[0]
    assert lines[2].startswith("dense (neural, knn)") and lines[2].split()[-2:] == ["0.6432", "0.9000"]
    assert lines[3].startswith("BM25 (match)")
