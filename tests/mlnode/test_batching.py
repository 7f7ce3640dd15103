"""The bounded predict queue: 429 at once when full, cross-request batching, dropped clients, splitting.

These use a fake runtime (tests/fixtures/mlnode.py) that can hold inference on a gate, so the queue can be filled
deterministically; the real runtimes are exercised by the client tests."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mlnode import keys
from mlnode.batching import LatencyStats, plan_chunks
from mlnode.settings import MLSettings
from tests.fixtures.mlnode import (
    FakeRuntime,
    api_client,
    api_fake_model,
    fake_backends,
    file_url_test_folders,
    wait_until,
)

pytestmark = [pytest.mark.integration]


def _settings(tmp_path, **overrides):
    return MLSettings.load(
        data_dir=tmp_path / "data", allow_registering_model_via_url=True, native_memory_threshold=100,
        file_url_folders=file_url_test_folders(), **overrides
    )


def _predict(client, model_id, texts, **extra):
    return client.post(f"/_plugins/_ml/_predict/text_embedding/{model_id}", json={"text_docs": texts, **extra})


async def test_full_queue_answers_429_at_once(tmp_path):
    gate = threading.Event()
    runtimes: list[FakeRuntime] = []
    settings = _settings(tmp_path, queue_capacity=2, worker_threads=1)
    async with api_client(settings, fake_backends(tmp_path, runtimes, gate=gate)) as client:
        model_id = await api_fake_model(client, tmp_path)
        worker = client.app[keys.DEPLOYMENTS].get(model_id)
        first = asyncio.create_task(_predict(client, model_id, ["one"]))
        await wait_until(runtimes[0].entered.is_set)  # the first request is running, holding the only inference slot
        waiting = [asyncio.create_task(_predict(client, model_id, [f"text {i}"])) for i in range(2)]
        await wait_until(lambda: worker.queue_size == 2)
        rejected = await _predict(client, model_id, ["too many"])  # answered while the gate is still closed
        assert rejected.status == 429
        body = await rejected.json()
        assert body["status"] == 429 and body["error"]["type"] == "rejected_execution_exception"
        assert "queue" in body["error"]["reason"] and model_id in body["error"]["reason"]
        gate.set()
        responses = await asyncio.gather(first, *waiting)
        assert [r.status for r in responses] == [200, 200, 200]
        assert ["too many"] not in runtimes[0].batches
        metrics = await (await client.get("/metrics")).text()
        assert f'mlnode_predict_failures_total{{model_id="{model_id}",reason="queue_full"}} 1.0' in metrics


async def test_concurrent_single_text_requests_are_batched(tmp_path):
    gate = threading.Event()
    runtimes: list[FakeRuntime] = []
    settings = _settings(tmp_path, worker_threads=1, batch_max_size=32)
    async with api_client(settings, fake_backends(tmp_path, runtimes, gate=gate)) as client:
        model_id = await api_fake_model(client, tmp_path)
        worker = client.app[keys.DEPLOYMENTS].get(model_id)
        first = asyncio.create_task(_predict(client, model_id, ["warm"]))
        await wait_until(runtimes[0].entered.is_set)
        texts = [f"query number {i}" for i in range(8)]
        pending = [asyncio.create_task(_predict(client, model_id, [t])) for t in texts]
        await wait_until(lambda: worker.queue_size == 8 and len(worker._queue) == 8)
        gate.set()
        responses = [await r.json() for r in await asyncio.gather(first, *pending)]
        # every request got its own text's result back
        for text, body in zip(texts, responses[1:]):
            assert body["inference_results"][0]["output"][0]["data"] == [float(len(text)), 3.0]
        assert sorted(runtimes[0].batches[1]) == sorted(texts)  # one runtime call for the 8 requests
        profile = await (await client.get(f"/_plugins/_ml/profile/models/{model_id}")).json()
        stats = profile["nodes"]["neuralpipe-ml"]["models"][model_id]
        assert stats["batch_stats"]["max_batch_size"] == 8 and stats["batch_stats"]["max_requests_per_batch"] == 8
        assert stats["predict_request_stats"]["count"] == 9
        metrics = await (await client.get("/metrics")).text()
        assert f'mlnode_batch_size_bucket{{le="8.0",model_id="{model_id}"}} 2.0' in metrics
        assert f'mlnode_batch_size_count{{model_id="{model_id}"}} 2.0' in metrics


async def test_batches_respect_size_token_budget_and_parameters(tmp_path):
    gate = threading.Event()
    runtimes: list[FakeRuntime] = []
    # fake tokens = words + 2 -> each "a b" text is 4 tokens; a budget of 12 fits 3 texts
    settings = _settings(tmp_path, worker_threads=1, batch_max_size=4, batch_token_budget=12)
    async with api_client(settings, fake_backends(tmp_path, runtimes, gate=gate)) as client:
        model_id = await api_fake_model(client, tmp_path, function_name="SPARSE_ENCODING")
        worker = client.app[keys.DEPLOYMENTS].get(model_id)
        first = asyncio.create_task(_predict(client, model_id, ["warm"]))
        await wait_until(runtimes[0].entered.is_set)
        same = [asyncio.create_task(_predict(client, model_id, [f"a{i} b"])) for i in range(4)]
        await wait_until(lambda: len(worker._queue) == 4)
        token_ids = {"sparse_embedding_format": "TOKEN_ID"}
        other = asyncio.create_task(_predict(client, model_id, ["x y"], parameters=token_ids))
        await wait_until(lambda: len(worker._queue) == 5)
        gate.set()
        assert all(r.status == 200 for r in await asyncio.gather(first, *same, other))
        sizes = [len(b) for b in runtimes[0].batches[1:]]
        assert sizes == [3, 1, 1]  # token budget splits the four, and different parameters are never merged
        assert runtimes[0].batches[-1] == ["x y"]


async def test_one_large_request_is_split_and_order_restored(tmp_path):
    runtimes: list[FakeRuntime] = []
    async with api_client(_settings(tmp_path, batch_max_size=4), fake_backends(tmp_path, runtimes)) as client:
        model_id = await api_fake_model(client, tmp_path)
        texts = [("w " * (i % 5 + 1)).strip() + f" {i}" for i in range(10)]
        body = await (await _predict(client, model_id, texts)).json()
        assert [r["output"][0]["data"][0] for r in body["inference_results"]] == [float(len(t)) for t in texts]
        assert max(len(b) for b in runtimes[0].batches) == 4


async def test_request_whose_client_left_is_dropped(tmp_path):
    gate = threading.Event()
    runtimes: list[FakeRuntime] = []
    async with api_client(
        _settings(tmp_path, worker_threads=1), fake_backends(tmp_path, runtimes, gate=gate)
    ) as client:
        model_id = await api_fake_model(client, tmp_path)
        worker = client.app[keys.DEPLOYMENTS].get(model_id)
        first = asyncio.create_task(_predict(client, model_id, ["warm"]))
        await wait_until(runtimes[0].entered.is_set)
        leaving = asyncio.create_task(_predict(client, model_id, ["client gone"]))
        await wait_until(lambda: len(worker._queue) == 1)
        leaving.cancel()  # the client closes its connection while the request waits
        await asyncio.gather(leaving, return_exceptions=True)
        staying = asyncio.create_task(_predict(client, model_id, ["still here"]))
        await wait_until(lambda: len(worker._queue) == 2)
        await wait_until(lambda: not worker._queue[0].alive())  # the server has seen the closed connection
        gate.set()
        assert (await first).status == 200 and (await staying).status == 200
        seen = [t for batch in runtimes[0].batches for t in batch]
        assert "still here" in seen and "client gone" not in seen
        metrics = await (await client.get("/metrics")).text()
        assert f'mlnode_dropped_requests_total{{model_id="{model_id}"}} 1.0' in metrics


async def test_undeploy_answers_queued_requests_instead_of_hanging(tmp_path):
    gate = threading.Event()
    runtimes: list[FakeRuntime] = []
    async with api_client(
        _settings(tmp_path, worker_threads=1), fake_backends(tmp_path, runtimes, gate=gate)
    ) as client:
        model_id = await api_fake_model(client, tmp_path)
        worker = client.app[keys.DEPLOYMENTS].get(model_id)
        running = asyncio.create_task(_predict(client, model_id, ["running"]))
        await wait_until(runtimes[0].entered.is_set)
        queued = asyncio.create_task(_predict(client, model_id, ["queued"]))
        await wait_until(lambda: len(worker._queue) == 1)
        undeploy = asyncio.create_task(client.post(f"/_plugins/_ml/models/{model_id}/_undeploy"))
        await wait_until(lambda: client.app[keys.DEPLOYMENTS].get(model_id) is None)
        gate.set()  # the running batch finishes; the queued request is told the model is gone
        assert (await running).status == 200
        rejected = await queued
        assert rejected.status == 400
        assert (await rejected.json())["error"]["reason"] == "Model not ready yet. Please deploy the model first."
        assert (await (await undeploy).json()) == {"neuralpipe-ml": {"stats": {model_id: "UNDEPLOYED"}}}
        assert runtimes[0].closed


@pytest.mark.unit
def test_latency_stats_window_and_percentiles():
    stats = LatencyStats(window=100)
    for ms in range(1, 201):
        stats.add(float(ms))
    got = stats.to_dict()
    assert got["count"] == 200 and got["min"] == 101.0 and got["max"] == 200.0  # the last 100 requests
    assert got["p50"] == 150.0 and got["p90"] == 190.0 and got["p99"] == 199.0 and got["average"] == 150.5
    stats.window = 0  # monitoring_request_count 0 clears the monitored requests
    stats.add(1.0)
    assert stats.to_dict() == {"count": 201}


async def test_a_batch_reaches_the_runtime_as_calls_of_similar_lengths(tmp_path):
    """Short queries merged with long ones are not padded to the long ones: one runtime call per length group."""
    gate = threading.Event()
    runtimes: list[FakeRuntime] = []
    async with api_client(
        _settings(tmp_path, worker_threads=1), fake_backends(tmp_path, runtimes, gate=gate)
    ) as client:
        model_id = await api_fake_model(client, tmp_path)
        worker = client.app[keys.DEPLOYMENTS].get(model_id)
        first = asyncio.create_task(_predict(client, model_id, ["warm"]))
        await wait_until(runtimes[0].entered.is_set)
        short = [f"q{i}" for i in range(4)]  # 3 tokens each
        long = [" ".join(f"w{i}{j}" for j in range(14)) for i in range(4)]  # 16 tokens each (max_length)
        texts = [t for pair in zip(short, long) for t in pair]
        pending = [asyncio.create_task(_predict(client, model_id, [t])) for t in texts]
        await wait_until(lambda: len(worker._queue) == 8)
        gate.set()
        responses = [await r.json() for r in await asyncio.gather(first, *pending)]
        for text, body in zip(texts, responses[1:]):
            assert body["inference_results"][0]["output"][0]["data"] == [float(len(text)), float(len(text.split()))]
        assert [sorted(b) for b in runtimes[0].batches[1:]] == [sorted(short), sorted(long)]
        profile = await (await client.get(f"/_plugins/_ml/profile/models/{model_id}")).json()
        stats = profile["nodes"]["neuralpipe-ml"]["models"][model_id]["batch_stats"]
        assert stats["max_requests_per_batch"] == 8 and stats["max_batch_size"] == 4


@pytest.mark.unit
def test_plan_chunks_groups_similar_lengths_within_the_limits():
    assert plan_chunks([20, 21, 19, 22], 32, 16384) == [[2, 0, 1, 3]]  # little padding: one call
    assert plan_chunks([10, 200, 12, 210], 32, 16384) == [[0, 2], [1, 3]]  # short ones are not padded to 200
    assert plan_chunks([5] * 10, 4, 16384) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # batch_max_size
    assert plan_chunks([512] * 5, 32, 1100) == [[0, 1], [2, 3], [4]]  # padded tokens within the token budget
    assert plan_chunks([3000, 4], 32, 1000) == [[1], [0]]  # a text over the budget runs alone
    # min_chunks: the largest calls are halved so every inference thread gets work; similar lengths stay together
    assert plan_chunks([20, 21, 19, 22], 32, 16384, min_chunks=2) == [[2, 0], [1, 3]]
    assert plan_chunks([5] * 3, 32, 16384, min_chunks=4) == [[0], [1], [2]]  # never below one text a call
    assert plan_chunks([7], 32, 16384, min_chunks=2) == [[0]]


async def test_undeploy_stops_a_split_request_between_runtime_calls(tmp_path):
    """A request split into several runtime calls does not keep the model (or a stopping node) busy after undeploy:
    the call in flight finishes, the rest are not run, and the client is told the model is gone."""
    gate = threading.Event()
    runtimes: list[FakeRuntime] = []
    settings = _settings(tmp_path, worker_threads=1, batch_max_size=1)
    async with api_client(settings, fake_backends(tmp_path, runtimes, gate=gate)) as client:
        model_id = await api_fake_model(client, tmp_path)
        texts = [f"text {i}" for i in range(5)]  # batch_max_size 1: five runtime calls
        running = asyncio.create_task(_predict(client, model_id, texts))
        await wait_until(runtimes[0].entered.is_set)
        undeploy = asyncio.create_task(client.post(f"/_plugins/_ml/models/{model_id}/_undeploy"))
        await wait_until(lambda: client.app[keys.DEPLOYMENTS].get(model_id) is None)
        gate.set()
        resp = await running
        assert resp.status == 400
        assert (await resp.json())["error"]["reason"] == "Model not ready yet. Please deploy the model first."
        assert len(runtimes[0].batches) == 1  # the four other calls never ran
        assert (await undeploy).status == 200 and runtimes[0].closed
