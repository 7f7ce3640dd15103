"""Three ML nodes sharing one model registry kept in a data node, each a `neuralpipe serve` subprocess on loopback.

Register through node 1, deploy on every node, predict round-robin through all three; `kill -9` node 2 while a
client keeps predicting, restart it: it serves the model again without a new register, and the only failed requests
are the ones sent to the dead node. Two nodes registering the same name at once end with one model group holding
two models. Undeploy and delete through one node reach all of them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as ClientConnectionError
from opensearchpy.exceptions import TransportError

from tests.fixtures.mlnode import file_url_test_folders, url_register_body

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["neural search with shared model registries", "a second sentence"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    args: list[str]
    port: int
    log: Path
    proc: subprocess.Popen | None = None
    client: OpenSearch = field(init=False)

    def __post_init__(self) -> None:
        self.client = OpenSearch(hosts=[f"http://127.0.0.1:{self.port}"], timeout=120, max_retries=0)

    def start(self) -> Proc:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "neuralpipe.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             *self.args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.info()
                return
            except (ClientConnectionError, TransportError):
                assert self.proc is not None
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.log.read_text()[-3000:]
                    raise AssertionError(f"node on {self.port} did not come up:\n{log}") from None
                time.sleep(0.2)

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.client.close()


@dataclass
class Cluster:
    data: Proc
    ml: list[Proc]

    def node_id(self, i: int) -> str:
        return next(iter(self.ml[i].client.transport.perform_request("GET", "/_plugins/_ml/stats")["nodes"]))


def _wait_task(client: OpenSearch, task_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = client.plugins.ml.get_task(task_id=task_id)
        if task["state"] not in ("CREATED", "RUNNING"):
            return task
        assert time.monotonic() < deadline, f"task {task_id} still {task['state']}"
        time.sleep(0.2)


def _predict(client: OpenSearch, model_id: str) -> list[list[float]]:
    out = client.transport.perform_request(
        "POST", f"/_plugins/_ml/_predict/text_embedding/{model_id}",
        body={"text_docs": TEXTS, "target_response": ["sentence_embedding"]})  # opensearch-py: application/json
    return [r["output"][0]["data"] for r in out["inference_results"]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("scale-out")
    config = root / "mlnode.yaml"
    config.write_text(yaml.safe_dump({
        "plugins.ml_commons": {"allow_registering_model_via_url": True, "native_memory_threshold": 100},
        "neuralpipe": {"worker_threads": 1, "registry_node_timeout": 10.0,
                       "file_url_folders": file_url_test_folders()},  # where the packaged test zip lives
    }))
    data = Proc(["--roles", "data", "--data-dir", str(root / "data")], _free_port(), root / "data.log").start()
    registry = f"http://127.0.0.1:{data.port}"
    ml = [Proc(["--roles", "ml", "--data-dir", str(root / f"ml{i}"), "--config", str(config), "--registry",
                registry], _free_port(), root / f"ml{i}.log") for i in (1, 2, 3)]
    try:
        data.wait_ready()
        for node in ml:
            node.start()
        for node in ml:
            node.wait_ready()
        yield Cluster(data, ml)
    finally:
        for node in ml:
            node.stop()
        data.stop()


@pytest.fixture(scope="module")
def model_id(cluster: Cluster, model_zips: Any) -> str:
    packaged = model_zips["minilm-int8-onnx"]
    node1 = cluster.ml[0].client
    task = _wait_task(node1, node1.plugins.ml.register_model(body=url_register_body(packaged.zip_path,
                                                                                    packaged.config))["task_id"])
    assert task["state"] == "COMPLETED", task
    deploy = node1.plugins.ml.deploy_model(model_id=task["model_id"])
    done = _wait_task(node1, deploy["task_id"])
    assert done["state"] == "COMPLETED", done.get("error")
    assert sorted(done["worker_node"]) == sorted(cluster.node_id(i) for i in range(3))
    return str(task["model_id"])


def test_register_on_one_node_predict_on_all(cluster: Cluster, model_id: str) -> None:
    vectors = [_predict(cluster.ml[i % 3].client, model_id) for i in range(6)]
    assert len(vectors[0]) == 2 and len(vectors[0][0]) == 384
    for other in vectors[1:]:
        assert other == vectors[0]
    doc = cluster.ml[2].client.plugins.ml.get_model(model_id=model_id)
    assert doc["model_state"] == "DEPLOYED"
    assert doc["current_worker_node_count"] == 3 and doc["planning_worker_node_count"] == 3
    # profile on any node answers for every node (the others as of their last heartbeat), each with its own id
    everyone = sorted(cluster.node_id(i) for i in range(3))
    for i in range(3):
        deadline = time.monotonic() + 30
        while True:
            profile = cluster.ml[i].client.transport.perform_request("GET",
                                                                     f"/_plugins/_ml/profile/models/{model_id}")
            if sorted(profile["nodes"]) == everyone or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sorted(profile["nodes"]) == everyone
        for node, body in profile["nodes"].items():
            assert body["models"][model_id]["worker_nodes"] == [node]


def test_killed_node_serves_again_after_restart(cluster: Cluster, model_id: str) -> None:
    expected = _predict(cluster.ml[0].client, model_id)
    failures: list[tuple[int, str]] = []
    answers: list[tuple[int, bool]] = []
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set():
            node = i % 3
            try:
                answers.append((node, _predict(cluster.ml[node].client, model_id) == expected))
            except Exception as exc:  # noqa: BLE001 - recorded: the test asserts which node each failure came from
                failures.append((node, type(exc).__name__))
            i += 1

    thread = threading.Thread(target=load)
    thread.start()
    try:
        while len(answers) < 6:
            time.sleep(0.05)
        cluster.ml[1].proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        cluster.ml[1].proc.wait()  # type: ignore[union-attr]
        served_before_restart = len(answers)
        while len(answers) < served_before_restart + 6:
            time.sleep(0.05)
        cluster.ml[1].start()
        cluster.ml[1].wait_ready()
        restarted = len(answers)
        while not any(node == 1 for node, _ in answers[restarted:]):
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert failures, "the dead node refused requests"
    assert {node for node, _ in failures} == {1}
    assert all(same for _, same in answers)
    # it serves the model it had before, without a new register: one model with that name, one register task
    assert _predict(cluster.ml[1].client, model_id) == expected
    tasks = cluster.ml[1].client.transport.perform_request("POST", "/_plugins/_ml/tasks/_search",
                                                           body={"query": {"match_all": {}}, "size": 100})
    registers = [h for h in tasks["hits"]["hits"] if h["_source"]["task_type"] == "REGISTER_MODEL"]
    assert len(registers) == 1


def test_two_nodes_register_one_name_at_once(cluster: Cluster, model_zips: Any) -> None:
    packaged = model_zips["minilm-int8-onnx"]
    body = {**url_register_body(packaged.zip_path, packaged.config), "name": "raced/model"}
    answers: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def register(node: int) -> None:
        barrier.wait()
        answers.append(cluster.ml[node].client.plugins.ml.register_model(body=body))

    threads = [threading.Thread(target=register, args=(n,)) for n in (0, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tasks = [_wait_task(cluster.ml[1].client, a["task_id"]) for a in answers]
    assert [t["state"] for t in tasks] == ["COMPLETED", "COMPLETED"]
    groups = cluster.ml[1].client.plugins.ml.search_model_group(body={"query": {"term": {"name": "raced/model"}}})
    assert groups["hits"]["total"]["value"] == 1
    group_id = groups["hits"]["hits"][0]["_id"]
    models = [cluster.ml[1].client.plugins.ml.get_model(model_id=t["model_id"]) for t in tasks]
    assert {m["model_group_id"] for m in models} == {group_id}
    assert sorted(m["model_version"] for m in models) == ["1", "2"]


def test_undeploy_and_delete_reach_every_node(cluster: Cluster, model_id: str) -> None:
    answer = cluster.ml[2].client.plugins.ml.undeploy_model(model_id=model_id)
    assert {node: body["stats"] for node, body in answer.items()} == {
        cluster.node_id(i): {model_id: "UNDEPLOYED"} for i in range(3)}
    for i in range(3):
        deadline = time.monotonic() + 30
        while True:
            try:
                _predict(cluster.ml[i].client, model_id)
            except TransportError as exc:
                assert exc.status_code == 400
                assert "Model not ready yet" in str(exc.info)
                break
            assert time.monotonic() < deadline, f"node {i + 1} still serves an undeployed model"
            time.sleep(0.2)
    deleted = cluster.ml[1].client.plugins.ml.delete_model(model_id=model_id)
    assert deleted["result"] == "deleted"
    for i in range(3):
        with pytest.raises(TransportError) as info:
            cluster.ml[i].client.plugins.ml.get_model(model_id=model_id)
        assert info.value.status_code == 404
