"""`neuralpipe ingest` against a cluster that is busy for a while, and with bad input lines.

The target is tests/neuralpipe/busy_cluster.py, a stand-in for OpenSearch (none can run here)
that answers 429 / 503 on demand. No pipeline file: these tests are about the bulk path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuralpipe.cli import main
from tests.neuralpipe.busy_cluster import BusyCluster, BusyClusterServer, BusyPlan

pytestmark = pytest.mark.integration


def _write_jsonl(path: Path, n: int) -> list[dict]:
    docs = [{"_id": f"d{i}", "title": f"title {i}", "text": f"document number {i}"} for i in range(n)]
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return docs


def _ingest(tmp_path: Path, url: str, input_path: Path, *extra: str) -> int:
    return main(["ingest", str(input_path), "--index", "docs", "--opensearch", url,
                 "--state-dir", str(tmp_path / "state"), "--bulk-size", "10", "--batch-size", "8",
                 "--initial-backoff", "0.01", "--max-backoff", "0.05", *extra])


def _dead_letter(tmp_path: Path) -> list[dict]:
    files = list((tmp_path / "state").glob("*.dead-letter.jsonl"))
    if not files:
        return []
    return [json.loads(line) for line in files[0].read_text().splitlines()]


def test_busy_cluster_loses_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = _write_jsonl(tmp_path / "in.jsonl", 95)
    cluster = BusyCluster(BusyPlan(reject_requests_429=3, reject_requests_503=2, reject_items_429_every=3))
    with BusyClusterServer(cluster):
        rc = _ingest(tmp_path, cluster.url, tmp_path / "in.jsonl", "--max-retries", "6")
    out = capsys.readouterr()
    assert rc == 0, out
    # every document is there exactly as read, none lost and none written twice
    assert set(cluster.docs) == {d["_id"] for d in docs}
    assert cluster.docs["d7"] == {"title": "title 7", "text": "document number 7"}
    assert max(cluster.writes.values()) == 1
    # the cluster really was busy: whole requests and single items were rejected and retried
    assert cluster.answered[429] == 3 and cluster.answered[503] == 2
    assert sum(cluster.item_429.values()) >= 10
    assert "indexed            95" in out.out
    assert "bulk 429:" in out.out
    assert "docs/s" in out.err  # the progress bar
    assert _dead_letter(tmp_path) == []


def test_malformed_lines_reported_with_line_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        json.dumps({"_id": "a", "text": "first"}),
        json.dumps({"_id": "b", "text": "second"}),
        '{"_id": "c", "text": "broken',              # line 3: not JSON
        json.dumps({"_id": "d", "text": "fourth"}),
        json.dumps(["not", "an", "object"]),         # line 5: not an object
        "",                                          # blank: nothing to report
        json.dumps({"_id": "g", "text": "x", "bad": "y"}),  # line 7: rejected by the cluster's mapping
        json.dumps({"text": "no id: a content hash names me"}),
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    cluster = BusyCluster()
    with BusyClusterServer(cluster):
        rc = _ingest(tmp_path, cluster.url, tmp_path / "in.jsonl")
        out = capsys.readouterr().out
        assert rc == 1  # some documents failed
        assert {"a", "b", "d"} <= set(cluster.docs) and len(cluster.docs) == 4
        dead = {d["line"]: d for d in _dead_letter(tmp_path)}
        assert sorted(dead) == [3, 5, 7]
        assert dead[3]["stage"] == "parse" and "invalid JSON" in dead[3]["error"]["reason"]
        assert dead[3]["raw"] == '{"_id": "c", "text": "broken'
        assert dead[5]["error"]["reason"] == "expected a JSON object, got list"
        assert dead[7]["stage"] == "bulk" and dead[7]["error"]["type"] == "mapper_parsing_exception"
        assert dead[7]["id"] == "g" and dead[7]["document"] == {"text": "x", "bad": "y"}
        assert "line 3: [parse] invalid JSON" in out and "line 7: [bulk]" in out

        # a re-run resumes: nothing left to do, and no failure is reported twice
        rc = _ingest(tmp_path, cluster.url, tmp_path / "in.jsonl")
        out = capsys.readouterr().out
    assert rc == 0
    assert "skipped             7 already done" in out
    assert len(_dead_letter(tmp_path)) == 3
    assert max(cluster.writes.values()) == 1


def test_limit_reads_a_sample_and_a_rerun_continues(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_jsonl(tmp_path / "in.jsonl", 30)
    cluster = BusyCluster()
    with BusyClusterServer(cluster):
        assert _ingest(tmp_path, cluster.url, tmp_path / "in.jsonl", "--limit", "10") == 0
        assert sorted(cluster.docs, key=lambda i: int(i[1:])) == [f"d{i}" for i in range(10)]
        assert _ingest(tmp_path, cluster.url, tmp_path / "in.jsonl") == 0
    assert len(cluster.docs) == 30 and max(cluster.writes.values()) == 1
    assert _ingest(tmp_path, cluster.url, tmp_path / "in.jsonl", "--limit", "0") == 2
    assert "--limit must be at least 1, got 0" in capsys.readouterr().err


def test_stop_and_resume_without_duplicates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = _write_jsonl(tmp_path / "in.jsonl", 120)
    cluster = BusyCluster(BusyPlan(fail_forever_after_docs=50))
    with BusyClusterServer(cluster):
        rc = _ingest(tmp_path, cluster.url, tmp_path / "in.jsonl", "--max-retries", "1")
        out = capsys.readouterr().out
        assert rc == 2 and "ABORTED" in out and "resume" in out
        first = dict(cluster.writes)
        assert 50 <= len(first) < 120
        checkpoint = json.loads(next((tmp_path / "state").glob("*.checkpoint.json")).read_text())
        # the checkpoint names only acknowledged lines
        assert checkpoint["done_count"] <= len(first)

        cluster.plan.fail_forever_after_docs = None  # the cluster is back
        rc = _ingest(tmp_path, cluster.url, tmp_path / "in.jsonl")
        out = capsys.readouterr().out
    assert rc == 0, out
    assert set(cluster.docs) == {d["_id"] for d in docs}
    # lines done before the stop were not sent again
    assert f"skipped     {checkpoint['done_count']:>9,} already done" in out
    assert sum(cluster.writes.values()) - len(docs) <= len(first) - checkpoint["done_count"]


def test_stdin_and_csv_inputs(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "in.csv").write_text('id,title,text\n1,One,"first, with a comma"\n2,Two\n3,Three,third\n')
    cluster = BusyCluster()
    with BusyClusterServer(cluster):
        csv_run = subprocess.run(
            [sys.executable, "-m", "neuralpipe.cli", "ingest", str(tmp_path / "in.csv"), "--index", "csvdocs",
             "--id-field", "id", "--opensearch", cluster.url, "--state-dir", str(tmp_path / "s1"), "--json"],
            cwd=root, capture_output=True, text=True, timeout=120)
        stdin_run = subprocess.run(
            [sys.executable, "-m", "neuralpipe.cli", "ingest", "-", "--index", "stdindocs", "--opensearch", cluster.url,
             "--state-dir", str(tmp_path / "s2"), "--json", "--no-progress"],
            input='{"_id": "s1", "text": "from a pipe"}\n{"_id": "s2", "text": "second"}\n',
            cwd=root, capture_output=True, text=True, timeout=120)
    assert csv_run.returncode == 1, csv_run.stderr
    summary = json.loads(csv_run.stdout)
    assert summary["indexed"] == 2 and summary["failed"]["parse"] == 1
    assert summary["first_failures"] == [{"line": 3, "stage": "parse",
                                          "reason": "expected 3 columns (id, title, text), got 2"}]
    assert cluster.docs["1"] == {"id": "1", "title": "One", "text": "first, with a comma"}
    assert stdin_run.returncode == 0, stdin_run.stderr
    assert json.loads(stdin_run.stdout)["indexed"] == 2
    assert cluster.docs["s1"] == {"text": "from a pipe"}
    assert "docs/s" not in stdin_run.stderr  # --no-progress


def test_busy_ml_node_is_retried(tmp_path: Path, capsys: pytest.CaptureFixture[str], ml_node) -> None:
    """The ML node answers 429 to the first predict calls: the documents still get their vectors."""
    import yaml

    from tests.neuralpipe.busy_cluster import BusyMLProxy, ThreadServer

    _write_jsonl(tmp_path / "in.jsonl", 20)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"processors": [
        {"text_embedding": {"model_id": ml_node.model_ids["dense"], "field_map": {"text": "text_embedding"}}}]}))
    proxy = BusyMLProxy(ml_node.url, reject=3)
    server = ThreadServer(proxy.app)
    cluster = BusyCluster()
    cluster.indices.add("docs")  # exists: no mapping to derive
    with BusyClusterServer(cluster):
        try:
            rc = _ingest(tmp_path, cluster.url, tmp_path / "in.jsonl", "--pipeline", str(tmp_path / "p.yaml"),
                         "--ml-url", server.start())
        finally:
            server.stop()
    out = capsys.readouterr().out
    assert rc == 0, out
    assert proxy.rejected == 3 and proxy.forwarded_predicts >= 1
    assert len(cluster.docs) == 20
    assert all(len(d["text_embedding"]) == 384 for d in cluster.docs.values())
    assert "ML: " in out and "ML: 0" not in out


async def test_a_crashing_pipeline_aborts_instead_of_dropping_documents(tmp_path: Path) -> None:
    """A pipeline that raises something unexpected (a bug) stops the run; nothing is marked done."""
    from neuralpipe.ingest.checkpoint import Checkpoint
    from neuralpipe.ingest.deadletter import DeadLetter
    from neuralpipe.ingest.readers import iter_input
    from neuralpipe.ingest.runner import IngestOptions, IngestRunner

    class Crashing:  # stands in for a pipeline with a bug
        async def run(self, docs, *, lookup=None):
            raise KeyError("boom")

    _write_jsonl(tmp_path / "in.jsonl", 10)
    cluster = BusyCluster()
    with BusyClusterServer(cluster):
        from neuralpipe.local import make_client

        client = make_client(cluster.url)
        try:
            checkpoint = Checkpoint(tmp_path / "cp.json", input_name="x", index="docs")
            runner = IngestRunner(client, pipeline=Crashing(), checkpoint=checkpoint,
                                  dead_letter=DeadLetter(tmp_path / "dl.jsonl"),
                                  options=IngestOptions(index="docs", batch_size=4, progress=False))
            stats = await runner.run(iter_input(str(tmp_path / "in.jsonl"), "jsonl"), total=10)
        finally:
            await client.close()
    assert stats.aborted == "KeyError: 'boom'"
    assert stats.indexed == 0 and runner.checkpoint.done_count == 0 and not cluster.docs


def test_resume_refuses_a_replaced_input_but_follows_an_appended_one(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _write_jsonl(tmp_path / "in.jsonl", 5)
    cluster = BusyCluster()
    with BusyClusterServer(cluster):
        assert _ingest(tmp_path, cluster.url, tmp_path / "in.jsonl") == 0
        with open(tmp_path / "in.jsonl", "a") as f:  # appended: the new lines are ingested, the old skipped
            f.write(json.dumps({"_id": "new", "text": "appended later"}) + "\n")
        capsys.readouterr()
        assert _ingest(tmp_path, cluster.url, tmp_path / "in.jsonl") == 0
        assert "skipped             5 already done" in capsys.readouterr().out and "new" in cluster.docs
        (tmp_path / "in.jsonl").write_text(json.dumps({"_id": "other", "text": "a different file"}) + "\n")
        assert _ingest(tmp_path, cluster.url, tmp_path / "in.jsonl") == 2
        assert "changed since checkpoint" in capsys.readouterr().err
        assert _ingest(tmp_path, cluster.url, tmp_path / "in.jsonl", "--restart") == 0
    assert "other" in cluster.docs
