"""Readers, checkpoint and query building: what a user sees in ids, line numbers, resume state and bodies."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from neuralpipe.ingest.checkpoint import Checkpoint, CheckpointMismatch
from neuralpipe.ingest.readers import (
    InputError,
    ParseFailure,
    Record,
    content_id,
    count_lines,
    iter_input,
    read_csv,
    read_jsonl,
    resolve_input,
)
from neuralpipe.ingest.runner import backoff_delay
from neuralpipe.search.query import (
    QueryConfigError,
    QueryFields,
    build_query,
    fields_from_ingest_pipeline,
    fields_from_mapping,
)
from neuralpipe.search.table import format_table

pytestmark = pytest.mark.unit


def test_jsonl_ids_and_line_numbers() -> None:
    text = '{"_id": 7, "text": "a"}\n\n{"text": "b"}\n{oops\n'
    items = list(read_jsonl(io.StringIO(text)))
    assert items[0] == Record(1, "7", {"text": "a"})  # _id is metadata: out of the source
    assert items[1] == Record(3, content_id({"text": "b"}), {"text": "b"})
    assert isinstance(items[2], ParseFailure) and items[2].offset == 4
    # a content hash is stable and depends only on the content
    assert content_id({"b": 1, "a": 2}) == content_id({"a": 2, "b": 1}) != content_id({"a": 2})


def test_custom_id_field_stays_in_source() -> None:
    items = list(read_jsonl(io.StringIO('{"doc_id": "x1", "text": "a"}\n'), id_field="doc_id"))
    assert items == [Record(1, "x1", {"doc_id": "x1", "text": "a"})]


def test_csv_rows_with_multiline_fields_and_bad_rows() -> None:
    text = 'id,title,text\n1,One,"first\nsecond line"\n2,Two\n3,Three,third\n'
    items = list(read_csv(io.StringIO(text), id_field="id"))
    assert items[0] == Record(2, "1", {"id": "1", "title": "One", "text": "first\nsecond line"})
    assert isinstance(items[1], ParseFailure) and items[1].offset == 4
    assert items[1].reason == "expected 3 columns (id, title, text), got 2"
    assert items[2] == Record(5, "3", {"id": "3", "title": "Three", "text": "third"})


def test_beir_folder(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "body"}\n'
                                           '{"_id": "d2", "title": "no text"}\n')
    assert resolve_input(str(tmp_path), "auto") == ("beir", str(tmp_path / "corpus.jsonl"))
    items = list(iter_input(str(tmp_path), "auto"))
    assert items[0] == Record(1, "d1", {"title": "T", "text": "body"})
    assert isinstance(items[1], ParseFailure) and items[1].reason == "BEIR corpus line has no [text] field"
    assert count_lines(str(tmp_path), "beir") == 2
    with pytest.raises(InputError, match=r"no BEIR corpus at \["):
        resolve_input(str(tmp_path / "nope"), "beir")
    with pytest.raises(InputError, match=r"unknown input format \[xml\], valid: auto, jsonl, csv, beir"):
        resolve_input(str(tmp_path), "xml")


def test_checkpoint_roundtrip_and_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    cp = Checkpoint.open(path, input_name="/in.jsonl", index="docs")
    for offset in (9, 1, 3, 2, 7, 10, 3):  # acknowledgements arrive out of order, one twice
        cp.mark(offset)
    assert cp.is_done(3) and not cp.is_done(4) and cp.done_count == 6
    cp.flush()
    saved = json.loads(path.read_text())
    assert saved["done"] == [[1, 3], [7, 7], [9, 10]] and saved["done_count"] == 6
    again = Checkpoint.open(path, input_name="/in.jsonl", index="docs")
    assert [o for o in range(12) if again.is_done(o)] == [1, 2, 3, 7, 9, 10]
    again.mark(8)
    assert again.done_ranges == [[1, 3], [7, 10]]
    assert Checkpoint.open(path, input_name="/in.jsonl", index="docs", restart=True).done_count == 0
    assert json.loads(path.read_text())["done"] == []  # forgotten on disk at once, not at the first flush
    with pytest.raises(CheckpointMismatch, match=r"is for input \[/in.jsonl\] and index \[docs\]"):
        Checkpoint.open(path, input_name="/in.jsonl", index="other")


def test_checkpoint_of_a_large_input_stays_small(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path / "big.json", input_name="big", index="docs")
    for offset in range(1, 300_001):
        cp.mark(offset)
    cp.flush()
    assert json.loads((tmp_path / "big.json").read_text())["done"] == [[1, 300_000]]


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(a, 1.0, 5.0) for a in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


PIPELINE = {"processors": [
    {"text_embedding": {"model_id": "dense-model", "field_map": {"text": "text_embedding"}}},
    {"sparse_encoding": {"model_id": "sparse-model", "field_map": {"text": "text_sparse"}}},
]}


def test_query_bodies_from_an_ingest_pipeline() -> None:
    fields = fields_from_ingest_pipeline(PIPELINE)
    assert fields == QueryFields("text_embedding", "dense-model", "text_sparse", "sparse-model", ("text",),
                                 ("text_embedding", "text_sparse"))
    assert build_query("neural", "q", fields, size=3) == {
        "size": 3, "_source": {"excludes": ["text_embedding", "text_sparse"]},
        "query": {"neural": {"text_embedding": {"query_text": "q", "model_id": "dense-model", "k": 10}}}}
    assert build_query("sparse", "q", fields)["query"] == {
        "neural_sparse": {"text_sparse": {"query_text": "q", "model_id": "sparse-model"}}}
    hybrid = build_query("hybrid", "q", fields)["query"]["hybrid"]["queries"]
    assert [next(iter(q)) for q in hybrid] == ["match", "neural", "neural_sparse"]
    with pytest.raises(QueryConfigError, match="needs the dense model: pass --model-id"):
        build_query("neural", "q", QueryFields(dense_field="v"))


def test_fields_from_mapping_meta_wins() -> None:
    mapping = {"_meta": {"neuralpipe": {"dense_model": "m1", "text_fields": ["body"]}},
               "properties": {"v": {"type": "knn_vector", "dimension": 3}, "s": {"type": "rank_features"},
                              "title": {"type": "text"}}}
    f = fields_from_mapping(mapping)
    assert (f.dense_field, f.dense_model, f.sparse_field, f.text_fields) == ("v", "m1", "s", ("body",))


def test_results_table() -> None:
    response = {"took": 3, "hits": {"total": {"value": 2}, "hits": [
        {"_id": "json.dumps", "_score": 0.91234, "_source": {"text": "Serialize obj to a JSON formatted str."}},
        {"_id": "json.loads", "_score": 0.5, "_source": {"text": "Deserialize s to a Python object."}}]}}
    table = format_table(response, text_fields=("text",), width=80).splitlines()
    assert table[0].split() == ["rank", "score", "id", "snippet"]
    assert table[2].split()[:3] == ["1", "0.9123", "json.dumps"] and "Serialize obj" in table[2]
    assert table[3].split()[:3] == ["2", "0.5000", "json.loads"]
    assert table[-1] == "(2 of 2 hits, took 3 ms)"


def test_chunked_pipeline_queries_are_nested() -> None:
    chunked = {"processors": [
        {"text_chunking": {"algorithm": {"fixed_token_length": {"token_limit": 256}},
                           "field_map": {"text": "passage_chunk"}}},
        {"text_embedding": {"model_id": "dense-model", "field_map": {"passage_chunk": "passage_chunk_embedding"}}},
    ]}
    fields = fields_from_ingest_pipeline(chunked)
    assert fields.text_fields == ("text",) and fields.nested_fields == ("passage_chunk_embedding",)
    assert build_query("neural", "q", fields, size=5)["query"] == {"nested": {
        "path": "passage_chunk_embedding", "score_mode": "max",
        "query": {"neural": {"passage_chunk_embedding.knn": {"query_text": "q", "model_id": "dense-model", "k": 10}}}}}
    # the same from the mapping the pipeline produced
    mapping = {"properties": {"passage_chunk_embedding": {"type": "nested", "properties": {
        "knn": {"type": "knn_vector", "dimension": 384}}}, "text": {"type": "text"}}}
    from_mapping = fields_from_mapping(mapping)
    assert from_mapping.dense_field == "passage_chunk_embedding"
    assert from_mapping.nested_fields == ("passage_chunk_embedding",)
