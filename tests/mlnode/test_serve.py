"""``neuralpipe serve`` as a user runs it: a subprocess on a loopback port."""

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
from pathlib import Path

import pytest

from neuralpipe.commands.serve import parse_roles

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, json.loads(resp.read())


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "neuralpipe.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "d"),
            *args,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            _get(url + "/")
            return proc, url
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                proc.kill()
                raise AssertionError(f"serve did not come up: {out}") from None
            time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "roles"), [("ml", ("ml",)), ("ml,data", ("ml", "data")), (" data , ml ", ("data", "ml"))]
)
def test_parse_roles(text, roles):
    assert parse_roles(text) == roles


@pytest.mark.unit
@pytest.mark.parametrize("text", ["", "ingest", "ml,master"])
def test_parse_roles_rejects(text):
    with pytest.raises(ValueError, match="valid roles: ml, data"):
        parse_roles(text)


@pytest.mark.integration
def test_serve_ml_role_answers_ml_commons_routes(tmp_path):
    config = tmp_path / "mlnode.yaml"
    config.write_text("plugins.ml_commons:\n  max_model_on_node: 3\nneuralpipe:\n  node_name: test-node\n")
    proc, url = _serve(tmp_path, "--roles", "ml", "--config", str(config))
    try:
        status, root = _get(url + "/")
        assert status == 200 and root["name"] == "test-node"
        _, settings = _get(url + "/_cluster/settings?include_defaults=true&flat_settings=true")
        assert settings["defaults"]["plugins.ml_commons.max_model_on_node"] == "3"  # the --config file's value
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(url + "/_plugins/_ml/models/nope")
        assert err.value.code == 404
        assert (
            json.loads(err.value.read())["error"]["reason"] == "Failed to find model with the provided model id: nope"
        )
        with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
            assert b"mlnode_deployed_models" in resp.read()
    finally:
        _stop(proc)
    assert proc.returncode == 0


@pytest.mark.integration
def test_serve_ml_and_data_roles_share_one_port(tmp_path):
    proc, url = _serve(tmp_path, "--roles", "ml,data")
    try:
        status, _ = _get(url + "/")  # answered by the data node
        assert status == 200
        _, health = _get(url + "/_plugins/_ml/health")
        assert health["status"] == "green"
        if "NEURALPIPE_INTRA_OP_THREADS" not in os.environ:  # default: the cores shared out among the workers
            assert health["worker_threads"] == 2
            assert health["intra_op_threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
        _, search = _get(url + "/_plugins/_ml/models/_search")
        assert search["hits"]["total"]["value"] == 0
    finally:
        _stop(proc)


@pytest.mark.unit
def test_serve_bad_arguments_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "neuralpipe.cli", "serve", "--roles", "gpu", "--data-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "invalid --roles [gpu]" in result.stderr
