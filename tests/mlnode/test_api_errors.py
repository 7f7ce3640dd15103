"""Each bad input gets ML Commons' documented error in OpenSearch's shape, and leaves registered models intact.

Runtimes are fakes here (error paths only); zip validation is the real ``mlnode.zipcheck``."""

from __future__ import annotations

import base64
import threading

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mlnode import keys
from mlnode.runtimes import PredictInputError
from mlnode.settings import MLSettings
from tests.fixtures.mlnode import (
    MINILM_NAME,
    FakeRuntime,
    api_client,
    api_deploy,
    api_fake_model,
    api_register_zip,
    api_wait_task,
    fake_backends,
    file_url_test_folders,
    make_zip,
)

pytestmark = [pytest.mark.integration]
ML = "/_plugins/_ml"
JSON = {"Content-Type": "application/json"}  # as opensearch-py-ml sends chunks; both nodes require it


def _settings(tmp_path, **overrides):
    base = {"native_memory_threshold": 100, "file_url_folders": file_url_test_folders()}
    base.update(overrides)
    return MLSettings.load(data_dir=tmp_path / "data", **base)


async def _error(resp, status: int, reason: str, error_type: str | None = None) -> dict:
    body = await resp.json()
    assert resp.status == status, body
    assert body["status"] == status
    assert reason in body["error"]["reason"], body
    assert body["error"]["root_cause"][0]["reason"] == body["error"]["reason"]
    if error_type:
        assert body["error"]["type"] == error_type
    return body


async def _models(client) -> dict[str, str]:
    body = await (await client.post(f"{ML}/models/_search", json={"query": {"match_all": {}}, "size": 100})).json()
    return {hit["_id"]: hit["_source"]["model_state"] for hit in body["hits"]["hits"]}


@pytest.fixture()
async def node(tmp_path):
    runtimes: list[FakeRuntime] = []
    async with api_client(
        _settings(tmp_path, allow_registering_model_via_url=True), fake_backends(tmp_path, runtimes)
    ) as client:
        client.runtimes = runtimes
        client.model_id = await api_fake_model(client, tmp_path, name="keeper")
        yield client


# ---- model groups ----------------------------------------------------------------------------------------------------


async def test_model_group_lifecycle_and_errors(node, tmp_path):
    resp = await node.post(f"{ML}/model_groups/_register", json={"description": "no name"})
    await _error(
        resp,
        400,
        "Validation Failed: 1: Model group name is required and cannot be null or blank;",
        "action_request_validation_exception",
    )
    created = await (await node.post(f"{ML}/model_groups/_register", json={"name": "g"})).json()
    assert created["status"] == "CREATED"
    group_id = created["model_group_id"]
    dup = await node.post(f"{ML}/model_groups/_register", json={"name": "g"})
    await _error(dup, 400, f"The name you provided is already being used by a model group with ID: {group_id}.")
    await _error(
        await node.get(f"{ML}/model_groups/nope"),
        404,
        "Failed to find model group with the provided model group id: nope",
        "status_exception",
    )
    got = await (await node.get(f"{ML}/model_groups/{group_id}")).json()
    assert got["name"] == "g" and got["latest_version"] == 0
    # a group with a model cannot be deleted
    zip_path, digest = make_zip(tmp_path / "g.zip", {"model.pt": b"x", "tokenizer.json": "{}"})
    task = await api_register_zip(node, zip_path, digest, group_id=group_id, name="in-group")
    assert task["state"] == "COMPLETED"
    assert (await (await node.get(f"{ML}/model_groups/{group_id}")).json())["latest_version"] == 1
    await _error(
        await node.delete(f"{ML}/model_groups/{group_id}"),
        409,
        "Cannot delete the model group when it has associated model versions",
    )
    assert (await (await node.delete(f"{ML}/models/{task['model_id']}")).json())["result"] == "deleted"
    deleted = await (await node.delete(f"{ML}/model_groups/{group_id}")).json()
    assert deleted["result"] == "deleted" and deleted["_id"] == group_id
    await _error(await node.delete(f"{ML}/model_groups/{group_id}"), 404, "Failed to find model group")
    hits = await (await node.get(f"{ML}/model_groups/_search")).json()
    assert hits["hits"]["total"] == {"value": 1, "relation": "eq"}  # the keeper's auto-created group


# ---- registration ----------------------------------------------------------------------------------------------------


REGISTER_ERRORS = [
    (
        {"name": "sentence-transformers/unknown", "version": "1.0.1", "model_format": "TORCH_SCRIPT"},
        400,
        f"this ML node can serve: {MINILM_NAME}",
    ),
    ({"name": MINILM_NAME, "model_format": "TORCH_SCRIPT"}, 400, "[version] is required"),
    (
        {"name": MINILM_NAME, "version": "1.0.1", "model_format": "PYTORCH"},
        400,
        "Invalid model_format [PYTORCH]; valid values: TORCH_SCRIPT, ONNX",
    ),
    ({"version": "1.0.1", "model_format": "ONNX"}, 400, "[name] is required"),
    ({"name": "r", "function_name": "remote", "connector_id": "c"}, 400, "Remote models"),
    (
        {"name": MINILM_NAME, "version": "1.0.1", "model_format": "ONNX", "model_group_id": "missing"},
        404,
        "Failed to find model group with ID: missing",
    ),
]


@pytest.mark.parametrize(("body", "status", "reason"), REGISTER_ERRORS)
async def test_register_errors_change_nothing(node, body, status, reason):
    before = await _models(node)
    await _error(await node.post(f"{ML}/models/_register", json=body), status, reason)
    assert await _models(node) == before


async def test_register_body_must_be_json(node):
    await _error(
        await node.post(f"{ML}/models/_register", data=b"{not json", headers=JSON),
        400,
        "Failed to parse request body as JSON",
        "parse_exception",
    )


async def test_url_registration_gated_by_settings(tmp_path):
    zip_path, digest = make_zip(tmp_path / "m.zip", {"model.pt": b"x", "tokenizer.json": "{}"})
    body = {
        "name": "m",
        "version": "1",
        "model_format": "TORCH_SCRIPT",
        "function_name": "SPARSE_ENCODING",
        "model_content_hash_value": digest,
        "url": zip_path.as_uri(),
    }
    async with api_client(_settings(tmp_path), fake_backends(tmp_path)) as client:
        await _error(
            await client.post(f"{ML}/models/_register", json=body),
            400,
            "To upload custom model user needs to enable allow_registering_model_via_url settings.",
        )
        put = await client.put(
            "/_cluster/settings",
            json={
                "persistent": {
                    "plugins.ml_commons.allow_registering_model_via_url": True,
                    "plugins.ml_commons.trusted_url_regex": "^https://models\\.example\\.com/.*",
                }
            },
        )
        assert (await put.json())["acknowledged"] is True
        await _error(await client.post(f"{ML}/models/_register", json=body), 400, "URL can't match trusted url regex")
        put = await client.put(
            "/_cluster/settings", json={"persistent": {"plugins": {"ml_commons": {"trusted_url_regex": None}}}}
        )
        assert put.status == 200
        task = await api_wait_task(
            client, (await (await client.post(f"{ML}/models/_register", json=body)).json())["task_id"]
        )
        assert task["state"] == "COMPLETED" and task["function_name"] == "SPARSE_ENCODING"


@pytest.mark.parametrize(
    ("files", "fmt", "hash_ok", "error"),
    [
        ({"model.pt": b"x", "tokenizer.json": "{}"}, "TORCH_SCRIPT", False, "model content changed"),
        ({"model.pt": b"x"}, "TORCH_SCRIPT", True, "No tokenizer file"),
        (
            {"model.onnx": b"x", "tokenizer.json": "{}"},
            "TORCH_SCRIPT",
            True,
            "Model format is TORCH_SCRIPT, but find .onnx file",
        ),
        ({"a.pt": b"x", "b.pt": b"y", "tokenizer.json": "{}"}, "TORCH_SCRIPT", True, "Find multiple model files"),
        ({"../evil.pt": b"x", "tokenizer.json": "{}"}, "TORCH_SCRIPT", True, "points outside the model folder"),
    ],
)
async def test_bad_zip_fails_task_and_leaves_store(node, tmp_path, files, fmt, hash_ok, error):
    before = await _models(node)
    groups_before = (await (await node.get(f"{ML}/model_groups/_search")).json())["hits"]["total"]["value"]
    zip_path, digest = make_zip(tmp_path / "bad.zip", files)
    task = await api_register_zip(node, zip_path, digest if hash_ok else "0" * 64, model_format=fmt, name="bad")
    assert task["state"] == "FAILED" and error in task["error"]
    assert task["task_type"] == "REGISTER_MODEL"
    assert await _models(node) == before  # the half-registered model is gone, the keeper is intact
    groups_after = (await (await node.get(f"{ML}/model_groups/_search")).json())["hits"]["total"]["value"]
    assert groups_after == groups_before  # and so is the group auto-created for it
    data_dir = node.app[keys.SETTINGS].data_dir
    assert sorted(p.name for p in (data_dir / "models").iterdir()) == [node.model_id]
    assert list((data_dir / "tmp").iterdir()) == []
    ok = await node.post(f"{ML}/_predict/text_embedding/{node.model_id}", json={"text_docs": ["still works"]})
    assert ok.status == 200


async def test_register_from_http_url(node, tmp_path):
    zip_path, digest = make_zip(tmp_path / "served.zip", {"model.onnx": b"x", "tokenizer.json": "{}"})
    app = web.Application()

    async def serve_zip(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(zip_path)

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app.router.add_get("/m.zip", serve_zip)
    app.router.add_get("/missing.zip", missing)
    async with TestServer(app) as server:
        body = {
            "name": "http",
            "version": "1",
            "model_format": "ONNX",
            "function_name": "TEXT_EMBEDDING",
            "model_config": {"model_type": "bert", "embedding_dimension": 2, "framework_type": "sentence_transformers"},
            "model_content_hash_value": digest,
            "url": str(server.make_url("/m.zip")),
        }
        task = await api_wait_task(
            node, (await (await node.post(f"{ML}/models/_register?deploy=true", json=body)).json())["task_id"]
        )
        assert task["state"] == "COMPLETED"
        missing = await api_wait_task(
            node,
            (
                await (
                    await node.post(
                        f"{ML}/models/_register", json={**body, "url": str(server.make_url("/missing.zip"))}
                    )
                ).json()
            )["task_id"],
        )
        assert missing["state"] == "FAILED" and "HTTP 404" in missing["error"]
    # ?deploy=true starts a DEPLOY_MODEL task once registered
    await node.app[keys.TASKS].wait_all()
    assert (await (await node.get(f"{ML}/models/{task['model_id']}")).json())["model_state"] == "DEPLOYED"


# ---- chunked upload --------------------------------------------------------------------------------------------------


async def test_chunked_upload_gated_and_validated(tmp_path):
    zip_path, digest = make_zip(tmp_path / "c.zip", {"model.pt": b"w" * 3000, "tokenizer.json": "{}"})
    data = zip_path.read_bytes()
    parts = [data[:1500], data[1500:]]
    meta = {
        "name": "chunked",
        "version": "1.0.0",
        "model_format": "TORCH_SCRIPT",
        "function_name": "TEXT_EMBEDDING",
        "model_content_hash_value": digest,
        "model_content_size_in_bytes": len(data),
        "total_chunks": 2,
        "model_config": {"model_type": "bert", "embedding_dimension": 2, "framework_type": "sentence_transformers"},
    }
    async with api_client(_settings(tmp_path), fake_backends(tmp_path)) as client:
        await _error(
            await client.post(f"{ML}/models/_register_meta", json=meta),
            400,
            "user needs to enable allow_registering_model_via_local_file settings",
        )
        await _error(
            await client.post(f"{ML}/models/anything/upload_chunk/0", data=b"x", headers=JSON),
            400,
            "allow_registering_model_via_local_file",
        )
        await client.put(
            "/_cluster/settings",
            json={"transient": {"plugins.ml_commons.allow_registering_model_via_local_file": "true"}},
        )
        created = await (await client.post(f"{ML}/models/_register_meta", json=meta)).json()
        assert created["status"] == "CREATED"
        model_id = created["model_id"]
        assert (await (await client.get(f"{ML}/models/{model_id}")).json())["model_state"] == "REGISTERING"
        await _error(
            await client.post(f"{ML}/models/{model_id}/upload_chunk/2", data=b"x", headers=JSON),
            400,
            "Chunk number exceeds total chunks",
        )
        await _error(
            await client.post(f"{ML}/models/{model_id}/upload_chunk/0", data=b"", headers=JSON),
            400,
            "Chunk size either 0 or null",
        )
        await _error(
            await client.post(f"{ML}/models/{model_id}/upload_chunk/0", data=b"z" * (10 * 1024 * 1024 + 1),
                              headers=JSON),
            400,
            "Chunk size exceeds 10MB",
        )
        await _error(await client.post(f"{ML}/models/nope/upload_chunk/0", data=b"x", headers=JSON), 404,
                     "Failed to find model")
        assert (await (await client.post(f"{ML}/models/{model_id}/upload_chunk/0", data=parts[0],
                                         headers=JSON)).json()) == {
            "status": "Uploaded"
        }
        # a corrupted last chunk: the hash check fails and ends the upload (issue 11): model and chunks deleted
        await _error(
            await client.post(f"{ML}/models/{model_id}/upload_chunk/1", data=parts[1][:-1] + b"!", headers=JSON),
            400,
            "model content changed",
        )
        assert (await client.get(f"{ML}/models/{model_id}")).status == 404
        assert not (tmp_path / "data" / "chunks" / model_id).exists()
        model_id = (await (await client.post(f"{ML}/models/_register_meta", json=meta)).json())["model_id"]
        assert (await client.post(f"{ML}/models/{model_id}/upload_chunk/0", data=parts[0], headers=JSON)).status == 200
        # the older route opensearch-py-ml uses
        assert (await (await client.post(f"{ML}/models/{model_id}/chunk/1", data=parts[1], headers=JSON)).json()) == {
            "status": "Uploaded"
        }
        model = await (await client.get(f"{ML}/models/{model_id}")).json()
        assert model["model_state"] == "REGISTERED" and model["total_chunks"] == 2
        assert model["model_content_size_in_bytes"] == len(data)
        assert (await api_deploy(client, model_id))["state"] == "COMPLETED"
        old = await (await client.post(f"{ML}/models/meta", json={**meta, "name": "chunked-old"})).json()
        assert old["status"] == "CREATED"


# ---- deploy, undeploy, delete, tasks ---------------------------------------------------------------------------------


async def test_predict_errors(node):
    url = f"{ML}/_predict/text_embedding/{node.model_id}"
    await _error(await node.post(url, json={"text_docs": []}), 400, "Empty text docs")
    await _error(await node.post(url, json={}), 400, "Empty text docs")
    await _error(await node.post(url, json={"text_docs": ["a", 3]}), 400, "item [1]")
    await _error(
        await node.post(f"{ML}/_predict/kmeans/{node.model_id}", json={"text_docs": ["a"]}),
        400,
        "Wrong function name [kmeans]",
    )
    await _error(
        await node.post(f"{ML}/_predict/text_embedding/nope", json={"text_docs": ["a"]}),
        404,
        "Failed to find model with the provided model id: nope",
    )
    undeployed = await api_fake_model(node, node.app[keys.SETTINGS].data_dir.parent, name="cold", deploy=False)
    await _error(
        await node.post(f"{ML}/_predict/text_embedding/{undeployed}", json={"text_docs": ["a"]}),
        400,
        "Model not ready yet. Please deploy the model first.",
        "illegal_argument_exception",
    )
    await _error(
        await node.get(f"{ML}/no/such/route"),
        400,
        "no handler found for uri [/_plugins/_ml/no/such/route] and method [GET]",
    )


async def test_runtime_failure_is_500_without_internals(node):
    node.runtimes[0].fail_on = "boom"
    resp = await node.post(f"{ML}/_predict/text_embedding/{node.model_id}", json={"text_docs": ["boom"]})
    body = await _error(resp, 500, "Failed to run inference")
    assert "secret" not in str(body)
    node.runtimes[0].fail_on = None
    assert (
        await node.post(f"{ML}/_predict/text_embedding/{node.model_id}", json={"text_docs": ["fine"]})
    ).status == 200


async def test_truncation_is_reported_in_headers(node):
    long_text = " ".join(["word"] * 40)  # fake runtime: 42 tokens > max_length 16
    resp = await node.post(f"{ML}/_predict/text_embedding/{node.model_id}", json={"text_docs": ["short", long_text]})
    assert resp.status == 200
    assert resp.headers["X-Neuralpipe-Truncated"] == "1" and resp.headers["X-Neuralpipe-Max-Length"] == "16"
    body = await resp.json()
    assert set(body) == {"inference_results"} and len(body["inference_results"]) == 2
    short = await node.post(f"{ML}/_predict/text_embedding/{node.model_id}", json={"text_docs": ["short"]})
    assert "X-Neuralpipe-Truncated" not in short.headers


async def test_response_shaping(node):
    url = f"{ML}/_predict/text_embedding/{node.model_id}"
    body = await (await node.post(url, json={"text_docs": ["ab"], "target_response": ["nothing"]})).json()
    assert body == {"inference_results": [{"output": []}]}
    body = await (await node.post(url, json={"text_docs": ["ab"], "return_bytes": True, "return_number": False})).json()
    tensor = body["inference_results"][0]["output"][0]

    assert "data" not in tensor
    assert np.frombuffer(base64.b64decode(tensor["byte_buffer"]["array"]), "<f4").tolist() == [2.0, 1.0]
    via_model = await (await node.post(f"{ML}/models/{node.model_id}/_predict", json={"text_docs": ["ab"]})).json()
    assert via_model["inference_results"][0]["output"][0]["data"] == [2.0, 1.0]


async def test_non_batchable_functions(node, tmp_path):
    sim = await api_fake_model(node, tmp_path, function_name="TEXT_SIMILARITY", name="sim")
    body = await (
        await node.post(f"{ML}/_predict/text_similarity/{sim}", json={"query_text": "q", "text_docs": ["a", "bbb"]})
    ).json()
    assert [r["output"][0]["data"] for r in body["inference_results"]] == [[1.0], [3.0]]
    await _error(
        await node.post(f"{ML}/_predict/text_similarity/{sim}", json={"text_docs": ["a"]}),
        400,
        "[query_text] is required",
    )
    qa = await api_fake_model(node, tmp_path, function_name="QUESTION_ANSWERING", name="qa")
    body = await (
        await node.post(f"{ML}/_predict/question_answering/{qa}", json={"question": "who?", "context": "Alice went"})
    ).json()
    assert body == {"inference_results": [{"output": [{"result": "Alice"}]}]}
    await _error(
        await node.post(f"{ML}/_predict/question_answering/{qa}", json={"question": "who?"}),
        400,
        "[context] is required",
    )


async def test_deploy_limits(node, tmp_path):
    second = await api_fake_model(node, tmp_path, name="second", deploy=False)
    """As ML Commons: the limits are checked on the node by the deploy task (MLModelManager.deployModel), so the
    ``_deploy`` call answers a task id and the task ends FAILED with the check's message."""
    await node.put("/_cluster/settings", json={"persistent": {"plugins.ml_commons.max_model_on_node": 1}})
    task = await _deploy_fails(node, second)
    assert task["error"] == "Exceed max local model per node limit"
    limits = {"plugins.ml_commons.max_model_on_node": 10, "plugins.ml_commons.native_memory_threshold": 0}
    await node.put("/_cluster/settings", json={"persistent": limits})
    task = await _deploy_fails(node, second)
    assert task["error"] == "Memory Circuit Breaker is open, please check your resources!"
    assert (await (await node.get(f"{ML}/models/{second}")).json())["model_state"] == "REGISTERED"
    stats = await (await node.get(f"{ML}/stats/ml_circuit_breaker_trigger_count")).json()
    assert stats["nodes"]["neuralpipe-ml"] == {"ml_circuit_breaker_trigger_count": 1}
    # an already deployed model redeploys fine whatever the limits
    assert (await api_deploy(node, node.model_id))["state"] == "COMPLETED"
    await node.put("/_cluster/settings", json={"persistent": {"plugins.ml_commons.native_memory_threshold": None}})
    assert (await api_deploy(node, second))["state"] == "COMPLETED"


async def _deploy_fails(node, model_id: str) -> dict:
    """``POST models/{id}/_deploy`` as the pretrained-models page sends it (no body): 200 with ML Commons' deploy
    response, then the task, field by field as the page's task example, in state FAILED."""
    resp = await node.post(f"{ML}/models/{model_id}/_deploy")
    assert resp.status == 200, await resp.text()
    created = await resp.json()
    assert sorted(created) == ["status", "task_id", "task_type"]
    assert (created["status"], created["task_type"]) == ("CREATED", "DEPLOY_MODEL")
    task = await api_wait_task(node, created["task_id"])
    assert sorted(task) == sorted(
        [
            "model_id",
            "task_type",
            "function_name",
            "state",
            "worker_node",
            "create_time",
            "last_update_time",
            "is_async",
            "error",
        ]
    )
    assert (task["model_id"], task["task_type"], task["function_name"]) == (model_id, "DEPLOY_MODEL", "TEXT_EMBEDDING")
    assert (task["state"], task["worker_node"], task["is_async"]) == ("FAILED", ["neuralpipe-ml"], True)
    assert task["create_time"] <= task["last_update_time"]
    return task


async def test_running_task_limits(node, tmp_path):
    await node.put(
        "/_cluster/settings", json={"transient": {"plugins.ml_commons.max_register_model_tasks_per_node": 0}}
    )
    before = await _models(node)
    zip_path, digest = make_zip(tmp_path / "lim.zip", {"model.pt": b"x", "tokenizer.json": "{}"})
    resp = await node.post(
        f"{ML}/models/_register",
        json={
            "name": "lim",
            "version": "1",
            "model_format": "TORCH_SCRIPT",
            "function_name": "SPARSE_ENCODING",
            "model_content_hash_value": digest,
            "url": zip_path.as_uri(),
        },
    )
    await _error(resp, 429, "exceed max running task limit", "m_l_limit_exceeded_exception")
    assert await _models(node) == before


async def test_failed_deploy_restores_state(tmp_path):
    def broken(model_dir, doc):
        raise ValueError("model file is not a TorchScript archive")

    backends = fake_backends(tmp_path)
    async with api_client(_settings(tmp_path, allow_registering_model_via_url=True), backends) as client:
        model_id = await api_fake_model(client, tmp_path, deploy=False)
        backends.load_runtime = broken
        task = await api_deploy(client, model_id)
        assert task["state"] == "FAILED" and task["error"] == "model file is not a TorchScript archive"
        assert (await (await client.get(f"{ML}/models/{model_id}")).json())["model_state"] == "REGISTERED"


async def test_undeploy_delete_and_tasks(node):
    model_id = node.model_id
    await _error(
        await node.delete(f"{ML}/models/{model_id}"),
        400,
        "Model cannot be deleted in deploying or deployed state. Try undeploy model first then delete",
    )
    undeployed = await (await node.post(f"{ML}/models/{model_id}/_undeploy")).json()
    assert undeployed == {"neuralpipe-ml": {"stats": {model_id: "UNDEPLOYED"}}}
    assert node.runtimes[0].closed
    assert (await (await node.get(f"{ML}/models/{model_id}")).json())["model_state"] == "UNDEPLOYED"
    assert (await api_deploy(node, model_id))["state"] == "COMPLETED"
    many = await (await node.post(f"{ML}/models/_undeploy", json={"model_ids": [model_id]})).json()
    assert many == {"neuralpipe-ml": {"stats": {model_id: "UNDEPLOYED"}}}
    assert await (await node.post(f"{ML}/models/_undeploy", json={"model_ids": [model_id]})).json() == {}
    tasks = await (
        await node.post(f"{ML}/tasks/_search", json={"query": {"term": {"model_id": model_id}}, "size": 50})
    ).json()
    sources = [h["_source"] for h in tasks["hits"]["hits"]]
    assert {t["task_type"] for t in sources} == {"REGISTER_MODEL", "DEPLOY_MODEL"}
    assert all(t["state"] == "COMPLETED" and t["worker_node"] == ["neuralpipe-ml"] for t in sources)
    task_id = tasks["hits"]["hits"][0]["_id"]
    assert (await (await node.delete(f"{ML}/tasks/{task_id}")).json())["result"] == "deleted"
    await _error(await node.get(f"{ML}/tasks/{task_id}"), 404, "Failed to find task")
    await _error(await node.delete(f"{ML}/tasks/{task_id}"), 404, "Failed to find task")
    deleted = await (await node.delete(f"{ML}/models/{model_id}")).json()
    assert deleted["result"] == "deleted" and deleted["_index"] == ".plugins-ml-model"
    await _error(await node.get(f"{ML}/models/{model_id}"), 404, "Failed to find model with the provided model id")
    await _error(await node.delete(f"{ML}/models/{model_id}"), 404, "Failed to find model")


async def test_cluster_settings_errors(node):
    await _error(
        await node.put("/_cluster/settings", json={"persistent": {"plugins.ml_commons.nonsense": 1}}),
        400,
        "persistent setting [plugins.ml_commons.nonsense], not recognized",
    )
    await _error(
        await node.put("/_cluster/settings", json={"persistent": {"plugins.ml_commons.max_model_on_node": -1}}),
        400,
        "must be >= 0",
    )
    await _error(
        await node.put(
            "/_cluster/settings", json={"transient": {"plugins.ml_commons.allow_registering_model_via_url": "maybe"}}
        ),
        400,
        "Failed to parse value [maybe] as only [true] or [false] are allowed.",
    )
    await _error(
        await node.put("/_cluster/settings", json={"persistent": {"indices.recovery.max_bytes_per_sec": "50mb"}}),
        400,
        "not recognized",
    )
    ok = await (
        await node.put("/_cluster/settings", json={"persistent": {"plugins": {"ml_commons": {"max_model_on_node": 3}}}})
    ).json()
    # OpenSearch prints setting values as strings
    assert ok == {
        "acknowledged": True,
        "persistent": {"plugins": {"ml_commons": {"max_model_on_node": "3"}}},
        "transient": {},
    }
    got = await (await node.get("/_cluster/settings?flat_settings=true")).json()
    assert got["persistent"] == {"plugins.ml_commons.max_model_on_node": "3"}
    defaults = await (await node.get("/_cluster/settings?include_defaults=true")).json()
    assert defaults["defaults"]["plugins"]["ml_commons"]["allow_registering_model_via_local_file"] == "false"
    assert "max_model_on_node" not in defaults["defaults"]["plugins"]["ml_commons"]  # set: shown under persistent


async def test_zip_over_the_size_cap_is_refused(tmp_path):
    zip_path, digest = make_zip(tmp_path / "big.zip", {"model.pt": b"w" * 4000, "tokenizer.json": "{}"})
    settings = _settings(tmp_path, allow_registering_model_via_url=True, max_zip_bytes=1000)
    async with api_client(settings, fake_backends(tmp_path)) as client:
        task = await api_register_zip(client, zip_path, digest, name="big")
        assert task["state"] == "FAILED" and "larger than the limit of 1000 bytes" in task["error"]
        assert await _models(client) == {}


async def test_update_model_and_group(node):
    ml = node.app[keys.STORE]
    model_id = node.model_id
    group_id = ml.get("models", model_id)["model_group_id"]
    other = await (await node.post(f"{ML}/model_groups/_register", json={"name": "other"})).json()
    await _error(
        await node.put(f"{ML}/model_groups/{group_id}", json={"name": "other"}),
        400,
        f"The name you provided is already being used by another model with ID: {other['model_group_id']}."
        " Please provide a different name",
    )
    assert await (
        await node.put(f"{ML}/model_groups/{group_id}", json={"name": "renamed", "description": "d"})
    ).json() == {"status": "Updated"}
    assert (await (await node.get(f"{ML}/model_groups/{group_id}")).json())["name"] == "renamed"
    await _error(await node.put(f"{ML}/model_groups/nope", json={"name": "x"}), 404, "Failed to find model group")

    await _error(
        await node.put(f"{ML}/models/{model_id}", json={"model_format": "ONNX"}), 400, "Can't update ['model_format']"
    )
    await _error(await node.put(f"{ML}/models/{model_id}", json={"model_config": {}}), 400, "undeploy it first")
    updated = await (await node.put(f"{ML}/models/{model_id}", json={"is_enabled": False, "description": "off"})).json()
    assert updated["result"] == "updated" and updated["_id"] == model_id
    await _error(
        await node.post(f"{ML}/_predict/text_embedding/{model_id}", json={"text_docs": ["a"]}),
        403,
        "Model is disabled.",
    )
    await node.put(f"{ML}/models/{model_id}", json={"is_enabled": True})
    assert (await node.post(f"{ML}/_predict/text_embedding/{model_id}", json={"text_docs": ["a"]})).status == 200


async def test_runtime_input_errors_are_400(node):
    def refuse(encodings, parameters=None):
        raise PredictInputError("the runtime refuses this input")

    node.runtimes[0].forward = refuse
    resp = await node.post(
        f"{ML}/_predict/text_embedding/{node.model_id}",
        json={"text_docs": ["a"]},
    )
    await _error(resp, 400, "the runtime refuses this input", "illegal_argument_exception")


async def test_pretrained_registration_shows_its_function_name_while_running(tmp_path):
    """ML Commons fills the task's function_name from the request: a pretrained one's is known from the catalog,
    so it shows while the model is still being packaged, not ``null`` until the end."""
    gate = threading.Event()
    async with api_client(_settings(tmp_path), fake_backends(tmp_path, catalog_gate=gate)) as client:
        resp = await client.post(
            f"{ML}/models/_register", json={"name": MINILM_NAME, "version": "1.0.1", "model_format": "ONNX"}
        )
        created = await resp.json()
        try:
            task = await (await client.get(f"{ML}/tasks/{created['task_id']}")).json()
            assert task["state"] in ("CREATED", "RUNNING") and task["function_name"] == "TEXT_EMBEDDING"
            model = await (await client.get(f"{ML}/models/{created['model_id']}")).json()
            assert model["model_state"] == "REGISTERING" and model["algorithm"] == "TEXT_EMBEDDING"
        finally:
            gate.set()
        task = await api_wait_task(client, created["task_id"])
        assert task["state"] == "COMPLETED" and task["function_name"] == "TEXT_EMBEDDING"
