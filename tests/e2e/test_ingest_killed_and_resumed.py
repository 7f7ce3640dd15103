"""`neuralpipe ingest` of SciFact (5,183 documents, dense + sparse) into the embedded data node,
killed halfway with SIGKILL and resumed: exactly 5,183 documents at the end.

Real everything: the CLI in a subprocess with its embedded data node, the session ML node with
all-MiniLM-L6-v2 and SPLADE-tiny. To keep the suite's time budget, the pipeline embeds each
document's `title` (dense and sparse) rather than its whole abstract: the ingest machinery (batches,
bulk, checkpoint, kill, resume) is the same; only the model work per document is smaller.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from neuralpipe.local import embedded_node, make_client

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SCIFACT = ROOT / ".." / "shared" / "data" / "scifact" / "corpus.jsonl"
N_DOCS = 5183


def _cli(*args: str, stderr: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "COLUMNS": "120"}
    return subprocess.Popen([sys.executable, "-m", "neuralpipe.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=open(stderr, "w"), text=True)


def _done_count(checkpoint: Path) -> int:
    try:
        return json.loads(checkpoint.read_text())["done_count"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


async def _count_and_sample(data_dir: Path) -> tuple[int, dict]:
    node = embedded_node(data_dir, ("data",))
    await node.start()
    client = make_client(node.url)
    try:
        count = (await client.count(index="scifact"))["count"]
        doc = await client.get(index="scifact", id="4983")
        return count, doc["_source"]
    finally:
        await client.close()
        await node.stop()


@pytest.mark.skipif(not SCIFACT.is_file(),
                    reason=f"SciFact corpus not found at {SCIFACT} (shared data beside the project)")
def test_scifact_ingest_killed_halfway_and_resumed(tmp_path: Path, ml_node) -> None:
    pipeline = tmp_path / "scifact-titles.yaml"
    pipeline.write_text(yaml.safe_dump({"processors": [
        {"text_embedding": {"model_id": ml_node.model_ids["dense"], "field_map": {"title": "title_embedding"},
                            "batch_size": 64}},
        {"sparse_encoding": {"model_id": ml_node.model_ids["sparse"], "field_map": {"title": "title_sparse"},
                             "batch_size": 64, "prune_type": "max_ratio", "prune_ratio": 0.1}},
    ]}))
    data_dir, state = tmp_path / "data", tmp_path / "state"
    args = ("ingest", str(SCIFACT), "--index", "scifact", "--pipeline", str(pipeline), "--ml-url", ml_node.url,
            "--data-dir", str(data_dir), "--state-dir", str(state), "--batch-size", "64", "--bulk-size", "250",
            "--concurrency", "2")
    checkpoint: Path | None = None  # named after the input and index; appears with the first acknowledged bulk

    # 1) start, wait until about half is acknowledged, SIGKILL
    first = _cli(*args, stderr=tmp_path / "run1.err")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        found = list(state.glob("*.checkpoint.json")) if state.exists() else []
        if found:
            checkpoint = found[0]
            if _done_count(checkpoint) >= N_DOCS // 2:
                break
        time.sleep(0.05)
    assert first.poll() is None, ("the first run ended before it could be killed: "
                                  + (tmp_path / "run1.err").read_text()[-2000:])
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    assert checkpoint is not None
    done_at_kill = _done_count(checkpoint)
    assert N_DOCS // 2 <= done_at_kill < N_DOCS
    assert "docs/s" in (tmp_path / "run1.err").read_text()  # the progress bar was running

    # 2) the same command again: resumes from the checkpoint and completes
    second = _cli(*args, "--json", stderr=tmp_path / "run2.err")
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, (tmp_path / "run2.err").read_text()[-3000:]
    summary = json.loads(out)
    assert summary["skipped_already_done"] == done_at_kill
    assert summary["indexed"] == N_DOCS - done_at_kill
    assert summary["failed_total"] == 0 and summary["aborted"] is None
    assert "docs/s" in (tmp_path / "run2.err").read_text()
    assert _done_count(checkpoint) == N_DOCS

    # 3) exactly the corpus, each document once, with both representations
    count, doc = asyncio.run(_count_and_sample(data_dir))
    assert count == N_DOCS
    assert doc["title"].startswith("Microstructural development of human newborn cerebral white matter")
    assert len(doc["title_embedding"]) == 384
    assert doc["title_sparse"] and all(w > 0 for w in doc["title_sparse"].values())
