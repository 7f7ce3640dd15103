"""Issue 11, item 1: one request cannot exhaust the ML node's memory. Request bodies are capped per route, texts per
predict request and characters per text before anything is tokenized: a truncating model gets only the characters it
could use (reported in X-Neuralpipe-Truncated), one that does not truncate answers 400 naming the limit. Real ML node,
real TorchScript models (MiniLM, and a small scripted model that reports what reached it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlnode.settings import MLSettings
from mlnode.tasks import Backends
from tests.fixtures.mlnode import api_client, api_deploy, api_register_zip, file_url_test_folders
from tests.mlnode.scripted_models import counting_model_zip

pytestmark = [pytest.mark.integration]
ML = "/_plugins/_ml"
JSON = {"Content-Type": "application/json"}


def _settings(tmp_path: Path, **overrides) -> MLSettings:
    values = {"max_predict_body_bytes": 200_000, "max_request_body_bytes": 20_000, "max_predict_texts": 8,
              "max_chars_per_token": 2, **overrides}
    return MLSettings.load(data_dir=tmp_path / "data", allow_registering_model_via_url=True,
                           native_memory_threshold=100, cache_dir=str(tmp_path / "cache"),
                           file_url_folders=file_url_test_folders(), **values)


async def _model(client, zip_and_digest, name: str) -> str:
    zip_path, digest = zip_and_digest
    task = await api_register_zip(client, zip_path, digest, name=name)
    assert task["state"] == "COMPLETED", task
    assert (await api_deploy(client, task["model_id"]))["state"] == "COMPLETED"
    return task["model_id"]


async def _predict(client, model_id: str, texts: list[str]):
    body = json.dumps({"text_docs": texts})
    return await client.post(f"{ML}/_predict/text_embedding/{model_id}", data=body, headers=JSON)


async def _error(resp, status: int, error_type: str, *needles: str) -> None:
    body = await resp.json()
    assert resp.status == status and body["status"] == status, body
    assert body["error"]["type"] == error_type and body["error"]["root_cause"][0]["type"] == error_type, body
    for needle in needles:
        assert needle in body["error"]["reason"], body


async def test_bodies_are_capped_per_route(tmp_path):
    async with api_client(_settings(tmp_path), Backends()) as client:
        model_id = await _model(client, counting_model_zip(tmp_path / "counting.zip"), "counting")
        # a predict body over the predict cap: 413 before it is read, with or without a declared length
        size = len(json.dumps({"text_docs": ["x" * 250_000]}))
        await _error(await _predict(client, model_id, ["x" * 250_000]), 413, "content_too_long_exception",
                     f"[{size}] bytes", "[200000] bytes", "max_predict_body_bytes")

        async def chunked():
            yield b'{"text_docs": ["'
            for _ in range(30):
                yield b"y" * 10_000
            yield b'"]}'

        resp = await client.post(f"{ML}/_predict/text_embedding/{model_id}", data=chunked(), headers=JSON)
        await _error(resp, 413, "content_too_long_exception", "[200000] bytes", "max_predict_body_bytes")
        # the same size is fine for predict up to its cap, not for another route
        resp = await _predict(client, model_id, ["word " * 20_000])
        assert resp.status == 200, await resp.text()
        resp = await client.post(f"{ML}/models/_search", data=json.dumps({"query": {"match_all": {}},
                                                                          "pad": "z" * 30_000}), headers=JSON)
        await _error(resp, 413, "content_too_long_exception", "[20000] bytes", "max_request_body_bytes")
        resp = await client.put("/_cluster/settings", data=json.dumps({"persistent": {"pad": "z" * 30_000}}),
                                headers=JSON)
        await _error(resp, 413, "content_too_long_exception", "max_request_body_bytes")
        # nothing was changed by the refused requests: the model still answers
        resp = await _predict(client, model_id, ["hello world"])
        assert resp.status == 200
        assert (await resp.json())["inference_results"][0]["output"][0]["data"][0] == 4.0  # [CLS] hello world [SEP]


async def test_too_many_texts_is_a_400_naming_the_limit(tmp_path):
    async with api_client(_settings(tmp_path), Backends()) as client:
        model_id = await _model(client, counting_model_zip(tmp_path / "counting.zip"), "counting")
        await _error(await _predict(client, model_id, ["a"] * 9), 400, "illegal_argument_exception",
                     "[text_docs] has [9] texts", "at most [8]", "max_predict_texts")
        resp = await _predict(client, model_id, ["a"] * 8)
        assert resp.status == 200
        assert len((await resp.json())["inference_results"]) == 8


async def test_a_truncating_model_gets_only_the_characters_it_could_use(tmp_path):
    """max_length 512 x 2 characters a token: 1024 characters reach the tokenizer. The text's first 1024 characters
    are one token each (CJK characters), more than the model takes, so it sees its first 512 tokens: the same answer
    as without the cut (the other 30,000 characters could never reach the model), and the text is reported cut."""
    async with api_client(_settings(tmp_path), Backends()) as client:
        model_id = await _model(client, counting_model_zip(tmp_path / "counting.zip"), "counting")
        long_text = "中" * 1024 + "文" * 30_000
        resp = await _predict(client, model_id, ["short text", long_text])
        assert resp.status == 200, await resp.text()
        assert resp.headers["X-Neuralpipe-Truncated"] == "1"
        assert resp.headers["X-Neuralpipe-Max-Length"] == "512"
        results = (await resp.json())["inference_results"]
        assert results[0]["output"][0]["data"][0] == 4.0
        tokens, id_sum = results[1]["output"][0]["data"]
        assert tokens == 512.0
        reference = await (await _predict(client, model_id, ["中" * 1024])).json()
        assert reference["inference_results"][0]["output"][0]["data"] == [tokens, id_sum]


async def test_minilm_embeds_the_first_characters_of_a_long_text(tmp_path, model_zips):
    """MiniLM (max length 256 tokens) with 2 characters a token: only the first 512 characters of a 1,000-character
    text of about 200 tokens are embedded, and the response says the text was cut."""
    packaged = model_zips["minilm-torchscript"]
    settings = _settings(tmp_path)
    async with api_client(settings, Backends()) as client:
        model_id = await _model(client, (packaged.zip_path, packaged.config["model_content_hash_value"]), "minilm")
        text = "neural search embeds passages. " * 16 + "coffee is brewed from beans. " * 16
        assert len(text) > 512
        resp = await _predict(client, model_id, [text])
        assert resp.status == 200, await resp.text()
        assert resp.headers["X-Neuralpipe-Truncated"] == "0"
        got = np.array((await resp.json())["inference_results"][0]["output"][0]["data"])
        head = np.array((await (await _predict(client, model_id, [text[:512]])).json())
                        ["inference_results"][0]["output"][0]["data"])
        assert np.allclose(got, head, atol=1e-5), "the embedding is not the one of the text's first 512 characters"


async def test_a_model_that_does_not_truncate_refuses_longer_texts(tmp_path):
    """A tokenizer.json without truncation and no model_config.model_max_length: ML Commons fails such a text; here
    it is a 400 naming the limit, in characters (before tokenizing) and in tokens."""
    async with api_client(_settings(tmp_path), Backends()) as client:
        model_id = await _model(client, counting_model_zip(tmp_path / "plain.zip", max_length=None), "plain")
        await _error(await _predict(client, model_id, ["ok", "x" * 1025]), 400, "illegal_argument_exception",
                     "[text_docs][1] has [1025] characters", "does not truncate", "at most [1024] characters")
        await _error(await _predict(client, model_id, ["中" * 600]), 400, "illegal_argument_exception",
                     "[text_docs][0]", "[512] tokens", "does not truncate")
        resp = await _predict(client, model_id, ["中" * 510])
        assert resp.status == 200
        assert "X-Neuralpipe-Truncated" not in resp.headers
        assert (await resp.json())["inference_results"][0]["output"][0]["data"][0] == 512.0
