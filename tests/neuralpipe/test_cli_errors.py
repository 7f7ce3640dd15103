"""A user's mistakes and a busy machine get one line and exit code 2, never a traceback; one default data dir.

Each command runs as a user runs it: ``python -m neuralpipe`` in a subprocess, real files, real ports."""

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

import pytest

from neuralpipe.node import DEFAULT_DATA_DIR

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def neuralpipe(*args: str, cwd: Path = REPO, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "neuralpipe", *args], cwd=cwd, env=ENV, input=stdin,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def data_node_serving(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """``neuralpipe serve --roles data`` holding a data dir, as another process on the machine would."""
    data_dir = tmp_path / "held"
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "neuralpipe", "serve", "--roles", "data", "--port", str(port),
                             "--data-dir", str(data_dir)], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=5).close()
            break
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
    try:
        yield data_dir, url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


@pytest.mark.unit
def test_missing_pipeline_file(tmp_path: Path) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"_id": "1", "text": "hello"}) + "\n")
    proc = neuralpipe("ingest", str(docs), "--index", "docs", "--pipeline", str(tmp_path / "nope.yaml"),
                      "--data-dir", str(tmp_path / "data"), "--state-dir", str(tmp_path / "state"))
    assert_one_line_error(proc, "neuralpipe ingest:", f"no such pipeline file [{tmp_path / 'nope.yaml'}]")


@pytest.mark.integration
def test_data_dir_held_by_another_process(data_node_serving: tuple[Path, str], tmp_path: Path) -> None:
    data_dir, _ = data_node_serving
    search = neuralpipe("search", "--index", "docs", "--match", "hello", "--data-dir", str(data_dir))
    assert_one_line_error(search, "neuralpipe search:", "is in use by another data node")
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"_id": "1", "text": "hello"}) + "\n")
    ingest = neuralpipe("ingest", str(docs), "--index", "docs", "--data-dir", str(data_dir),
                        "--state-dir", str(tmp_path / "state"))
    assert_one_line_error(ingest, "neuralpipe ingest:", "is in use by another data node")


@pytest.mark.integration
def test_port_in_use_and_readiness_only_once_bound(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = neuralpipe("serve", "--roles", "data", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert_one_line_error(proc, "neuralpipe serve:", f"cannot listen on 127.0.0.1:{port}")
    assert "roles data on" not in proc.stderr


@pytest.mark.unit
def test_search_never_creates_a_data_dir(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    proc = neuralpipe("search", "--index", "docs", "--match", "hello", "--data-dir", str(missing))
    assert_one_line_error(proc, "neuralpipe search:", f"no data node in [{missing}]")
    assert not missing.exists()


@pytest.mark.unit
@pytest.mark.parametrize("command", [["serve"], ["ingest"], ["search"], ["eval"], ["demo"], ["models", "register"]])
def test_every_command_shows_the_one_default_data_dir(command: list[str]) -> None:
    proc = neuralpipe(*command, "--help")
    assert proc.returncode == 0
    help_text = " ".join(proc.stdout.split())
    assert f"--data-dir DATA_DIR where models (ml/) and indices (data/) live (default: {DEFAULT_DATA_DIR})" in help_text


@pytest.mark.unit
def test_the_default_data_dir_is_ignored_by_git() -> None:
    proc = subprocess.run(["git", "check-ignore", "-q", f"{DEFAULT_DATA_DIR}/data/x.sqlite"], cwd=REPO)
    assert proc.returncode == 0


@pytest.mark.unit
def test_version() -> None:
    proc = neuralpipe("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("neuralpipe ")


@pytest.mark.unit
@pytest.mark.parametrize("command", [[], ["serve"], ["models"], ["pipelines"], ["ingest"], ["search"], ["demo"],
                                     ["eval"]])
def test_help_has_no_raw_double_backticks(command: list[str]) -> None:
    proc = neuralpipe(*command, "--help")
    assert proc.returncode == 0 and "``" not in proc.stdout
