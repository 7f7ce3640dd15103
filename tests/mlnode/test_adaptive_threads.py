"""Intra-op threads per runtime call adapt to the work waiting (issue 14): a call that runs alone uses every usable
core, calls side by side use their share (cores / worker_threads), and the answer does not depend on the choice.

The queue tests use the fake runtime (tests/fixtures/mlnode.py) and record the thread count each call was given;
``mlnode.settings.usable_cores`` is set to 4 there so the two counts differ whatever machine runs the tests (the only
stand-in: a 4-core machine cannot be had here). The real-model tests run MiniLM (ONNX and TorchScript) in the real ML
node and compare the vectors a lone request gets with those it gets beside another call."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import torch

from mlnode import keys
from mlnode import settings as settings_module
from mlnode.batching import CallLoad, call_threads_for
from mlnode.runtimes import backends
from mlnode.runtimes.backends import OnnxBackend, ThreadPlan, TorchScriptBackend, call_threads
from mlnode.settings import MLSettings, resolve_alone_threads, resolve_intra_op_threads, usable_cores
from mlnode.tasks import Backends
from tests.fixtures.mlnode import (
    FakeRuntime,
    api_client,
    api_fake_model,
    api_wait_task,
    fake_backends,
    file_url_test_folders,
    url_register_body,
    wait_until,
)

TEXTS = [
    "The capital of France is Paris.",
    "A man is playing a guitar on stage.",
    "OpenSearch",
    "Neural search turns text into dense vectors with an embedding model.",
    "Cells divide by mitosis.",
    "word " * 60,
    "BM25 ranks documents by term frequency and inverse document frequency.",
    "Sparse vectors weigh vocabulary tokens.",
]


@pytest.fixture(autouse=True)
def _reset_thread_plan(monkeypatch):
    """The ML node sets the process' thread plan when it starts; later tests get the default back."""
    monkeypatch.delenv("NEURALPIPE_INTRA_OP_THREADS", raising=False)
    yield
    backends.set_thread_plan(None)


def _settings(tmp_path, **overrides):
    return MLSettings.load(
        data_dir=tmp_path / "data", allow_registering_model_via_url=True, native_memory_threshold=100,
        file_url_folders=file_url_test_folders(), **overrides
    )


def _predict(client, model_id, texts):
    return client.post(f"/_plugins/_ml/_predict/text_embedding/{model_id}", json={"text_docs": texts})


# ---- the choice ----------------------------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("alone", "shared", "others", "expected"),
    [
        (2, 1, 0, 2),  # 2 cores, 2 worker threads: a lone call takes both cores
        (2, 1, 1, 1),  # one other call running or waiting: each its share
        (2, 1, 7, 1),
        (8, 4, 0, 8),
        (8, 4, 1, 4),
        (1, 1, 0, 1),  # one core
        (3, 3, 0, 3),  # intra_op_threads set: one count for every call
        (3, 3, 2, 3),
    ],
)
def test_a_call_alone_gets_every_core_and_calls_side_by_side_their_share(alone, shared, others, expected):
    assert call_threads_for(alone, shared, others) == expected


@pytest.mark.unit
def test_call_load_counts_running_calls_and_waiting_requests():
    class Waiting:
        def __init__(self, n):
            self.queue_size = n

    load = CallLoad(alone=2, shared=1)
    assert load.others() == 0
    load.started()
    assert (load.running, load.others()) == (1, 1)
    first, second = Waiting(3), Waiting(2)
    load.attach(first)  # type: ignore[arg-type]
    load.attach(second)  # type: ignore[arg-type]
    assert load.others() == 6
    load.finished()
    load.detach(first)  # type: ignore[arg-type]
    assert (load.running, load.others()) == (0, 2)


@pytest.mark.unit
def test_settings_give_every_core_to_a_lone_call_unless_intra_op_threads_is_set(tmp_path):
    assert (resolve_alone_threads(0, 2, cores=8), resolve_intra_op_threads(0, 2, cores=8)) == (8, 4)
    assert (resolve_alone_threads(0, 2, cores=2), resolve_intra_op_threads(0, 2, cores=2)) == (2, 1)
    assert (resolve_alone_threads(3, 2, cores=8), resolve_intra_op_threads(3, 2, cores=8)) == (3, 3)
    defaults = MLSettings.load(data_dir=tmp_path)
    assert defaults.resolved_alone_threads == usable_cores()
    assert MLSettings.load(data_dir=tmp_path, intra_op_threads=3).resolved_alone_threads == 3


@pytest.mark.unit
def test_the_environment_fixes_one_count_for_every_call(monkeypatch):
    backends.set_thread_plan(ThreadPlan(alone=4, shared=2))
    assert backends.thread_plan() == ThreadPlan(4, 2)
    monkeypatch.setenv("NEURALPIPE_INTRA_OP_THREADS", "3")
    assert backends.thread_plan() == ThreadPlan(3, 3)
    assert backends.intra_op_threads() == 3


# ---- the queue: which calls run with which count (fake runtime) ---------------------------------------------------


def _recording(runtime: FakeRuntime, seen: list[tuple[int, int | None]]) -> None:
    plain_forward = runtime.forward

    def forward(encodings, parameters=None):
        seen.append((len(encodings), backends.current_call_threads()))
        return plain_forward(encodings, parameters)

    runtime.forward = forward  # type: ignore[method-assign]


async def test_a_lone_request_runs_as_one_call_on_every_core(tmp_path, monkeypatch):
    monkeypatch.setattr(settings_module, "usable_cores", lambda: 4)
    runtimes: list[FakeRuntime] = []
    async with api_client(_settings(tmp_path, worker_threads=2), fake_backends(tmp_path, runtimes)) as client:
        model_id = await api_fake_model(client, tmp_path)
        seen: list[tuple[int, int | None]] = []
        _recording(runtimes[0], seen)
        texts = [f"word{i} alpha beta" + " gamma" * (i % 2) for i in range(8)]
        response = await _predict(client, model_id, texts)
        assert response.status == 200
        assert seen == [(8, 4)]  # one call, not two halves of one thread each
        data = [r["output"][0]["data"] for r in (await response.json())["inference_results"]]
        assert data == [[float(len(t)), float(len(t.split()))] for t in texts]
        profile = await (await client.get(f"/_plugins/_ml/profile/models/{model_id}")).json()
        stats = profile["nodes"]["neuralpipe-ml"]["models"][model_id]["batch_stats"]
        assert stats["calls_by_intra_op_threads"] == {"4": 1}
        health = await (await client.get("/_plugins/_ml/health")).json()
        assert (health["intra_op_threads"], health["intra_op_threads_alone"]) == (2, 4)


async def test_requests_of_a_lone_model_run_one_batch_at_a_time_on_every_core(tmp_path, monkeypatch):
    """While one request's call runs and no other model has work, the next request waits for it (rather than
    running beside it on half the cores), then runs as one call on every core; both answers are right."""
    monkeypatch.setattr(settings_module, "usable_cores", lambda: 4)
    gate = threading.Event()
    runtimes: list[FakeRuntime] = []
    settings = _settings(tmp_path, worker_threads=2)
    async with api_client(settings, fake_backends(tmp_path, runtimes, gate=gate)) as client:
        model_id = await api_fake_model(client, tmp_path)
        seen: list[tuple[int, int | None]] = []
        _recording(runtimes[0], seen)
        worker = client.app[keys.DEPLOYMENTS].get(model_id)
        first = asyncio.create_task(_predict(client, model_id, ["one"]))
        await wait_until(lambda: len(seen) == 1)  # held on the gate
        texts = [f"word{i} alpha beta" + " gamma" * (i % 2) for i in range(8)]
        second = asyncio.create_task(_predict(client, model_id, texts))
        await wait_until(lambda: len(worker._queue) == 1)  # queued, not started: it waits for the running batch
        assert seen == [(1, 4)]
        gate.set()
        responses = await asyncio.gather(first, second)
        assert [r.status for r in responses] == [200, 200]
        assert seen == [(1, 4), (8, 4)]
        data = [r["output"][0]["data"] for r in (await responses[1].json())["inference_results"]]
        assert data == [[float(len(t)), float(len(t.split()))] for t in texts]


async def test_a_request_while_another_model_runs_is_split_across_threads_with_their_share(tmp_path, monkeypatch):
    """While a call of another model runs, an 8-text request runs as two 4-text calls side by side on the shared
    count (cores / worker_threads), so the node never asks for more threads than its cores; answers keep their order."""
    monkeypatch.setattr(settings_module, "usable_cores", lambda: 4)
    gate = threading.Event()
    runtimes: list[FakeRuntime] = []
    settings = _settings(tmp_path, worker_threads=2)
    async with api_client(settings, fake_backends(tmp_path, runtimes, gate=gate)) as client:
        busy_id = await api_fake_model(client, tmp_path, name="busy-model")
        model_id = await api_fake_model(client, tmp_path, name="split-model")
        busy_seen: list[tuple[int, int | None]] = []
        seen: list[tuple[int, int | None]] = []
        _recording(runtimes[0], busy_seen)
        _recording(runtimes[1], seen)
        load = client.app[keys.DEPLOYMENTS].load
        first = asyncio.create_task(_predict(client, busy_id, ["one"]))
        await wait_until(lambda: len(busy_seen) == 1)  # held on the gate, alone: every core
        texts = [f"word{i} alpha beta" + " gamma" * (i % 2) for i in range(8)]
        second = asyncio.create_task(_predict(client, model_id, texts))
        await wait_until(lambda: len(seen) == 2)  # both halves entered at once, on the model's two threads
        gate.set()
        responses = await asyncio.gather(first, second)
        assert [r.status for r in responses] == [200, 200]
        assert busy_seen == [(1, 4)]
        assert seen == [(4, 2), (4, 2)]
        data = [r["output"][0]["data"] for r in (await responses[1].json())["inference_results"]]
        assert data == [[float(len(t)), float(len(t.split()))] for t in texts]
        await wait_until(lambda: load.running == 0)


async def test_an_explicit_intra_op_threads_setting_is_used_for_every_call(tmp_path, monkeypatch):
    monkeypatch.setattr(settings_module, "usable_cores", lambda: 4)
    runtimes: list[FakeRuntime] = []
    async with api_client(_settings(tmp_path, intra_op_threads=3), fake_backends(tmp_path, runtimes)) as client:
        model_id = await api_fake_model(client, tmp_path)
        seen: list[tuple[int, int | None]] = []
        _recording(runtimes[0], seen)
        texts = [f"word{i} alpha beta" + " gamma" * (i % 2) for i in range(8)]
        assert (await _predict(client, model_id, texts)).status == 200
        # as before the plan adapted: a lone request still runs as one call per inference thread, side by side
        assert sorted(seen) == [(4, 3), (4, 3)]


# ---- real models: the answer is the same whatever count a call got ------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("key", ["minilm-onnx", "minilm-torchscript"])
def test_backends_run_with_the_count_each_call_asks_for(model_runtimes, key):
    """An ONNX backend whose plan has two counts holds a session for each; TorchScript sets the calling thread's
    count only. Outputs agree across counts."""
    runtime = model_runtimes[key]
    path = next(p for p in runtime.model_dir.rglob("*.onnx" if key.endswith("onnx") else "*.pt"))
    feed = runtime.tokenizer.encode(TEXTS)
    before = torch.get_num_threads()
    try:
        if key.endswith("onnx"):
            backend: OnnxBackend | TorchScriptBackend = OnnxBackend(path, plan=ThreadPlan(alone=2, shared=1))
            assert isinstance(backend, OnnxBackend)
            assert backend.session_for(None).get_session_options().intra_op_num_threads == 2
            assert backend.session_for(1).get_session_options().intra_op_num_threads == 1
            assert backend.session_for(5).get_session_options().intra_op_num_threads == 2
        else:
            backend = TorchScriptBackend(path, plan=ThreadPlan(alone=2, shared=1))
        outputs = {}
        counts_seen = {}

        def run(count):
            with call_threads(count):
                outputs[count] = backend.run(feed)
                counts_seen[count] = torch.get_num_threads()

        for count in (2, 1):
            worker = threading.Thread(target=run, args=(count,))
            worker.start()
            worker.join()
        if key.endswith("torchscript"):
            assert counts_seen == {2: 2, 1: 1}  # each calling thread ran with the count it asked for
            assert torch.get_num_threads() == 2  # this thread's count is its own
        names = sorted(outputs[2])
        assert names == sorted(outputs[1])
        for name in names:
            np.testing.assert_allclose(outputs[1][name], outputs[2][name], rtol=1e-5, atol=1e-5)
        backend.close()
    finally:
        torch.set_num_threads(before)


@pytest.mark.integration
@pytest.mark.parametrize("key", ["minilm-onnx", "minilm-torchscript"])
async def test_the_ml_node_answers_the_same_vectors_alone_and_beside_another_call(tmp_path, model_zips, key):
    """The real ML node, MiniLM deployed: the same 8 texts alone (one call, every core) and while a call of another
    model counts as running (calls of the shared count side by side; the other call is entered in the node's load
    counter, as another model's would be) give the same vectors; the profile shows which counts ran."""
    packaged = model_zips[key]
    async with api_client(_settings(tmp_path, worker_threads=2), Backends()) as client:
        body = url_register_body(packaged.zip_path, packaged.config)
        registered = await client.post("/_plugins/_ml/models/_register", json=body)
        assert registered.status == 200, await registered.text()
        task = await api_wait_task(client, (await registered.json())["task_id"], timeout=300)
        assert task["state"] == "COMPLETED", task
        model_id = task["model_id"]
        deployed = await client.post(f"/_plugins/_ml/models/{model_id}/_deploy")
        assert (await api_wait_task(client, (await deployed.json())["task_id"], timeout=300))["state"] == "COMPLETED"
        plan = backends.thread_plan()

        async def vectors():
            response = await _predict(client, model_id, TEXTS)
            assert response.status == 200, await response.text()
            return np.array([r["output"][0]["data"] for r in (await response.json())["inference_results"]])

        alone = await vectors()
        load = client.app[keys.DEPLOYMENTS].load
        load.started("another model")  # a call of another model is running
        try:
            beside = await vectors()
        finally:
            load.finished("another model")
        np.testing.assert_allclose(beside, alone, rtol=1e-5, atol=1e-5)
        assert alone.shape == (len(TEXTS), 384)
        profile = await (await client.get(f"/_plugins/_ml/profile/models/{model_id}")).json()
        calls = profile["nodes"]["neuralpipe-ml"]["models"][model_id]["batch_stats"]["calls_by_intra_op_threads"]
        if plan.alone != plan.shared:
            assert calls[str(plan.alone)] >= 1 and calls[str(plan.shared)] >= 2
        else:
            assert sum(calls.values()) >= 3

