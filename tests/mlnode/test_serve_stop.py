"""Issue 11, item 5: a stop always stops. ``neuralpipe serve`` with a model whose forward never returns, SIGTERM while
that forward runs: the process exits, cleanly (exit code 0), within its stop grace. After a restart the hung model is
deployed again without holding up startup (deploy never runs the forward): the node answers, and the model's
predicts answer 408 once the predict timeout passes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from neuralpipe.node import STOP_GRACE_SECONDS
from tests.fixtures.mlnode import file_url_test_folders
from tests.mlnode.scripted_models import spinning_model_zip

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
ML = "/_plugins/_ml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, method: str = "GET", body: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _start(tmp_path: Path, timeout_seconds: float) -> tuple[subprocess.Popen, str]:
    config = tmp_path / f"mlnode-{timeout_seconds:g}.yaml"
    config.write_text("plugins.ml_commons:\n  allow_registering_model_via_url: true\n  native_memory_threshold: 100\n"
                      f"neuralpipe:\n  predict_timeout_seconds: {timeout_seconds}\n"
                      f"  file_url_folders: {json.dumps(file_url_test_folders())}\n")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuralpipe.cli", "serve", "--roles", "ml", "--port", str(port),
         "--data-dir", str(tmp_path / "d"), "--config", str(config)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            _call(url + "/", timeout=5)
            return proc, url
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("serve did not come up") from None
            time.sleep(0.1)


def _wait_task(url: str, task_id: str) -> dict:
    while True:
        _, task = _call(f"{url}{ML}/tasks/{task_id}")
        if task["state"] not in ("CREATED", "RUNNING"):
            return task
        time.sleep(0.05)


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        lines = resp.read().decode().splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(name + "{"))


def test_sigterm_stops_serve_with_a_hung_forward_and_restart_is_not_stalled(tmp_path):
    zip_path, digest = spinning_model_zip(tmp_path / "spinning.zip")
    proc, url = _start(tmp_path, 600)
    try:
        status, body = _call(f"{url}{ML}/models/_register", "POST", {
            "name": "spinning", "version": "1.0.0", "function_name": "TEXT_EMBEDDING", "model_format": "TORCH_SCRIPT",
            "model_content_hash_value": digest, "url": zip_path.resolve().as_uri(),
            "model_config": {"model_type": "bert", "embedding_dimension": 2, "framework_type": "sentence_transformers"},
        })
        assert status == 200, body
        model_id = _wait_task(url, body["task_id"])["model_id"]
        status, body = _call(f"{url}{ML}/models/{model_id}/_deploy", "POST", {})
        assert _wait_task(url, body["task_id"])["state"] == "COMPLETED"

        def hung_predict() -> None:
            try:
                _call(f"{url}{ML}/_predict/text_embedding/{model_id}", "POST", {"text_docs": ["spin"]}, timeout=120)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # the node went away under it

        caller = threading.Thread(target=hung_predict, daemon=True)
        caller.start()
        # wait until the request was admitted and its batch taken from the queue: the forward is running
        while not (_metric(url, "mlnode_predict_requests_total") >= 1 and _metric(url, "mlnode_queue_size") == 0):
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(STOP_GRACE_SECONDS + 30)
        except subprocess.TimeoutExpired:
            raise AssertionError("neuralpipe serve did not stop on SIGTERM") from None
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    proc, url = _start(tmp_path, 1)  # the port opens once startup (with the redeploy) is done
    try:
        status, body = _call(f"{url}{ML}/models/{model_id}")
        assert body["model_state"] == "DEPLOYED"
        status, body = _call(f"{url}{ML}/_predict/text_embedding/{model_id}", "POST", {"text_docs": ["spin"]})
        assert status == 408 and body["error"]["type"] == "timeout_exception", body
        for _ in range(100):  # the timeout is recorded in the model's document, in the background
            status, body = _call(f"{url}{ML}/models/{model_id}")
            if body.get("predict_timeout_count"):
                break
            time.sleep(0.05)
        assert body["predict_timeout_count"] == 1 and body["model_state"] == "DEPLOYED"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_GRACE_SECONDS + 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
