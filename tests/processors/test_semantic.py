"""processors.semantic: the semantic field type's mapping expansion, validation messages, chunking, ingest output and
neural query rewrite, with the real ML node and the real models (the session's ``ml_node``).

``semantic_models(ml_node)`` (used by tests/datanode and tests/neuralpipe too) registers MiniLM once more with the
``additional_config.space_type`` that OpenSearch's pretrained model configs carry (documentation-website
``_mappings/supported-field-types/semantic.md``: "For pretrained dense models, this information is included in the
default model configuration"); ``plain_dense`` is MiniLM registered without it.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import requests

from opensearch_contract.errors import IllegalArgument, MapperParsingError, OpenSearchError
from processors import prune, semantic
from processors.mlclient import MLClient
from tests.fixtures.mlnode import MINILM_NAME, deploy, url_register_body, wait_task

pytestmark = [pytest.mark.integration]

_REGISTERED: dict[str, dict[str, str]] = {}


def semantic_models(ml_node: Any) -> dict[str, str]:
    """Model ids: ``dense`` (MiniLM with additional_config.space_type l2), ``sparse`` (SPLADE, SPARSE_ENCODING),
    ``tokenizer`` (SPARSE_TOKENIZE), ``plain_dense`` (MiniLM registered without additional_config)."""
    if ml_node.url not in _REGISTERED:
        from opensearchpy import OpenSearch

        from tests.fixtures.models import packaged

        pkg = packaged("minilm-torchscript")
        config = copy.deepcopy(pkg.config)
        config["name"] = MINILM_NAME
        config["model_config"] = {**config["model_config"], "additional_config": {"space_type": "l2"}}
        client = OpenSearch(hosts=[ml_node.url], timeout=600)
        try:
            task = wait_task(client, client.plugins.ml.register_model(
                body=url_register_body(pkg.zip_path, config))["task_id"])
            assert task["state"] == "COMPLETED", task
            deploy(client, task["model_id"])
            plain = {**copy.deepcopy(pkg.config), "name": "semantic-test/minilm-without-space-type"}
            plain["model_config"] = {k: v for k, v in plain["model_config"].items() if k != "additional_config"}
            plain_task = wait_task(client, client.plugins.ml.register_model(
                body=url_register_body(pkg.zip_path, plain))["task_id"])
            assert plain_task["state"] == "COMPLETED", plain_task
        finally:
            client.close()
        _REGISTERED[ml_node.url] = {"dense": task["model_id"], "sparse": ml_node.model_ids["sparse"],
                                    "tokenizer": ml_node.model_ids["tokenizer"],
                                    "plain_dense": plain_task["model_id"]}
    return _REGISTERED[ml_node.url]


def predict_dense(ml_url: str, model_id: str, text: str) -> list[float]:
    res = requests.post(f"{ml_url}/_plugins/_ml/_predict/text_embedding/{model_id}",
                        json={"text_docs": [text], "target_response": ["sentence_embedding"]}, timeout=120)
    res.raise_for_status()
    return res.json()["inference_results"][0]["output"][0]["data"]


def predict_sparse(ml_url: str, model_id: str, text: str, algorithm: str = "sparse_encoding") -> dict[str, float]:
    res = requests.post(f"{ml_url}/_plugins/_ml/_predict/{algorithm}/{model_id}", json={"text_docs": [text]},
                        timeout=120)
    res.raise_for_status()
    return res.json()["inference_results"][0]["output"][0]["dataAsMap"]["response"][0]


@pytest.fixture(scope="module")
def models(ml_node: Any) -> dict[str, str]:
    return semantic_models(ml_node)


@pytest.fixture(scope="module")
def model_docs(ml_node: Any, models: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {mid: requests.get(f"{ml_node.url}/_plugins/_ml/models/{mid}", timeout=30).json()
            for mid in models.values()}


def _mapping(**field: Any) -> dict[str, Any]:
    return {"properties": {"passage": {"type": "semantic", **field}}}


def test_expand_dense_and_sparse_as_documented(models: dict[str, str], model_docs: dict[str, Any]) -> None:
    dense = semantic.expand(_mapping(model_id=models["dense"]), model_docs)
    assert dense["properties"]["passage"] == {"type": "semantic", "model_id": models["dense"],
                                              "raw_field_type": "text"}
    assert dense["properties"]["passage_semantic_info"] == {"properties": {
        "embedding": {"type": "knn_vector", "dimension": 384,
                      "method": {"engine": "faiss", "space_type": "l2", "name": "hnsw", "parameters": {}}},
        "model": {"properties": {k: {"type": "text", "index": False} for k in ("id", "name", "type")}}}}
    sparse = semantic.expand(_mapping(model_id=models["sparse"], semantic_info_field_name="sp", chunking=True),
                             model_docs)
    assert sparse["properties"]["sp"]["properties"]["chunks"] == {"type": "nested", "properties": {
        "embedding": {"type": "rank_features"}, "text": {"type": "text"}}}
    # dense_embedding_config merges into the knn_vector; the space type still comes from the model
    custom = semantic.expand(_mapping(model_id=models["dense"], dense_embedding_config={
        "method": {"name": "hnsw", "engine": "lucene", "parameters": {"ef_construction": 128, "m": 32}}}),
        model_docs)
    assert custom["properties"]["passage_semantic_info"]["properties"]["embedding"]["method"] == {
        "name": "hnsw", "engine": "lucene", "parameters": {"ef_construction": 128, "m": 32}, "space_type": "l2"}


def test_expand_client_side_keeps_the_raw_field_and_stashes_the_config(models: dict[str, str],
                                                                       model_docs: dict[str, Any]) -> None:
    body = {"properties": {"doc": {"properties": {"body": {"type": "semantic", "model_id": models["sparse"],
                                                           "analyzer": "english"}}}}}
    out = semantic.expand(body, model_docs, client_side=True)
    assert out["properties"]["doc"]["properties"]["body"] == {"type": "text", "analyzer": "english"}
    assert out["properties"]["doc"]["properties"]["body_semantic_info"]["properties"]["embedding"] == {
        "type": "rank_features"}
    fields = semantic.fields_of(out)
    assert list(fields) == ["doc.body"]
    assert fields["doc.body"].embedding_path == "doc.body_semantic_info.embedding"
    assert fields["doc.body"].embedding_type == "rank_features"
    assert semantic.fields_of(out, client_side=False) == {}


# (mapping entry, model key, error type, reason) -- the messages of neural-search's SemanticMappingUtils,
# SemanticFieldMapper.TypeParser, ChunkingConfig, SparseEncodingConfig and SemanticInfoConfigBuilder
BAD_CONFIGS = [
    ({}, None, IllegalArgument, "model_id is required for the semantic field at passage"),
    ({"model_id": ""}, None, IllegalArgument, "model_id should be a non-empty string for the semantic field at "
                                               "passage"),
    ({"semantic_info_field_name": "a.b"}, "dense", IllegalArgument,
     "semantic_info_field_name should not contain '.' for the semantic field at passage"),
    ({"semantic_info_field_name": ""}, "dense", IllegalArgument,
     "semantic_info_field_name cannot be an empty string for the semantic field at passage"),
    ({"raw_field_type": "long"}, "dense", MapperParsingError,
     "Failed to parse mapping [_doc]: raw_field_type long is not supported. It should be one of [text, keyword, "
     "match_only_text, wildcard, token_count, binary]"),
    ({"search_model_id": "x", "semantic_field_search_analyzer": "standard"}, "sparse", MapperParsingError,
     "Failed to parse mapping [_doc]: search_model_id can not coexist with semantic_field_search_analyzer in "
     "semantic field passage"),
    ({"search_model_id": ""}, "sparse", MapperParsingError,
     "Failed to parse mapping [_doc]: search_model_id can not be empty string in semantic field passage"),
    ({"chunking": "yes"}, "dense", MapperParsingError,
     "Failed to parse mapping [_doc]: [chunking] must be either a List of Maps or a Boolean"),
    ({"chunking": [{"algorithm": "sentences"}]}, "dense", MapperParsingError,
     "Failed to parse mapping [_doc]: [algorithm] must be [fixed_token_length, delimiter, fixed_char_length]"),
    ({"chunking": [{"parameters": {}}]}, "dense", MapperParsingError,
     "Failed to parse mapping [_doc]: [algorithm] is required to configure the chunking strategy."),
    ({"chunking": [{"algorithm": "delimiter", "size": 3}]}, "dense", MapperParsingError,
     "Failed to parse mapping [_doc]: [chunking] does not support parameters [size]"),
    ({"chunking": [{"algorithm": "fixed_token_length", "parameters": {"overlap_rate": 0.9}}]}, "dense",
     MapperParsingError, "Failed to parse mapping [_doc]: Parameter [overlap_rate] must be between 0.0 and 0.5"),
    ({"sparse_encoding_config": {"prune_type": "top_k"}}, "sparse", MapperParsingError,
     "Failed to parse mapping [_doc]: prune_ratio is required when prune_type is defined and not none"),
    ({"sparse_encoding_config": {"prune_type": "max_ratio", "prune_ratio": 2}}, "sparse", MapperParsingError,
     "Failed to parse mapping [_doc]: Illegal prune_ratio 2.000000 for prune_type: max_ratio. prune_ratio should be "
     "in the range [0, 1)."),
    ({"sparse_encoding_config": {"prune_type": "best"}}, "sparse", MapperParsingError,
     "Failed to parse mapping [_doc]: Invalid [prune_type]. Valid values are [none,top_k,alpha_mass,max_ratio,"
     "abs_value]."),
    ({"sparse_encoding_config": {"prune_ratio": 0.1}}, "sparse", MapperParsingError,
     "Failed to parse mapping [_doc]: prune_ratio should not be defined when prune_type is none or null"),
    ({"skip_existing_embedding": "yes"}, "dense", MapperParsingError,
     "Failed to parse mapping [_doc]: skip_existing_embedding should be a boolean for the semantic field at passage"),
    ({"sparse_encoding_config": {"prune_type": "top_k", "prune_ratio": 64}}, "dense", IllegalArgument,
     "Failed to transform the mapping for the semantic field at passage due to Cannot build the semantic info config "
     "because the dense(text embedding) model cannot support sparse_encoding_config."),
    ({"semantic_field_search_analyzer": "standard"}, "dense", IllegalArgument,
     "Failed to transform the mapping for the semantic field at passage due to Cannot build the semantic info config "
     "because the dense(text embedding) model cannot support semantic_field_search_analyzer"),
    ({"dense_embedding_config": {"method": {"name": "hnsw"}}}, "sparse", IllegalArgument,
     "Failed to transform the mapping for the semantic field at passage due to Cannot build the semantic info config "
     "because dense_embedding_config is not supported by the sparse model."),
    ({"dense_embedding_config": {"dimension": 768}}, "dense", IllegalArgument,
     "Failed to transform the mapping for the semantic field at passage due to Cannot configure dimension in "
     "dense_embedding_config in the semantic field."),
    ({"dense_embedding_config": {"method": {"space_type": "cosinesimil"}}}, "dense", IllegalArgument,
     "Failed to transform the mapping for the semantic field at passage due to Cannot configure space_type in "
     "dense_embedding_config in the semantic field."),
    ({}, "plain_dense", IllegalArgument,
     "Failed to transform the mapping for the semantic field at passage due to space_type is not defined or not a "
     "string in the additional_config of the model {plain_dense}."),
]


@pytest.mark.parametrize(("entry", "model", "error", "reason"), BAD_CONFIGS)
def test_bad_configs_get_the_documented_messages(entry: dict[str, Any], model: str | None, error: type,
                                                 reason: str, models: dict[str, str],
                                                 model_docs: dict[str, Any]) -> None:
    spec = dict(entry)
    if model is not None:
        spec.setdefault("model_id", models[model])
    with pytest.raises(error) as raised:
        semantic.expand(_mapping(**spec), model_docs)
    assert raised.value.reason == reason.format(**models)


def test_two_fields_with_bad_model_ids_are_reported_together() -> None:
    body = {"properties": {"a": {"type": "semantic"}, "b": {"type": "semantic", "model_id": 7}}}
    with pytest.raises(IllegalArgument) as raised:
        semantic.expand(body, {})
    assert raised.value.reason == ("model_id is required for the semantic field at a; "
                                   "model_id should be a non-empty string for the semantic field at b")


async def test_embed_dense_sparse_chunked_and_errors(ml_node: Any, models: dict[str, str],
                                                     model_docs: dict[str, Any]) -> None:
    mapping = {"properties": {
        "title": {"type": "semantic", "model_id": models["dense"]},
        "body": {"type": "semantic", "model_id": models["sparse"], "chunking": [
            {"algorithm": "delimiter", "parameters": {"delimiter": "\n\n"}},
            {"algorithm": "fixed_token_length", "parameters": {"token_limit": 3}}],
            "sparse_encoding_config": {"prune_type": "top_k", "prune_ratio": 5}}}}
    fields = semantic.fields_of(semantic.expand(mapping, model_docs))
    body = "Coffee beans are roasted slowly.\n\nTea leaves dry"
    async with MLClient(ml_node.url) as ml:
        out = await semantic.embed([("1", {"title": "Hello world", "body": body}),
                                    ("2", {"title": ["not", "a string"]}),
                                    ("3", {"other": 1})], fields, ml)
    doc = out[0]
    assert isinstance(doc, dict)
    info = doc["title_semantic_info"]
    assert info["model"] == {"name": MINILM_NAME, "id": models["dense"], "type": "TEXT_EMBEDDING"}
    assert np.allclose(info["embedding"], predict_dense(ml_node.url, models["dense"], "Hello world"), atol=1e-6)
    # the documentation's GET _doc shows -0.034477286 first for all-MiniLM-L6-v2 on "Hello world"
    assert info["embedding"][0] == pytest.approx(-0.034477286, abs=1e-5)
    chunks = doc["body_semantic_info"]["chunks"]
    assert [c["text"] for c in chunks] == ["Coffee beans are ", "roasted slowly.\n\n", "Tea leaves dry"]
    for chunk in chunks:
        full = predict_sparse(ml_node.url, models["sparse"], chunk["text"])
        # a call's threads follow the node's load: equal to float rounding, not bit for bit
        assert chunk["embedding"] == pytest.approx(prune.prune("top_k", 5, full), rel=1e-5, abs=1e-5)
        assert len(chunk["embedding"]) == 5
    assert doc["body_semantic_info"]["model"]["type"] == "SPARSE_ENCODING"
    assert isinstance(out[1], OpenSearchError)
    assert out[1].reason == ("Expect the semantic field at path: title to be a string but found: "
                             "class java.util.ArrayList.")
    assert out[2] == {"other": 1}


async def test_default_sparse_prune_is_max_ratio_point_one(ml_node: Any, models: dict[str, str],
                                                           model_docs: dict[str, Any]) -> None:
    fields = semantic.fields_of(semantic.expand(_mapping(model_id=models["sparse"]), model_docs))
    text = "Neural search turns text into sparse token weights."
    async with MLClient(ml_node.url) as ml:
        [doc] = await semantic.embed([(None, {"passage": text})], fields, ml)
    full = predict_sparse(ml_node.url, models["sparse"], text)
    assert isinstance(doc, dict)
    want = prune.prune("max_ratio", 0.1, full)
    assert doc["passage_semantic_info"]["embedding"] == pytest.approx(want, rel=1e-5, abs=1e-5)  # threads vary
    assert len(doc["passage_semantic_info"]["embedding"]) < len(full)


async def test_skip_existing_embedding_reuses_unchanged_values(ml_node: Any, models: dict[str, str],
                                                               model_docs: dict[str, Any]) -> None:
    fields = semantic.fields_of(semantic.expand(_mapping(model_id=models["dense"], skip_existing_embedding=True),
                                                model_docs))
    marker = {"model": {"id": models["dense"], "name": "n", "type": "TEXT_EMBEDDING"}, "embedding": [1.0] * 384}
    stored = {"same": {"passage": "Hello world", "passage_semantic_info": marker},
              "changed": {"passage": "old text", "passage_semantic_info": marker}}
    asked: list[list[str]] = []

    async def lookup(ids: list[str]) -> dict[str, dict[str, Any]]:
        asked.append(ids)
        return {i: stored[i] for i in ids if i in stored}

    async with MLClient(ml_node.url) as ml:
        out = await semantic.embed([("same", {"passage": "Hello world"}), ("changed", {"passage": "new text"})],
                                   fields, ml, lookup=lookup)
    assert asked == [["changed", "same"]]
    assert out[0]["passage_semantic_info"] == marker  # type: ignore[index]
    assert out[1]["passage_semantic_info"]["embedding"] == pytest.approx(  # type: ignore[index]
        predict_dense(ml_node.url, models["dense"], "new text"), rel=1e-5, abs=1e-6)


async def test_rewrite_neural_on_semantic_fields(ml_node: Any, models: dict[str, str],
                                                 model_docs: dict[str, Any]) -> None:
    mapping = {"properties": {
        "d": {"type": "semantic", "model_id": models["dense"], "chunking": True},
        "s": {"type": "semantic", "model_id": models["sparse"], "search_model_id": models["tokenizer"]},
        "a": {"type": "semantic", "model_id": models["sparse"], "semantic_field_search_analyzer": "bert-uncased"}}}
    fields = semantic.fields_of(semantic.expand(mapping, model_docs))
    query = {"bool": {"should": [{"neural": {"d": {"query_text": "Hi world", "k": 3}}},
                                 {"neural": {"s": {"query_text": "Hi world", "boost": 2.0}}},
                                 {"neural": {"a": {"query_text": "Hi world"}}}]}}
    async with MLClient(ml_node.url) as ml:
        out = await semantic.rewrite_query(query, fields, ml)
    dense, sparse, analyzed = out["bool"]["should"]
    assert dense["nested"]["path"] == "d_semantic_info.chunks"
    assert dense["nested"]["score_mode"] == "max"
    knn = dense["nested"]["query"]["knn"]["d_semantic_info.chunks.embedding"]
    assert knn["k"] == 3
    assert np.allclose(knn["vector"], predict_dense(ml_node.url, models["dense"], "Hi world"), atol=1e-6)
    tokens = predict_sparse(ml_node.url, models["tokenizer"], "Hi world", "sparse_tokenize")
    assert sparse == {"neural_sparse": {"s_semantic_info.embedding": {"query_tokens": pytest.approx(tokens, rel=1e-5),
                                                                      "boost": 2.0}}}
    assert set(analyzed["neural_sparse"]["a_semantic_info.embedding"]["query_tokens"]) == {"hi", "world"}
    assert query["bool"]["should"][0] == {"neural": {"d": {"query_text": "Hi world", "k": 3}}}  # input untouched


BAD_QUERIES = [
    ("d", {"query_text": "x", "query_tokens": {"a": 1.0}},
     "Invalid neural query: Target field is a semantic field using a dense model. query_tokens is not supported "
     "since it is for the sparse model."),
    ("d", {"query_text": "x", "k": 2, "min_score": 0.5},
     "Invalid neural query: Only one of k, max_distance, or min_score can be provided"),
    ("s", {"query_text": "x", "k": 2, "filter": {"match_all": {}}},
     "Invalid neural query: Target field is a semantic field using a sparse model. [filter, k] are not supported "
     "since they are for the dense model."),
    ("s", {"query_text": "x", "model_id": "m", "semantic_field_search_analyzer": "standard"},
     "Invalid neural query: query_tokens, model_id and semantic_field_search_analyzer can not coexist"),
    ("s", {"model_id": "m"}, "Invalid neural query: Either query_text or query_tokens must be provided"),
]


@pytest.mark.parametrize(("field", "params", "reason"), BAD_QUERIES)
async def test_bad_neural_queries_on_semantic_fields(field: str, params: dict[str, Any], reason: str,
                                                     models: dict[str, str], model_docs: dict[str, Any]) -> None:
    mapping = {"properties": {"d": {"type": "semantic", "model_id": models["dense"]},
                              "s": {"type": "semantic", "model_id": models["sparse"]}}}
    fields = semantic.fields_of(semantic.expand(mapping, model_docs))
    with pytest.raises(IllegalArgument) as raised:
        await semantic.rewrite_query({"neural": {field: params}}, fields, None)
    assert raised.value.reason == reason


async def test_semantic_fields_inside_objects_arrays_and_dotted_keys(ml_node: Any, models: dict[str, str],
                                                                     model_docs: dict[str, Any]) -> None:
    mapping = {"properties": {"doc": {"properties": {"body": {"type": "semantic", "model_id": models["sparse"],
                                                              "sparse_encoding_config": {"prune_type": "none"}}}}}}
    fields = semantic.fields_of(semantic.expand(mapping, model_docs))
    async with MLClient(ml_node.url) as ml:
        out = await semantic.embed([("1", {"doc": [{"body": "red apple"}, {"body": "green pear"}]}),
                                    ("2", {"doc.body": "red apple"})], fields, ml)
    first, second = out
    assert isinstance(first, dict) and isinstance(second, dict)
    apple = predict_sparse(ml_node.url, models["sparse"], "red apple")
    # prune_type none: all kept; a call's threads follow the node's load: equal to float rounding, not bit for bit
    assert first["doc"][0]["body_semantic_info"]["embedding"] == pytest.approx(apple, rel=1e-5, abs=1e-5)
    assert first["doc"][1]["body_semantic_info"]["embedding"] == pytest.approx(
        predict_sparse(ml_node.url, models["sparse"], "green pear"), rel=1e-5, abs=1e-5)
    assert second == {"doc": {"body": "red apple", "body_semantic_info": first["doc"][0]["body_semantic_info"]}}
