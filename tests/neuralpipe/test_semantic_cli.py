"""Semantic fields client-side: `neuralpipe ingest --index-body` and `neuralpipe search --body` with --opensearch
against a cluster without neural-search (a data node without an ML node: it answers a ``semantic`` mapping with
"No handler for type [semantic]", as such a cluster does), and the session ML node via --ml-url.

The documentation's bodies go in verbatim (but the model ids); what neuralpipe stores and finds must equal what the
data node does server-side (neural-search's behaviour) for the same bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from neuralpipe.cli import main
from tests.datanode.test_semantic import MODEL_INFO, call
from tests.processors.test_semantic import semantic_models

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCS = [{"_id": "1", "passage_text": "Hello world", "id": "s1"},
        {"_id": "2", "passage_text": "Hi planet", "id": "s2"},
        {"_id": "3", "passage_text": "Coffee beans are roasted before they are ground and brewed.", "id": "s3"}]
QUERY = {"_source": {"excludes": ["passage_text_semantic_info"]},
         "query": {"neural": {"passage_text": {"query_text": "Hi world"}}}}


def _server_side(url: str, body: dict[str, Any]) -> None:
    assert call(url, "PUT", "/my-nlp-index", body)[0] == 200
    lines = "".join(json.dumps(x) + "\n" for d in DOCS for x in (
        {"index": {"_index": "my-nlp-index", "_id": d["_id"]}}, {k: v for k, v in d.items() if k != "_id"}))
    res = requests.post(f"{url}/_bulk?refresh=true", data=lines, headers={"Content-Type": "application/x-ndjson"},
                        timeout=120).json()
    assert not res["errors"], res


def _client_side(tmp: Path, url: str, ml_url: str, body: dict[str, Any], capsys: pytest.CaptureFixture[str]
                 ) -> dict[str, Any]:
    corpus = tmp / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (tmp / "index.json").write_text(json.dumps(body))
    (tmp / "query.json").write_text(json.dumps(QUERY))
    common = ["--opensearch", url, "--ml-url", ml_url, "--data-dir", str(tmp / "data")]
    rc = main(["ingest", str(corpus), "--index", "my-nlp-index", "--index-body", str(tmp / "index.json"),
               "--no-progress", "--state-dir", str(tmp / "state"), *common])
    out = capsys.readouterr()
    assert rc == 0, out.err
    rc = main(["search", "--index", "my-nlp-index", "--body", str(tmp / "query.json"), "--json", *common])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def _close(a: Any, b: Any) -> bool:
    """Equal structure and text; numbers (vector components, token weights) equal to float32 precision."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return bool(a == pytest.approx(b, rel=1e-6, abs=1e-7))
    return bool(a == b)


def _hits(response: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(h["_id"], pytest.approx(h["_score"], rel=1e-5), h["_source"]) for h in response["hits"]["hits"]]


def _sources(url: str) -> dict[str, Any]:
    return {d["_id"]: d["_source"] for d in call(url, "POST", "/my-nlp-index/_mget", {"ids": ["1", "2", "3"]})[1][
        "docs"]}


@pytest.mark.parametrize("kind", ["dense", "sparse-doc-only-chunked"])
def test_client_side_equals_server_side(kind: str, tmp_path: Path, data_node: Any, neural_data_node: Any,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ml = neural_data_node.ml
    models = semantic_models(ml)
    if kind == "dense":  # semantic-search.md, "Using a semantic field"
        body: dict[str, Any] = {"settings": {"index.knn": True}, "mappings": {"properties": {
            "id": {"type": "text"}, "passage_text": {"type": "semantic", "model_id": models["dense"]}}}}
        info = {"properties": {"embedding": {
            "type": "knn_vector", "dimension": 384,
            "method": {"engine": "faiss", "space_type": "l2", "name": "hnsw", "parameters": {}}}, "model": MODEL_INFO}}
        entry = {"type": "semantic", "model_id": models["dense"], "raw_field_type": "text"}
    else:  # neural-sparse-with-pipelines.md, "Using a semantic field"
        body = {"mappings": {"properties": {"id": {"type": "text"}, "passage_text": {
            "type": "semantic", "model_id": models["sparse"], "search_model_id": models["tokenizer"],
            "chunking": True}}}}
        info = {"properties": {"chunks": {"type": "nested", "properties": {
            "embedding": {"type": "rank_features"}, "text": {"type": "text"}}}, "model": MODEL_INFO}}
        entry = {"type": "semantic", "model_id": models["sparse"], "search_model_id": models["tokenizer"],
                 "raw_field_type": "text", "chunking": True}

    _server_side(neural_data_node.url, body)
    server = call(neural_data_node.url, "GET", "/my-nlp-index/_search", QUERY)[1]
    client = _client_side(tmp_path, data_node.url, ml.url, body, capsys)

    # the cluster got the mapping OpenSearch makes, the semantic field as its raw text field
    mapping = call(data_node.url, "GET", "/my-nlp-index/_mapping")[1]["my-nlp-index"]["mappings"]
    assert mapping["properties"]["passage_text"] == {"type": "text"}
    assert mapping["properties"]["passage_text_semantic_info"] == info
    assert mapping["_meta"]["neuralpipe"]["semantic"] == {"passage_text": entry}
    server_mapping = call(neural_data_node.url, "GET", "/my-nlp-index/_mapping")[1]["my-nlp-index"]["mappings"]
    assert server_mapping["properties"]["passage_text_semantic_info"] == info

    # the stored documents are what OpenSearch (here: the data node server-side) writes
    client_docs, server_docs = _sources(data_node.url), _sources(neural_data_node.url)
    assert client_docs.keys() == server_docs.keys() == {"1", "2", "3"}
    for doc_id, stored in client_docs.items():
        assert _close(stored, server_docs[doc_id]), (doc_id, stored, server_docs[doc_id])
        assert stored["passage_text_semantic_info"]["model"]["id"] == entry["model_id"]

    # and the documented neural query finds the same hits with the same scores
    assert client["hits"]["hits"], client
    assert _hits(client) == _hits(server)

    # `neuralpipe search --neural/--sparse TEXT` finds the semantic field in the mapping (either kind of index)
    flag = "--neural" if kind == "dense" else "--sparse"
    for url in (data_node.url, neural_data_node.url):
        rc = main(["search", "--index", "my-nlp-index", flag, "Hi world", "--json", "--opensearch", url,
                   "--ml-url", ml.url, "--data-dir", str(tmp_path / "data")])
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert _hits(json.loads(out.out)) == _hits(server)


def test_client_side_needs_the_ml_node_and_keeps_server_side_fields_alone(tmp_path: Path, data_node: Any,
                                                                          neural_data_node: Any,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    models = semantic_models(neural_data_node.ml)
    # a cluster with semantic support (the data node with its ML node): neuralpipe sends the body as is and
    # writes the documents untouched; the cluster embeds them
    (tmp_path / "docs.jsonl").write_text(json.dumps({"_id": "1", "passage": "Hello world"}) + "\n")
    (tmp_path / "index.json").write_text(json.dumps({"mappings": {"properties": {
        "passage": {"type": "semantic", "model_id": models["dense"]}}}}))
    common = ["--opensearch", neural_data_node.url, "--ml-url", neural_data_node.ml.url,
              "--data-dir", str(tmp_path / "data")]
    rc = main(["ingest", str(tmp_path / "docs.jsonl"), "--index", "kb", "--index-body", str(tmp_path / "index.json"),
               "--no-progress", "--state-dir", str(tmp_path / "state"), *common])
    assert rc == 0, capsys.readouterr().err
    mapping = call(neural_data_node.url, "GET", "/kb/_mapping")[1]["kb"]["mappings"]
    assert mapping["properties"]["passage"]["type"] == "semantic"
    assert "_meta" not in mapping
    source = call(neural_data_node.url, "GET", "/kb/_doc/1")[1]["_source"]
    assert source["passage_semantic_info"]["model"]["id"] == models["dense"]


def test_sparse_client_side_on_osmem_server(tmp_path: Path, neural_data_node: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """osmem-server (an independent OpenSearch REST implementation without neural-search or k-NN) holds the
    client-side sparse fields: same stored weights and the same rank_feature ranking as the server side."""
    from osmem_server import OsmemServer

    models = semantic_models(neural_data_node.ml)
    # semantic.md, "Example: Sparse encoding model", with the field named as in the other examples
    body = {"mappings": {"properties": {"passage_text": {"type": "semantic", "model_id": models["sparse"]}}}}
    _server_side(neural_data_node.url, body)
    server = call(neural_data_node.url, "GET", "/my-nlp-index/_search", QUERY)[1]
    osmem = OsmemServer.start()
    try:
        client = _client_side(tmp_path, osmem.url, neural_data_node.ml.url, body, capsys)
        mapping = call(osmem.url, "GET", "/my-nlp-index/_mapping")[1]["my-nlp-index"]["mappings"]
        assert mapping["properties"]["passage_text_semantic_info"]["properties"]["embedding"] == {
            "type": "rank_features"}
        stored = _sources(osmem.url)
    finally:
        osmem.close()
    for doc_id, source in _sources(neural_data_node.url).items():
        assert _close(stored[doc_id], source), doc_id
    # osmem keeps full float weights where Lucene keeps 9 significant bits: scores within 0.5%
    assert client["hits"]["hits"]
    assert [h["_id"] for h in client["hits"]["hits"]] == [h["_id"] for h in server["hits"]["hits"]]
    assert [h["_score"] for h in client["hits"]["hits"]] == pytest.approx(
        [h["_score"] for h in server["hits"]["hits"]], rel=5e-3)
