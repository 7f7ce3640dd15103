"""`neuralpipe ingest` then `neuralpipe search` as a user runs them: the embedded data node in a data dir,
the session ML node (real MiniLM, SPLADE-tiny, IDF tokenizer) via --ml-url, each query kind, the table and
--json, --body and --search-pipeline files. Fields and models come from what ingest recorded in the index."""

from __future__ import annotations

import json

import pytest
import yaml

from neuralpipe.cli import main

pytestmark = pytest.mark.integration

DOCS = [
    ("cat", "Cats are small pets that purr when they are content and sleep most of the day."),
    ("dog", "Dogs are loyal pets that bark at strangers and love long walks in the park."),
    ("pasta", "Boil the pasta in salted water for ten minutes, then toss it with tomato sauce."),
    ("bread", "Knead the dough, let it rise for an hour, then bake the bread in a hot oven."),
    ("python", "Python is a programming language; its standard library parses JSON and CSV files."),
    ("rust", "Rust is a systems programming language that guarantees memory safety without a garbage collector."),
    ("volcano", "A volcano erupts when molten rock, ash and gases escape from the magma chamber below."),
    ("ocean", "Ocean tides rise and fall twice a day, pulled by the gravity of the moon."),
]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, ml_node) -> dict:
    tmp = tmp_path_factory.mktemp("search-cli")
    corpus = tmp / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in DOCS))
    pipeline = tmp / "dense-sparse.yaml"
    pipeline.write_text(yaml.safe_dump({"processors": [
        {"text_embedding": {"model_id": ml_node.model_ids["dense"], "field_map": {"text": "text_embedding"}}},
        {"sparse_encoding": {"model_id": ml_node.model_ids["sparse"], "field_map": {"text": "text_sparse"}}},
    ]}))
    common = ["--ml-url", ml_node.url, "--data-dir", str(tmp / "data")]
    rc = main(["ingest", str(corpus), "--index", "docs", "--pipeline", str(pipeline), "--no-progress",
               "--state-dir", str(tmp / "state"), *common])
    assert rc == 0
    return {"tmp": tmp, "common": common, "ml": ml_node}


def _search(filled: dict, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    rc = main(["search", "--index", "docs", "--size", "3", *filled["common"], *args])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def _ids(table: str) -> list[str]:
    return [line.split()[2] for line in table.splitlines() if line.strip()[:1].isdigit() and len(line.split()) > 2]


def test_neural_query_table(filled: dict, capsys: pytest.CaptureFixture[str]) -> None:
    out = _search(filled, capsys, "--neural", "an animal that purrs")
    lines = out.splitlines()
    assert lines[0].split() == ["rank", "score", "id", "snippet"]
    assert _ids(out)[0] == "cat"
    assert "Cats are small pets" in lines[2]
    assert lines[-1].startswith("(3 of ")


def test_sparse_query_with_the_tokenizer(filled: dict, capsys: pytest.CaptureFixture[str]) -> None:
    out = _search(filled, capsys, "--sparse", "volcano magma", "--sparse-model-id", filled["ml"].model_ids["tokenizer"])
    assert _ids(out)[0] == "volcano"


def test_match_and_json(filled: dict, capsys: pytest.CaptureFixture[str]) -> None:
    response = json.loads(_search(filled, capsys, "--match", "pasta tomato sauce", "--json"))
    hits = response["hits"]["hits"]
    assert hits[0]["_id"] == "pasta"
    assert "text_embedding" not in hits[0]["_source"]  # vectors are left out of what is shown


def test_hybrid_default_and_rrf_pipeline_file(filled: dict, capsys: pytest.CaptureFixture[str]) -> None:
    out = _search(filled, capsys, "--hybrid", "programming language memory safety")
    assert _ids(out)[0] == "rust"
    rrf = filled["tmp"] / "rrf.yaml"
    rrf.write_text(yaml.safe_dump({"phase_results_processors": [
        {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}}]}))
    response = json.loads(_search(filled, capsys, "--hybrid", "programming language memory safety",
                                  "--search-pipeline", str(rrf), "--json"))
    top = response["hits"]["hits"][0]
    assert top["_id"] == "rust"
    # rrf: each sub-query (match, neural, neural_sparse) adds 1 / (60 + rank); rust is first in all three
    assert top["_score"] == pytest.approx(3 / 61, rel=1e-4)


def test_body_file(filled: dict, capsys: pytest.CaptureFixture[str]) -> None:
    body = filled["tmp"] / "q.json"
    body.write_text(json.dumps({"query": {"neural": {"text_embedding": {
        "query_text": "bake bread in the oven", "model_id": filled["ml"].model_ids["dense"], "k": 3}}}}))
    out = _search(filled, capsys, "--body", str(body))
    assert _ids(out)[0] == "bread"


def test_errors_are_one_line(filled: dict, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["search", "--index", "nope", "--match", "x", *filled["common"]])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.strip() == "neuralpipe search: no such index [nope] (index_not_found_exception, status 404)"
