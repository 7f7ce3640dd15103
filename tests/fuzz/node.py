"""A real ``neuralpipe serve --roles ml,data`` node in a subprocess, with sentinels to check after abuse.

The node runs in its own process so the tests can read its RSS from ``/proc/<pid>/status``, read its log (where a
500's traceback names the code site), and so a request that eats memory hits the process' address-space limit
instead of the shared machine. ``Sentinels`` records what a user would check (a predict vector, search hits and
scores, documents) right after setup; ``Sentinels.changes`` compares the node's answers with that record, bit for bit.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fixtures.mlnode import file_url_test_folders

ROOT = Path(__file__).resolve().parents[2]
ML = "/_plugins/_ml"
SENTINEL_INDEX = "sentinel-idx"  # generated names never start with it: they start with FUZZ_PREFIX
VICTIM_INDEX = "fz-victim"  # an index the fuzz may change or delete
FUZZ_PREFIX = "fz"
# the node's address-space cap: torch + onnxruntime + faiss map ~3 GB; a request that allocates gigabytes (issue 11,
# items 1 and 2) fails inside the node instead of taking the shared test machine's memory
NODE_ADDRESS_SPACE = 12 * 1024**3

CONFIG = """\
plugins.ml_commons:
  allow_registering_model_via_url: true
  allow_registering_model_via_local_file: true
  native_memory_threshold: 100
neuralpipe:
  node_name: fuzz-node
  worker_threads: 2
  artifacts_base_url: {artifacts}
  file_url_folders: {folders}
"""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """Raw HTTP/1.1 over one kept-alive loopback connection: sends the path, method, headers and bytes exactly as
    given (no URL normalisation, no re-encoding), reconnecting after the server closes the connection."""

    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._conn: http.client.HTTPConnection | None = None
        self.sent = 0

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        # no headers given: a JSON body says so; given headers are sent as they are (a test of a missing or wrong
        # Content-Type passes its own)
        hdrs = dict(headers) if headers is not None else ({"Content-Type": "application/json"} if body else {})
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.sent += 1
                self._conn.putrequest(method, path, skip_accept_encoding=True)
                for name, value in hdrs.items():
                    self._conn.putheader(name, value)
                self._conn.putheader("Content-Length", str(len(body or b"")))
                self._conn.endheaders(body or b"")
                resp = self._conn.getresponse()
                data = resp.read()
                answer = Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
                if resp.will_close:
                    self.close()
                return answer
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine) as exc:
                self.close()
                if attempt:
                    raise ConnectionError(f"{method} {path[:200]}: {exc!r}") from exc
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200, 201)) -> Any:
        raw = None if body is None else json.dumps(body).encode()
        answer = self.request(method, path, raw)
        if answer.status not in ok:
            raise AssertionError(f"{method} {path}: {answer.status} {answer.body[:500]!r}")
        return answer.json() if answer.body else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _limit_memory() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (NODE_ADDRESS_SPACE, NODE_ADDRESS_SPACE))


@dataclass
class ServedNode:
    """``neuralpipe serve`` in a subprocess; ``log`` holds its stderr (tracebacks of any 500)."""

    process: subprocess.Popen
    url: str
    port: int
    log: Path
    roles: str

    @classmethod
    def start(cls, data_dir: Path, *, roles: str = "ml,data", timeout: float = 180.0) -> ServedNode:
        data_dir.mkdir(parents=True, exist_ok=True)
        config = data_dir.parent / f"{data_dir.name}-mlnode.yaml"
        missing_mirror = (data_dir.parent / f"{data_dir.name}-no-artifacts").as_uri()  # never the network
        config.write_text(CONFIG.format(artifacts=missing_mirror, folders=json.dumps(file_url_test_folders())),
                          encoding="utf-8")
        log = data_dir.parent / f"{data_dir.name}-serve.log"
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "neuralpipe", "serve", "--roles", roles, "--host", "127.0.0.1", "--port", "0",
                 "--data-dir", str(data_dir), "--config", str(config)],
                stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT), preexec_fn=_limit_memory)
        deadline = time.monotonic() + timeout
        pattern = re.compile(r"neuralpipe serve: roles \S+ on (http://127\.0\.0\.1:(\d+))")
        while time.monotonic() < deadline:
            found = pattern.search(log.read_text(encoding="utf-8", errors="replace"))
            if found:
                return cls(process, found.group(1), int(found.group(2)), log, roles)
            if process.poll() is not None:
                break
            time.sleep(0.1)
        process.kill()
        process.wait(10)
        raise RuntimeError(f"neuralpipe serve did not start:\n{log.read_text(errors='replace')[-4000:]}")

    def client(self, timeout: float = 60.0) -> Client:
        return Client("127.0.0.1", self.port, timeout)

    def rss_kib(self) -> int:
        """The node's resident set size now (VmRSS) in KiB."""
        return _status_kib(self.process.pid, "VmRSS")

    def peak_rss_kib(self) -> int:
        """The node's peak resident set size so far (VmHWM) in KiB."""
        return _status_kib(self.process.pid, "VmHWM")

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self, start: int = 0) -> str:
        with self.log.open("rb") as f:
            f.seek(start)
            return f.read().decode("utf-8", errors="replace")

    def log_size(self) -> int:
        return self.log.stat().st_size

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def wait_task(client: Client, task_id: str, timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = client.json("GET", f"{ML}/tasks/{task_id}")
        if task["state"] not in ("CREATED", "RUNNING"):
            return task
        if time.monotonic() > deadline:
            raise TimeoutError(task)
        time.sleep(0.05)


def register_zip(client: Client, packaged: Any, group_id: str) -> tuple[str, str]:
    """Register a packaged zip by file:// URL and deploy it; returns (model id, register task id)."""
    config = packaged.config
    body = {key: config[key] for key in ("name", "function_name", "model_format", "model_content_hash_value")}
    body.update(version=config.get("version", "1.0.0"), url=Path(packaged.zip_path).resolve().as_uri(),
                model_group_id=group_id)
    if config.get("model_config") is not None:
        body["model_config"] = config["model_config"]
    task_id = client.json("POST", f"{ML}/models/_register", body)["task_id"]
    task = wait_task(client, task_id)
    assert task["state"] == "COMPLETED", task
    deployed = wait_task(client, client.json("POST", f"{ML}/models/{task['model_id']}/_deploy")["task_id"])
    assert deployed["state"] == "COMPLETED", deployed
    return task["model_id"], task_id


SENTINEL_TEXTS = ["The sentinel sentence must embed to the same vector.", "a second text, batched with the first"]
SENTINEL_DOCS = {
    f"s{i}": {"title": text, "tag": f"t{i % 3}", "n": i, "vec": [float(i), float(i % 4), 1.0 / (i + 1), -float(i)]}
    for i, text in enumerate([
        "alpha bravo charlie", "bravo delta", "charlie echo alpha alpha", "delta foxtrot", "echo golf alpha",
        "foxtrot hotel", "golf india bravo", "hotel juliet", "india kilo alpha", "juliet lima", "kilo mike",
        "lima november alpha charlie",
    ])
}
INDEX_BODY = {
    "settings": {"index.knn": True, "number_of_shards": 1, "number_of_replicas": 0},
    "mappings": {"properties": {
        "title": {"type": "text"}, "tag": {"type": "keyword"}, "n": {"type": "integer"},
        "vec": {"type": "knn_vector", "dimension": 4, "space_type": "l2"},
    }},
}
SENTINEL_SEARCHES: list[dict[str, Any]] = [
    {"query": {"match": {"title": "alpha charlie"}}, "size": 20},
    {"query": {"knn": {"vec": {"vector": [3.0, 1.0, 0.2, -3.0], "k": 5}}}, "size": 5},
    {"query": {"bool": {"must": [{"match": {"title": "alpha"}}], "filter": [{"term": {"tag": "t0"}}]}}},
    {"query": {"match_all": {}}, "size": 50, "sort": [{"n": "asc"}]},
]


@dataclass
class Sentinels:
    """A model and an index no generated request may change, with what they answered before the abuse."""

    model_id: str
    index: str = SENTINEL_INDEX
    record: dict[str, Any] = field(default_factory=dict)

    def observe(self, client: Client) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        predict = client.json("POST", f"{ML}/_predict/text_embedding/{self.model_id}",
                              {"text_docs": SENTINEL_TEXTS, "return_number": True,
                               "target_response": ["sentence_embedding"]})
        seen["predict"] = [[out["data"] for out in result["output"]] for result in predict["inference_results"]]
        seen["model_state"] = client.json("GET", f"{ML}/models/{self.model_id}")["model_state"]
        for i, body in enumerate(SENTINEL_SEARCHES):
            result = client.json("POST", f"/{self.index}/_search", body)
            seen[f"search{i}"] = (result["hits"]["total"],
                                  [(h["_id"], h["_score"], h["_source"]) for h in result["hits"]["hits"]])
        seen["count"] = client.json("GET", f"/{self.index}/_count")["count"]
        seen["docs"] = {doc_id: client.json("GET", f"/{self.index}/_doc/{doc_id}")["_source"]
                        for doc_id in SENTINEL_DOCS}
        seen["mapping"] = client.json("GET", f"/{self.index}/_mapping")
        return seen

    def remember(self, client: Client) -> None:
        self.record = self.observe(client)

    def changes(self, client: Client) -> list[str]:
        """What differs from the record (exact comparison: floats bit for bit, hit order, sources)."""
        now = self.observe(client)
        return [f"{key}: before {self.record[key]!r:.300} now {now[key]!r:.300}"
                for key in self.record if now.get(key) != self.record[key]]


def setup_sentinels(client: Client, model_zips: Any) -> tuple[Sentinels, dict[str, str]]:
    """Deploy the sentinel model (all-MiniLM-L6-v2 int8 ONNX) and a victim model, create the sentinel and victim
    indices; returns the sentinels (recorded) and the ids the fuzz may address (victims, a task, a group)."""
    group = client.json("POST", f"{ML}/model_groups/_register", {"name": "sentinel-group"})["model_group_id"]
    model_id, task_id = register_zip(client, model_zips["minilm-int8-onnx"], group)
    victim_group = client.json("POST", f"{ML}/model_groups/_register", {"name": "fz-victim-group"})["model_group_id"]
    victim_model, victim_task = register_zip(client, model_zips["tokenizer"], victim_group)
    empty_group = client.json("POST", f"{ML}/model_groups/_register", {"name": "fz-empty-group"})["model_group_id"]
    for index in (SENTINEL_INDEX, VICTIM_INDEX):
        client.json("PUT", f"/{index}", INDEX_BODY)
        lines = []
        for doc_id, doc in SENTINEL_DOCS.items():
            lines += [json.dumps({"index": {"_index": index, "_id": doc_id}}), json.dumps(doc)]
        answer = client.request("POST", "/_bulk?refresh=true", ("\n".join(lines) + "\n").encode(),
                                {"Content-Type": "application/x-ndjson"})
        assert answer.status == 200 and not answer.json()["errors"], answer.body[:500]
    sentinels = Sentinels(model_id)
    sentinels.remember(client)
    ids = {"sentinel_model": model_id, "sentinel_task": task_id, "sentinel_group": group,
           "victim_model": victim_model, "victim_task": victim_task, "victim_group": victim_group,
           "empty_group": empty_group}
    return sentinels, ids


@dataclass
class FuzzNode:
    """What the fuzz and load tests get: the served node, a client, the sentinels, the ids they may address."""

    node: ServedNode
    client: Client
    sentinels: Sentinels
    ids: dict[str, str]
