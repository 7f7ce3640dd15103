"""Ingest processors on real documents through the real ML node with the real offline models.

Expected values come from the ML node's own predict REST answer for the same text (raw aiohttp, not our client)."""

import aiohttp
import numpy as np
import pytest
import requests

from processors import IngestDocument, IngestPipeline, MLClient, mapping_for_pipeline
from processors.errors import ModelInferenceError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = ["A short one.", "Vaccines train the immune system to recognise a pathogen.",
         "Neural search ranks documents by the meaning of a query rather than its exact words."]


async def raw_predict(url, algorithm, model_id, texts):
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/_plugins/_ml/_predict/{algorithm}/{model_id}", json={"text_docs": texts}) as r:
            assert r.status == 200, await r.text()
            return (await r.json())["inference_results"]


async def raw_dense(ml_node, texts):
    out = []
    for res in await raw_predict(ml_node.url, "text_embedding", ml_node.model_ids["dense"], texts):
        (tensor,) = [t for t in res["output"] if t["name"] == "sentence_embedding"]
        out.append(tensor["data"])
    return out


async def raw_sparse(ml_node, key, texts):
    algorithm = "sparse_encoding" if key == "sparse" else "sparse_tokenize"
    results = await raw_predict(ml_node.url, algorithm, ml_node.model_ids[key], texts)
    return [res["output"][0]["dataAsMap"]["response"][0] for res in results]


def same_vector(got, want):
    """Equal up to float noise: the ML node pads a batch to its longest text, so the same text in a different batch
    differs in the 7th decimal."""
    return len(got) == len(want) and np.allclose(got, want, rtol=0, atol=1e-5)


class CountingML(MLClient):
    """Our real client against the real node, counting predict calls."""

    def __init__(self, url):
        super().__init__(url)
        self.predicts = []

    async def predict(self, model_id, algorithm, body):
        self.predicts.append(list(body["text_docs"]))
        return await super().predict(model_id, algorithm, body)


async def test_text_embedding_vectors_equal_predict_output(ml_node):
    body = {"processors": [{"text_embedding": {"model_id": ml_node.names["dense"],  # by name: resolved
                                               "batch_size": 3,
                                               "field_map": {"text": "text_vec", "book.title": "title_vec",
                                                             "tags": "tags_vec"}}}]}
    docs = [IngestDocument("i", str(n), {"text": t, "book": {"title": t.upper()}}) for n, t in enumerate(TEXTS)]
    docs[0].source["tags"] = ["alpha", "beta gamma"]
    async with CountingML(ml_node.url) as ml:
        out = await IngestPipeline.from_body("dense", body, ml=ml).run(docs)
        assert len(ml.predicts) == 1  # one predict call for the whole batch of 3 documents (8 texts)
        sent = ml.predicts[0]
        assert sent == sorted(sent, key=len)  # sorted by length
    expected = await raw_dense(ml_node, TEXTS)
    titles = await raw_dense(ml_node, [t.upper() for t in TEXTS])
    tags = await raw_dense(ml_node, ["alpha", "beta gamma"])
    for doc, vec, title in zip(out, expected, titles):
        assert same_vector(doc.source["text_vec"], vec)  # order restored after sorting
        assert same_vector(doc.source["book"]["title_vec"], title)
        assert len(vec) == 384
    assert [list(o) for o in out[0].source["tags_vec"]] == [["knn"], ["knn"]]
    assert all(same_vector(o["knn"], t) for o, t in zip(out[0].source["tags_vec"], tags))


async def test_batch_size_splits_predict_calls(ml_node):
    body = {"processors": [{"text_embedding": {"model_id": ml_node.model_ids["dense"], "batch_size": 2,
                                               "field_map": {"text": "v"}}}]}
    docs = [IngestDocument("i", str(n), {"text": t}) for n, t in enumerate(TEXTS)]
    async with CountingML(ml_node.url) as ml:
        await IngestPipeline.from_body("dense", body, ml=ml).run(docs)
    assert sorted(len(p) for p in ml.predicts) == [1, 2]


async def test_skip_existing_reuses_stored_embeddings(ml_node):
    body = {"processors": [{"text_embedding": {"model_id": ml_node.model_ids["dense"], "skip_existing": True,
                                               "batch_size": 10, "field_map": {"text": "v"}}}]}
    stored = {"1": {"text": TEXTS[1], "v": [0.5] * 384}, "2": {"text": "old text", "v": [0.25] * 384}}

    async def lookup(index, ids):
        assert index == "docs"
        return {i: stored[i] for i in ids if i in stored}

    docs = [IngestDocument("docs", str(n), {"text": t}) for n, t in enumerate(TEXTS)]
    async with CountingML(ml_node.url) as ml:
        out = await IngestPipeline.from_body("dense", body, ml=ml).run(docs, lookup=lookup)
        assert ml.predicts == [sorted([TEXTS[0], TEXTS[2]], key=len)]  # doc 1 unchanged: not inferred
    assert out[1].source["v"] == [0.5] * 384
    assert same_vector(out[2].source["v"], (await raw_dense(ml_node, [TEXTS[2]]))[0])


@pytest.mark.parametrize("prune_type,ratio", [("none", None), ("max_ratio", 0.3), ("top_k", 5),
                                              ("alpha_mass", 0.5), ("abs_value", 1.0)])
async def test_sparse_encoding_pruning_on_real_output(ml_node, prune_type, ratio):
    cfg = {"model_id": ml_node.names["sparse"], "field_map": {"text": "sparse"}, "batch_size": 8}
    if prune_type != "none":
        cfg.update(prune_type=prune_type, prune_ratio=ratio)
    docs = [IngestDocument("i", str(n), {"text": t}) for n, t in enumerate(TEXTS)]
    async with MLClient(ml_node.url) as ml:
        out = await IngestPipeline.from_body("s", {"processors": [{"sparse_encoding": cfg}]}, ml=ml).run(docs)
    raws = await raw_sparse(ml_node, "sparse", TEXTS)  # same batch, same order as the processor sends: same output
    for doc, raw in zip(out, raws):
        ranked = sorted(raw.items(), key=lambda kv: -kv[1])
        if prune_type == "none":
            keep = set(raw)
        elif prune_type == "max_ratio":
            keep = {t for t, w in raw.items() if w >= ratio * max(raw.values())}
        elif prune_type == "top_k":
            keep = {t for t, _ in ranked[:ratio]}
        elif prune_type == "abs_value":
            keep = {t for t, w in raw.items() if w >= ratio}
        else:
            total, running, keep = sum(raw.values()), 0.0, set()
            for t, w in ranked:
                running += w
                if running <= ratio * total:
                    keep.add(t)
        assert doc.source["sparse"] == {t: raw[t] for t in keep}
        assert 0 < len(doc.source["sparse"]) <= len(raw) or prune_type == "alpha_mass"


async def test_chunked_passages_are_embedded_as_nested_knn(ml_node):
    body = {"processors": [
        {"text_chunking": {"algorithm": {"delimiter": {"delimiter": ". "}}, "field_map": {"text": "chunks"}}},
        {"text_embedding": {"model_id": ml_node.model_ids["dense"], "field_map": {"chunks": "chunk_vecs"}}}]}
    text = "First sentence. Second sentence. Third"
    async with MLClient(ml_node.url) as ml:
        (doc,) = await IngestPipeline.from_body("c", body, ml=ml).run([IngestDocument("i", "1", {"text": text})])
        mapping = await mapping_for_pipeline(body, ml=ml)
    chunks = ["First sentence. ", "Second sentence. ", "Third"]
    assert doc.source["chunks"] == chunks
    want = await raw_dense(ml_node, chunks)
    assert all(same_vector(got["knn"], w) for got, w in zip(doc.source["chunk_vecs"], want))
    assert len(doc.source["chunk_vecs"]) == 3
    assert mapping["mappings"]["properties"]["chunk_vecs"] == {
        "type": "nested", "properties": {"knn": {"type": "knn_vector", "dimension": 384, "method": {
            "name": "hnsw", "engine": "faiss", "space_type": "cosinesimil"}}}}
    assert mapping["settings"]["index.knn"] is True


async def test_mapping_for_dense_sparse_pipeline(ml_node):
    body = {"processors": [
        {"text_embedding": {"model_id": ml_node.names["dense"], "field_map": {"text": "text_embedding"}}},
        {"sparse_encoding": {"model_id": ml_node.names["sparse"], "field_map": {"text": "text_sparse"}}}]}
    async with MLClient(ml_node.url) as ml:
        mapping = await mapping_for_pipeline(body, ml=ml, pipeline_id="dense-sparse")
    props = mapping["mappings"]["properties"]
    assert props["text_embedding"]["dimension"] == 384 and props["text_embedding"]["type"] == "knn_vector"
    assert props["text_sparse"] == {"type": "rank_features"}
    assert props["text"] == {"type": "text"}
    assert mapping["settings"]["index.default_pipeline"] == "dense-sparse"


async def test_ml_errors_name_the_model_and_fail_only_their_documents(ml_node):
    async with MLClient(ml_node.url) as ml:
        with pytest.raises(ModelInferenceError) as info:
            await ml.text_embedding("no-such-model", ["x"])
        assert "no-such-model" in info.value.reason and info.value.status == 404
        body = {"processors": [{"text_embedding": {"model_id": ml_node.model_ids["dense"],
                                                   "field_map": {"text": "v"}}}]}
        out = await IngestPipeline.from_body("p", body, ml=ml).run(
            [IngestDocument("i", "1", {"text": ["ok", None]}), IngestDocument("i", "2", {"text": "fine"})])
    assert "list type field [text] has null" in out[0].reason
    assert out[0].extra["processor_type"] == "text_embedding"
    assert len(out[1].source["v"]) == 384


def test_cli_export_resolves_model_names_and_derives_mapping(ml_node, capsys):
    import argparse
    import json
    from pathlib import Path

    from neuralpipe.commands import pipelines as cli

    path = str(Path(__file__).resolve().parents[2] / "neuralpipe" / "pipelines" / "ingest" / "dense.yaml")
    args = argparse.Namespace(pipelines_command="export", file=path, ml_url=ml_node.url, mapping=False, indent=2)
    assert cli.run(args) == 0
    body = json.loads(capsys.readouterr().out)
    # the name resolves to a deployed model of that name (tests/processors/test_semantic.py registers a second one)
    resolved = body["processors"][0]["text_embedding"]["model_id"]
    model = requests.get(f"{ml_node.url}/_plugins/_ml/models/{resolved}", timeout=30).json()
    assert (model["name"], model["model_state"]) == ("huggingface/sentence-transformers/all-MiniLM-L6-v2", "DEPLOYED")
    args.mapping = True
    assert cli.run(args) == 0
    mapping = json.loads(capsys.readouterr().out)
    assert mapping["mappings"]["properties"]["text_embedding"]["dimension"] == 384
    assert mapping["settings"] == {"index.knn": True, "index.default_pipeline": "dense"}


def test_client_survives_a_new_event_loop_and_reuses_connections(ml_node):
    import asyncio

    ml = MLClient(ml_node.url)

    async def embed():
        a = await ml.text_embedding(ml_node.model_ids["dense"], ["one"])
        session = ml._session
        b = await ml.text_embedding(ml_node.model_ids["dense"], ["one"])
        assert ml._session is session  # one keep-alive session for both calls
        return a, b

    first = asyncio.run(embed())
    second = asyncio.run(embed())  # a CLI may call asyncio.run more than once with one client
    assert first[0] == first[1] == second[0]
    asyncio.run(ml.close())
