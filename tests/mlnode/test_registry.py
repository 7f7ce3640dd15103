"""The shared model registry (mlnode.registry, mlnode.cluster): two ML nodes in this test's event loop sharing a
real data node over loopback as their registry. Runtimes are fakes (the e2e test tests/e2e/test_ml_scale_out.py
serves real models); zip validation, hashing, the registry's documents and the REST API are real."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from mlnode.errors import GroupNameTaken
from mlnode.registry import RegistryStore, node_id
from mlnode.settings import MLSettings
from mlnode.store import Store
from neuralpipe.node import NodeServer, NodeSpec, NodeStartError
from tests.fixtures.datanode import DataNodeThread, os_client
from tests.fixtures.mlnode import (
    api_client,
    api_deploy,
    api_register_zip,
    api_wait_task,
    fake_backends,
    file_url_test_folders,
    make_zip,
)

pytestmark = pytest.mark.integration

PREFIX = ".plugins-ml-"


def _settings(data_dir: Path, registry: str | None) -> MLSettings:
    return MLSettings.load(data_dir=data_dir, registry=registry, registry_sync_interval=0.1,
                           registry_node_timeout=5.0, allow_registering_model_via_url=True,
                           native_memory_threshold=100, file_url_folders=file_url_test_folders())


@pytest.fixture
async def nodes(data_node: DataNodeThread, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start ML nodes of the registry on demand: ``await start("a")`` returns the node's client."""
    async with AsyncExitStack() as stack:

        async def start(name: str) -> TestClient:
            settings = _settings(tmp_path / name, data_node.url)
            return await stack.enter_async_context(api_client(settings, fake_backends(tmp_path)))

        yield start


async def _until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


async def _node_of(client: TestClient) -> str:
    return next(iter((await (await client.get("/_plugins/_ml/stats")).json())["nodes"]))


async def _predict_status(client: TestClient, model_id: str) -> tuple[int, dict[str, Any]]:
    resp = await client.post(f"/_plugins/_ml/_predict/text_embedding/{model_id}", json={"text_docs": ["hello"]})
    return resp.status, await resp.json()


async def _register(client: TestClient, tmp_path: Path, name: str = "fake-model") -> dict[str, Any]:
    zip_path, digest = make_zip(tmp_path / f"{name}-{time.monotonic_ns()}.zip",
                                {"model.pt": b"weights", "tokenizer.json": "{}"})
    task = await api_register_zip(client, zip_path, digest, name=name)
    assert task["state"] == "COMPLETED", task
    return task


@pytest.mark.unit
def test_the_data_dir_stays_the_default(tmp_path: Path) -> None:
    from mlnode.cluster import open_store  # the one function under test here

    settings = MLSettings.load(data_dir=tmp_path, registry=None)  # None: the default (pytest --ml-registry aside)
    assert settings.registry is None
    store = open_store(settings)
    assert type(store) is Store
    assert settings.node_name == "neuralpipe-ml"  # what profile and stats report, unchanged


def test_node_id_is_random_and_kept_across_restarts(tmp_path: Path) -> None:
    first = node_id(tmp_path / "a")
    assert len(first) == 22 and first != node_id(tmp_path / "b")
    assert node_id(tmp_path / "a") == first


async def test_register_on_one_node_deploy_everywhere(nodes: Any, tmp_path: Path,
                                                      data_node: DataNodeThread) -> None:
    a, b = await nodes("a"), await nodes("b")
    task = await _register(a, tmp_path)
    model_id = task["model_id"]
    # the model's content is in the registry as chunk documents, with the hash of the zip
    chunk = os_client(data_node.url).get(index=PREFIX + "model", id=f"{model_id}_0")["_source"]
    assert chunk["model_id"] == model_id and chunk["chunk_number"] == 0 and chunk["total_chunks"] == 1
    # any node sees the model, and deploys it
    assert (await (await b.get(f"/_plugins/_ml/models/{model_id}")).json())["model_state"] == "REGISTERED"
    done = await api_deploy(b, model_id)
    assert done["state"] == "COMPLETED", done
    assert sorted(done["worker_node"]) == sorted([await _node_of(a), await _node_of(b)])
    for client in (a, b):
        status, body = await _predict_status(client, model_id)
        assert status == 200, body
    doc = await (await a.get(f"/_plugins/_ml/models/{model_id}")).json()
    assert (doc["model_state"], doc["current_worker_node_count"], doc["planning_worker_node_count"]) == (
        "DEPLOYED", 2, 2)


async def test_profile_and_stats_answer_for_every_node_of_the_registry(nodes: Any, tmp_path: Path) -> None:
    a, b = await nodes("a"), await nodes("b")
    a_id, b_id = await _node_of(a), await _node_of(b)
    model_id = (await _register(a, tmp_path))["model_id"]
    assert (await api_deploy(a, model_id))["state"] == "COMPLETED"
    for _ in range(3):
        assert (await _predict_status(a, model_id))[0] == 200

    async def seen_from_b() -> Any:  # a's next heartbeat carries its counts to the registry, b's sync reads them
        profile = await (await b.get(f"/_plugins/_ml/profile/models/{model_id}")).json()
        counts = {n: body["models"][model_id].get("predict_request_stats", {}).get("count")
                  for n, body in profile.get("nodes", {}).items()}
        return profile if counts == {a_id: 3, b_id: 0} else None

    profile = await _until(seen_from_b, "b's profile shows a's three predicts")
    assert profile["nodes"][a_id]["models"][model_id]["worker_nodes"] == [a_id]
    stats = await (await b.get("/_plugins/_ml/stats")).json()
    assert stats["nodes"][a_id]["ml_request_count"] == 3 and stats["nodes"][b_id]["ml_request_count"] == 0
    only_a = await (await b.get(f"/_plugins/_ml/{a_id}/stats/ml_request_count")).json()
    assert only_a["nodes"] == {a_id: {"ml_request_count": 3}}


async def test_deploy_on_node_ids_only(nodes: Any, tmp_path: Path) -> None:
    a, b = await nodes("a"), await nodes("b")
    model_id = (await _register(a, tmp_path))["model_id"]
    b_id = await _node_of(b)
    resp = await a.post(f"/_plugins/_ml/models/{model_id}/_deploy", json={"node_ids": ["nope"]})
    assert resp.status == 400
    reason = (await resp.json())["error"]["reason"]
    assert "['nope']" in reason and b_id in reason
    resp = await a.post(f"/_plugins/_ml/models/{model_id}/_deploy", json={"node_ids": [b_id]})
    done = await api_wait_task(a, (await resp.json())["task_id"])
    assert (done["state"], done["worker_node"]) == ("COMPLETED", [b_id])
    assert (await _predict_status(b, model_id))[0] == 200
    status, body = await _predict_status(a, model_id)
    assert status == 400 and "Model not ready yet" in body["error"]["reason"]


async def test_a_changed_chunk_fails_the_deploy_on_nodes_without_a_copy(nodes: Any, tmp_path: Path,
                                                                         data_node: DataNodeThread) -> None:
    a = await nodes("a")
    model_id = (await _register(a, tmp_path))["model_id"]
    client = os_client(data_node.url)
    chunk = client.get(index=PREFIX + "model", id=f"{model_id}_0")["_source"]
    tampered = base64.b64decode(chunk["model_content"]).replace(b"weights", b"WEIGHTS")
    client.index(index=PREFIX + "model", id=f"{model_id}_0", refresh=True,
                 body={**chunk, "model_content": base64.b64encode(tampered).decode()})
    b = await nodes("b")
    done = await api_deploy(a, model_id)
    assert done["state"] == "COMPLETED_WITH_ERROR", done
    assert "model content changed" in done["error"] and await _node_of(b) in done["error"]
    assert (await _predict_status(a, model_id))[0] == 200  # a checked its copy when it registered
    assert (await _predict_status(b, model_id))[0] == 400


async def test_two_stores_create_one_group_name_at_once(data_node: DataNodeThread, tmp_path: Path) -> None:
    one = RegistryStore(tmp_path / "one", data_node.url)
    two = RegistryStore(tmp_path / "two", data_node.url)
    await asyncio.to_thread(one.load)
    await asyncio.to_thread(two.load)
    doc = {"name": "shared", "latest_version": 0, "access": "public"}
    results = await asyncio.gather(one.put("model_groups", "g1", doc), two.put("model_groups", "g2", doc),
                                   return_exceptions=True)
    taken = [r for r in results if isinstance(r, GroupNameTaken)]
    assert len(taken) == 1
    winner = "g1" if not isinstance(results[0], Exception) else "g2"
    assert taken[0].group_id == winner
    assert taken[0].reason == f"The name you provided is already being used by a model group with ID: {winner}."
    # two models into that group at once take two versions
    model = {"name": "shared", "model_group_id": winner, "model_version": "1", "model_state": "REGISTERING"}
    await asyncio.gather(one.put("models", "m1", model), two.put("models", "m2", model))
    await asyncio.to_thread(one.apply, await asyncio.to_thread(one.pull))
    versions = sorted(one.get("models", m)["model_version"] for m in ("m1", "m2"))  # type: ignore[index]
    assert versions == ["1", "2"]
    assert one.get("model_groups", winner)["latest_version"] == 2  # type: ignore[index]
    assert [g for g, _ in one.all("model_groups")] == [winner]
    # a renamed group frees its old name and holds the new one; a deleted group frees its name
    loser = "g2" if winner == "g1" else "g1"
    await one.update("model_groups", winner, name="renamed")
    await two.put("model_groups", loser, {**doc, "name": "shared"})
    with pytest.raises(GroupNameTaken):
        await two.put("model_groups", "g3", {**doc, "name": "renamed"})
    await one.delete("model_groups", winner)
    await two.put("model_groups", "g3", {**doc, "name": "renamed"})
    one.close()
    two.close()


async def test_a_register_cut_by_a_crash_ends_failed(data_node: DataNodeThread, tmp_path: Path,
                                                     nodes: Any) -> None:
    """What a node killed while uploading a model's chunks leaves in the registry: its REGISTER_MODEL task RUNNING,
    the model REGISTERING, chunk 0 of 2. When that node starts again, the task is FAILED and the half-written model
    and its chunk are gone."""
    crashed = node_id(tmp_path / "a" / "")
    client = os_client(data_node.url)
    for index in ("model", "task"):
        client.indices.create(index=PREFIX + index, body={"mappings": {"dynamic": False, "properties": {
            "model_id": {"type": "keyword"}, "chunk_number": {"type": "long"}}}})
    client.index(index=PREFIX + "model", id="half", refresh=True, body={
        "name": "half", "model_state": "REGISTERING", "model_format": "TORCH_SCRIPT", "algorithm": "TEXT_EMBEDDING"})
    client.index(index=PREFIX + "model", id="half_0", refresh=True, body={
        "model_id": "half", "chunk_number": 0, "total_chunks": 2, "content_hash": "x", "model_content": "AAAA"})
    client.index(index=PREFIX + "task", id="t1", refresh=True, body={
        "task_type": "REGISTER_MODEL", "model_id": "half", "state": "RUNNING", "worker_node": [crashed]})
    a = await nodes("a")
    assert await _node_of(a) == crashed
    task = await (await a.get("/_plugins/_ml/tasks/t1")).json()
    assert (task["state"], task["error"]) == ("FAILED", "The ML node restarted before the task finished")
    assert (await a.get("/_plugins/_ml/models/half")).status == 404
    client.indices.refresh(index=PREFIX + "model")
    left = client.search(index=PREFIX + "model", body={"query": {"term": {"model_id": "half"}}})
    assert left["hits"]["total"]["value"] == 0


async def test_tasks_of_a_node_that_stopped_heartbeating_end_failed(data_node: DataNodeThread, tmp_path: Path,
                                                                    nodes: Any) -> None:
    client = os_client(data_node.url)
    client.index(index=PREFIX + "node", id="gone", refresh=True,
                 body={"node_id": "gone", "heartbeat": 1, "deployed": [], "failed": {}})
    client.index(index=PREFIX + "task", id="t2", refresh=True, body={
        "task_type": "REGISTER_MODEL", "state": "RUNNING", "worker_node": ["gone"]})
    a = await nodes("a")

    async def failed() -> dict[str, Any] | None:
        task = await (await a.get("/_plugins/_ml/tasks/t2")).json()
        return task if task["state"] == "FAILED" else None

    task = await _until(failed, "the task of the stopped node fails")
    assert task["error"] == "The ML node ['gone'] running the task stopped"


async def test_an_unreachable_registry_stops_the_node_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = MLSettings.load(data_dir=tmp_path / "ml", registry=f"http://admin:s3cret@127.0.0.1:{port}")
    server = NodeServer(NodeSpec(("ml",), tmp_path, settings))
    with pytest.raises(NodeStartError) as info:
        await server.start()
    message = str(info.value)
    assert message.startswith(f"cannot use the model registry at [http://admin:***@127.0.0.1:{port}]")
    assert "s3cret" not in message
