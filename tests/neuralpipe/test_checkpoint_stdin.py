"""stdin resume: a checkpoint skips only records it has seen (issue 10, item 1).

`neuralpipe ingest -` into a real data node (tests/fixtures/datanode.py); the stdin checkpoint of an index is shared
by every stream piped into it, so it must know records by their id and content, never by line number."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from neuralpipe.cli import main
from neuralpipe.ingest.checkpoint import Checkpoint
from neuralpipe.ingest.readers import Record
from tests.fixtures.datanode import os_client

pytestmark = pytest.mark.integration


def _pipe(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str,
          texts: list[str], *extra: str) -> tuple[int, dict]:
    lines = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines.encode())))
    capsys.readouterr()
    code = main(["ingest", "-", "--index", "stdin2", "--opensearch", url, "--state-dir", str(tmp_path / "state"),
                 "--json", "--no-progress", *extra])
    out = capsys.readouterr().out
    return code, json.loads(out) if code in (0, 1) else {}


def _texts(url: str) -> list[str]:
    client = os_client(url)
    client.indices.refresh(index="stdin2")
    hits = client.search(index="stdin2", body={"size": 100, "query": {"match_all": {}}})["hits"]["hits"]
    return sorted(h["_source"]["text"] for h in hits)


def test_a_different_stream_into_the_same_index_skips_nothing(data_node, tmp_path, monkeypatch, capsys) -> None:
    code, first = _pipe(monkeypatch, capsys, tmp_path, data_node.url, ["a1", "a2"])
    assert code == 0 and first["indexed"] == 2
    # the case: another stream, same index, same (default) checkpoint file
    code, second = _pipe(monkeypatch, capsys, tmp_path, data_node.url, ["c1", "c2", "c3"])
    assert code == 0 and (second["skipped_already_done"], second["indexed"]) == (0, 3)
    assert _texts(data_node.url) == ["a1", "a2", "c1", "c2", "c3"]


def test_the_same_stream_again_resumes_and_new_records_are_sent(data_node, tmp_path, monkeypatch, capsys) -> None:
    _pipe(monkeypatch, capsys, tmp_path, data_node.url, ["c1", "c2", "c3"])
    code, again = _pipe(monkeypatch, capsys, tmp_path, data_node.url, ["c1", "c2", "c3"])
    assert code == 0 and (again["skipped_already_done"], again["indexed"]) == (3, 0)
    # same records in another order, plus one new: only the new one is sent
    code, more = _pipe(monkeypatch, capsys, tmp_path, data_node.url, ["c4", "c3", "c2", "c1"])
    assert code == 0 and (more["skipped_already_done"], more["indexed"]) == (3, 1)
    assert _texts(data_node.url) == ["c1", "c2", "c3", "c4"]
    # --restart sends everything again (same ids: still no duplicates)
    code, restarted = _pipe(monkeypatch, capsys, tmp_path, data_node.url, ["c1", "c2"], "--restart")
    assert code == 0 and (restarted["skipped_already_done"], restarted["indexed"]) == (0, 2)
    assert _texts(data_node.url) == ["c1", "c2", "c3", "c4"]


@pytest.mark.unit
def test_a_record_checkpoint_ignores_a_line_torn_by_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    records = [Record(i, f"id{i}", {"text": f"t{i}"}) for i in (1, 2, 3)]
    cp = Checkpoint.open(path, input_name="stdin", index="docs", keyed_by="record")
    for item in cp.track(records[:2]):
        cp.mark(item.offset)
    cp.flush()
    with open(path.with_name("cp.seen"), "a") as f:  # killed while appending the third digest
        f.write("0123abcd")
    again = Checkpoint.open(path, input_name="stdin", index="docs", keyed_by="record")
    assert again.done_count == 2
    # the same ids with other content are other records: not skipped
    changed = [Record(1, "id1", {"text": "edited"}), *records[1:]]
    assert [again.is_done(item.offset) for item in again.track(changed)] == [False, True, False]


@pytest.mark.unit
def test_digests_left_without_their_checkpoint_file_are_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    record = Record(1, "id1", {"text": "t1"})
    cp = Checkpoint.open(path, input_name="stdin", index="docs", keyed_by="record")
    for item in cp.track([record]):
        cp.mark(item.offset)
    cp.flush()
    path.unlink()  # the user removed the checkpoint (say, with the index): its .seen file stays behind
    fresh = Checkpoint.open(path, input_name="stdin", index="docs", keyed_by="record")
    for item in fresh.track([Record(2, "id2", {"text": "t2"})]):
        fresh.mark(item.offset)
    fresh.flush()
    again = Checkpoint.open(path, input_name="stdin", index="docs", keyed_by="record")
    assert [again.is_done(item.offset) for item in again.track([record])] == [False]
    assert again.done_count == 1
