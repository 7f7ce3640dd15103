"""The model pieces' errors reach the user as ML Commons would show them: a 400 with the message for a request, or the
FAILED task's error for registration and deployment -- ZipCheckError, CatalogError / UnknownPretrainedModel,
RuntimeLoadError, PredictInputError -- and predict ``parameters`` reach the runtime. Real backends, real models."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import numpy as np
import pytest

from mlnode.offline import minilm_dir
from mlnode.settings import MLSettings
from mlnode.tasks import Backends
from tests.fixtures.mlnode import MINILM_NAME, api_client, api_deploy, api_wait_task, file_url_test_folders, make_zip

pytestmark = [pytest.mark.integration]
ML = "/_plugins/_ml"


def _settings(tmp_path: Path, **overrides) -> MLSettings:
    return MLSettings.load(
        data_dir=tmp_path / "data",
        allow_registering_model_via_url=True,
        native_memory_threshold=100,
        file_url_folders=file_url_test_folders(),
        cache_dir=str(tmp_path / "cache"),
        **overrides,
    )


async def _error(resp, reason: str) -> None:
    body = await resp.json()
    assert resp.status == 400 and body["status"] == 400, body
    assert body["error"]["type"] == "illegal_argument_exception"
    assert reason in body["error"]["reason"], body


async def _register_url(client, zip_path: Path, digest: str, **extra) -> dict:
    body = {
        "name": zip_path.stem,
        "version": "1.0.0",
        "function_name": "TEXT_EMBEDDING",
        "model_format": "ONNX",
        "model_content_hash_value": digest,
        "url": zip_path.resolve().as_uri(),
        "model_config": {"model_type": "bert", "embedding_dimension": 384, "framework_type": "sentence_transformers"},
    }
    body.update(extra)
    resp = await client.post(f"{ML}/models/_register", json=body)
    assert resp.status == 200, await resp.text()
    return await api_wait_task(client, (await resp.json())["task_id"])


async def test_bad_catalog_file_is_a_400_naming_it(tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("models:\n  - name: broken\n")
    async with api_client(_settings(tmp_path, catalog=str(catalog)), Backends()) as client:
        resp = await client.post(
            f"{ML}/models/_register", json={"name": MINILM_NAME, "version": "1.0.1", "model_format": "ONNX"}
        )
        await _error(resp, "catalog entry [broken] needs [versions] and [model_formats]")  # CatalogError


TOKENIZER = (minilm_dir() / "tokenizer.json").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("files", "wrong_hash", "failed_step", "reason"),
    [
        ({"m.onnx": b"x", "tokenizer.json": TOKENIZER}, True, "register", "model content changed"),  # ZipCheckError
        ({"m.onnx": b"x"}, False, "register", "No tokenizer file"),  # ZipCheckError
        ({"m.onnx": b"not an onnx graph", "tokenizer.json": TOKENIZER}, False, "deploy", "cannot load the ONNX model"),
        (
            {"m.onnx": b"not an onnx graph", "tokenizer.json": "{}"},
            False,
            "deploy",
            "cannot load the model's tokenizer.json",
        ),
    ],
    ids=["hash", "no-tokenizer", "bad-graph", "bad-tokenizer"],
)
async def test_bad_model_content_fails_its_task_with_the_reason(tmp_path, files, wrong_hash, failed_step, reason):
    zip_path, digest = make_zip(tmp_path / "bad.zip", files)
    async with api_client(_settings(tmp_path), Backends()) as client:
        task = await _register_url(client, zip_path, "0" * 64 if wrong_hash else digest)
        if failed_step == "deploy":
            assert task["state"] == "COMPLETED", task
            task = await api_deploy(client, task["model_id"])  # RuntimeLoadError
            model = await (await client.get(f"{ML}/models/{task['model_id']}")).json()
            assert model["model_state"] == "REGISTERED"  # the failed deploy left it as it was
        assert task["state"] == "FAILED" and reason in task["error"], task


async def test_unknown_pretrained_version_and_query_prefix_parameter(tmp_path, model_zips):
    async with api_client(_settings(tmp_path), Backends()) as client:
        resp = await client.post(
            f"{ML}/models/_register", json={"name": MINILM_NAME, "version": "9.9.9", "model_format": "ONNX"}
        )
        await _error(resp, "This model is not in the pre-trained model list")  # UnknownPretrainedModel
        packaged = model_zips["minilm-onnx"]
        config = {**packaged.config["model_config"], "query_prefix": "query: "}
        task = await _register_url(
            client, packaged.zip_path, packaged.hash, name="minilm-prefixed", model_config=config
        )
        assert (await api_deploy(client, task["model_id"]))["state"] == "COMPLETED"
        path = f"{ML}/_predict/text_embedding/{task['model_id']}"

        async def vector(text: str, **parameters) -> np.ndarray:
            body = {"text_docs": [text], **({"parameters": parameters} if parameters else {})}
            result = await (await client.post(path, json=body)).json()
            return np.asarray(result["inference_results"][0]["output"][0]["data"])

        as_query = await vector("what is paris", content_type="query")
        # no passage_prefix: a PASSAGE is embedded as given
        assert np.abs(as_query - await vector("query: what is paris", content_type="passage")).max() < 1e-6
        assert np.abs(as_query - await vector("what is paris", content_type="passage")).max() > 1e-3


@pytest.mark.parametrize("key", ["sparse", "tokenizer"])
async def test_sparse_embedding_format_reaches_the_runtime(ml_node, key):
    path = f"{ml_node.url}{ML}/_predict/sparse_encoding/{ml_node.model_ids[key]}"
    async with aiohttp.ClientSession() as session:

        async def weights(parameters: dict | None) -> tuple[int, dict]:
            body = {"text_docs": ["coffee search"], **({"parameters": parameters} if parameters else {})}
            async with session.post(path, json=body) as resp:
                data = await resp.json()
                if resp.status != 200:
                    return resp.status, data
                return resp.status, data["inference_results"][0]["output"][0]["dataAsMap"]["response"][0]

        _, words = await weights(None)
        _, ids = await weights({"sparse_embedding_format": "TOKEN_ID"})
        assert "coffee" in words and sorted(ids.values()) == sorted(words.values())
        assert all(k.isdigit() for k in ids) and "4157" in ids  # bert-base-uncased: coffee = 4157
        status, error = await weights({"sparse_embedding_format": "invalid"})  # PredictInputError
        assert (
            status == 400 and "No enum constant" in error["error"]["reason"] and "INVALID" in error["error"]["reason"]
        )
