"""CSV document ids and the checkpoint (issue 10, item 3): an ``id``/``_id`` column names the documents by default,
the checkpoint records how ids are made and refuses a run that would make them differently, so a re-run never
duplicates. `neuralpipe ingest` into a real data node (tests/fixtures/datanode.py)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from neuralpipe.cli import main
from neuralpipe.ingest.readers import CONTENT_IDS, InputError, Record, content_id, open_input, read_csv
from tests.fixtures.datanode import os_client

ROWS = [(str(i), f"row {i}") for i in range(1, 6)]


def _csv(tmp_path: Path, header: str = "id,text") -> Path:
    path = tmp_path / "rows.csv"
    path.write_text(header + "\n" + "".join(f"{i},{t}\n" for i, t in ROWS))
    return path


def _ingest(tmp_path: Path, url: str, csv_path: Path, *extra: str) -> int:
    return main(["ingest", str(csv_path), "--index", "rows", "--opensearch", url, "--state-dir", str(tmp_path / "st"),
                 "--no-progress", *extra])


def _ids(url: str) -> list[str]:
    client = os_client(url)
    client.indices.refresh(index="rows")
    hits = client.search(index="rows", body={"size": 100, "query": {"match_all": {}}})["hits"]["hits"]
    return sorted(h["_id"] for h in hits)


@pytest.mark.unit
@pytest.mark.parametrize("header, id_field, ids, first_id", [
    ("id,text", None, "column:id", "1"),
    ("_id,text", None, "column:_id", "1"),
    ("_id,id,text", None, "column:_id", "1"),
    ("key,text", None, CONTENT_IDS, None),
    ("key,text", "key", "column:key", "1"),
    ("id,text", "", CONTENT_IDS, None),
])
def test_csv_id_column(tmp_path, header, id_field, ids, first_id) -> None:
    path = tmp_path / "in.csv"
    path.write_text(header + "\n" + ",".join(["1"] * (header.count(",") + 1)) + "\n")
    source = open_input(str(path), "auto", id_field=id_field)
    (record,) = list(source.items)
    assert source.ids == ids
    assert record.id == (first_id or content_id(record.source))
    assert "_id" not in record.source  # metadata, never a source field


@pytest.mark.unit
def test_an_id_field_that_is_not_a_column_names_the_columns() -> None:
    with pytest.raises(InputError, match=r"^id field \[doc\] is not a column of the CSV; columns: id, text "):
        list(read_csv(io.StringIO("id,text\n1,a\n"), id_field="doc"))
    assert list(read_csv(io.StringIO("id,text\n1,a\n"))) == [Record(2, "1", {"id": "1", "text": "a"})]


@pytest.mark.integration
def test_reruns_of_a_csv_never_duplicate(data_node, tmp_path, capsys) -> None:
    csv_path = _csv(tmp_path)
    assert _ingest(tmp_path, data_node.url, csv_path) == 0
    assert _ids(data_node.url) == ["1", "2", "3", "4", "5"]  # the id column, without --id-field
    # naming the same column is the same ids: everything is already done
    capsys.readouterr()
    assert _ingest(tmp_path, data_node.url, csv_path, "--id-field", "id") == 0
    assert "skipped             5 already done" in capsys.readouterr().out
    # --restart sends every row again under the same ids
    assert _ingest(tmp_path, data_node.url, csv_path, "--restart") == 0
    assert _ids(data_node.url) == ["1", "2", "3", "4", "5"]


@pytest.mark.integration
@pytest.mark.parametrize("rerun", [[], ["--restart"]], ids=["resume", "restart"])
def test_a_rerun_making_ids_another_way_is_refused(data_node, tmp_path, capsys, rerun) -> None:
    csv_path = _csv(tmp_path)
    assert _ingest(tmp_path, data_node.url, csv_path, "--id-field", "") == 0  # content-hash ids
    capsys.readouterr()
    assert _ingest(tmp_path, data_node.url, csv_path, *rerun) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("neuralpipe ingest: index [rows] holds the records of [")
    assert ("with ids from a hash of the content" in err[0] and "this run makes ids from column [id]" in err[0]
            and "pass --id-field '' to keep the old ids, or ingest into a new index" in err[0])
    assert len(_ids(data_node.url)) == 5  # not 10
