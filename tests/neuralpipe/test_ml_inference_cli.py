"""`neuralpipe ingest` and `neuralpipe search` client-side with the OpenSearch documentation's ml_inference
local-model pipelines as files (bodies verbatim but for `<your model id>`), the embedded data node in a data dir
and the session ML node via --ml-url."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import requests

from neuralpipe.cli import main
from tests.processors.test_ml_inference import INGEST_DOC_PIPELINE, RESPONSE_DOC_PIPELINE, console_json

pytestmark = pytest.mark.integration


def raw(ml_url: str, model_id: str, texts: list[str]) -> list[list[float]]:
    res = requests.post(f"{ml_url}/_plugins/_ml/_predict/text_embedding/{model_id}", timeout=120,
                        json={"text_docs": texts, "return_number": True, "target_response": ["sentence_embedding"]})
    return [r["output"][0]["data"] for r in res.json()["inference_results"]]


def test_ingest_and_search_with_documentation_pipelines(tmp_path: Any, ml_node: Any,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    model_id = ml_node.model_ids["dense"]
    ingest_file = tmp_path / "ml_inference_pipeline_local.json"
    ingest_file.write_text(json.dumps(console_json(INGEST_DOC_PIPELINE, model_id)))
    search_file = tmp_path / "ml_inference_search.json"
    search_file.write_text(json.dumps(console_json(RESPONSE_DOC_PIPELINE, model_id)))
    books = {"1": ["this is the first part", "this is the second part"], "2": ["another book", "its second part"]}
    corpus = tmp_path / "books.jsonl"
    corpus.write_text("".join(json.dumps({"_id": i, "passage_text": texts[0], "book": [{"chunk": {"text": [
        {"chapter": "one", "context": t} for t in texts]}}]}) + "\n" for i, texts in books.items()))
    common = ["--ml-url", ml_node.url, "--data-dir", str(tmp_path / "data")]
    assert main(["ingest", str(corpus), "--index", "my_books", "--pipeline", str(ingest_file), "--no-progress",
                 "--state-dir", str(tmp_path / "state"), *common]) == 0
    body = tmp_path / "query.json"
    body.write_text(json.dumps({"query": {"ids": {"values": ["1", "2"]}}, "sort": [{"_id": "asc"}]}))
    capsys.readouterr()
    assert main(["search", "--index", "my_books", "--body", str(body), "--search-pipeline", str(search_file),
                 "--json", *common]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["1", "2"]
    # up to the ML node's batch padding noise (the runner's batch holds both books' texts): see processors/README.md
    for hit in hits:
        texts = books[hit["_id"]]
        stored = [t["context_embedding"] for t in hit["_source"]["book"][0]["chunk"]["text"]]
        assert np.allclose(stored, raw(ml_node.url, model_id, texts), rtol=0, atol=1e-5)
        assert [t["context"] for t in hit["_source"]["book"][0]["chunk"]["text"]] == texts
    # the response processor: one predict for both hits, each hit its own passage's vector
    assert [h["_source"]["passage_embedding"] for h in hits] == raw(ml_node.url, model_id,
                                                                    [books[h["_id"]][0] for h in hits])
