"""``neuralpipe serve --roles ml,data`` as a user runs it: one subprocess answering both roles on one port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read()


@pytest.fixture(scope="module")
def combined(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data_dir = tmp_path_factory.mktemp("combined")
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuralpipe.cli", "serve", "--roles", "ml,data", "--host", "127.0.0.1",
         "--port", str(port), "--data-dir", str(data_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            _get(url + "/")
            break
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                proc.kill()
                raise AssertionError(f"serve --roles ml,data did not come up: {out}") from None
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_root_is_the_data_nodes(combined: str) -> None:
    status, _, body = _get(combined + "/")
    info = json.loads(body)
    assert status == 200 and info["version"]["distribution"] == "opensearch" and info["cluster_name"] == "neuralpipe"


def test_prometheus_metrics_are_served(combined: str) -> None:
    status, content_type, body = _get(combined + "/metrics")
    text = body.decode()
    assert status == 200 and content_type.startswith("text/plain")
    assert "# TYPE mlnode_deployed_models gauge" in text and "mlnode_deployed_models 0.0" in text
    assert "# TYPE datanode_search_requests_total counter" in text


def test_data_node_metrics_count_searches_and_documents(combined: str) -> None:
    def call(method: str, path: str, body: Any) -> int:
        request = urllib.request.Request(combined + path, data=json.dumps(body).encode(), method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert call("PUT", "/m", {"mappings": {"properties": {"t": {"type": "text"}}}}) == 200
    assert call("PUT", "/m/_doc/1?refresh=true", {"t": "hello world"}) == 201
    assert call("PUT", "/m/_doc/2?refresh=true", {"t": "hello again"}) == 201
    for _ in range(3):
        assert call("POST", "/m/_search", {"query": {"match": {"t": "hello"}}}) == 200
    assert call("POST", "/m/_search", {"query": {"nope": {}}}) == 400
    text = _get(combined + "/metrics")[2].decode()
    assert 'datanode_documents{index="m"} 2.0' in text
    assert 'datanode_search_requests_total{kind="plain",outcome="ok"} 3.0' in text
    assert 'datanode_search_requests_total{kind="plain",outcome="error"} 1.0' in text


def test_ml_health_and_both_apis_answer(combined: str) -> None:
    status, _, body = _get(combined + "/health")
    assert status == 200 and json.loads(body)["deployed_models"] == 0
    status, _, body = _get(combined + "/_cluster/health")
    assert status == 200 and json.loads(body)["number_of_data_nodes"] == 1
    status, _, body = _get(combined + "/_plugins/_ml/health")
    assert status == 200
