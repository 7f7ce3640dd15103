"""``neuralpipe models``: package, build-idf, catalog, through the real command line entry point."""

from __future__ import annotations

import json
import zipfile

import pytest

from mlnode.offline import splade_dir
from neuralpipe.cli import main
from tests.fixtures.models import tiny_model_dir


@pytest.mark.integration
def test_package_tokenizer_model(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "coffee beans"}\n{"text": "search engine"}\n')
    code = main(
        [
            "models",
            "package",
            str(splade_dir()),
            "--function-name",
            "sparse_tokenize",
            "--model-format",
            "TORCH_SCRIPT",
            "--out",
            str(tmp_path / "out"),
            "--name",
            "my/tokenizer",
            "--idf-corpus",
            str(corpus),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert f"sha256: {config['model_content_hash_value']}" in out
    assert config["name"] == "my/tokenizer" and config["function_name"] == "SPARSE_TOKENIZE"
    with zipfile.ZipFile(tmp_path / "out" / "tokenizer-1.0.0-torch_script.zip") as archive:
        assert sorted(archive.namelist()) == ["idf.json", "tokenizer.json"]


@pytest.mark.integration
def test_package_cross_encoder_with_max_length(tmp_path, capsys):
    code = main(
        [
            "models",
            "package",
            str(tiny_model_dir("cross-encoder")),
            "--function-name",
            "TEXT_SIMILARITY",
            "--model-format",
            "ONNX",
            "--out",
            str(tmp_path),
            "--name",
            "tiny-ce",
            "--max-length",
            "128",
        ]
    )
    assert code == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_config"]["model_max_length"] == 128
    assert config["model_config"]["embedding_dimension"] == 1


@pytest.mark.unit
def test_build_idf(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("coffee beans\nsearch engine\ncoffee shop\n")
    out = tmp_path / "idf.json"
    assert main(["models", "build-idf", str(corpus), "--tokenizer", str(splade_dir()), "--out", str(out)]) == 0
    idf = json.loads(out.read_text())
    assert idf["coffee"] < idf["engine"]
    assert "token weights" in capsys.readouterr().out


@pytest.mark.unit
def test_catalog_lists_servable_names(capsys):
    assert main(["models", "catalog"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split("\t")[0] for line in lines]
    assert len(names) == 25 and names == sorted(names)
    assert "huggingface/sentence-transformers/all-MiniLM-L6-v2" in names and "neuralpipe/splade-tiny" in names
    offline = sorted(line.split("\t")[0] for line in lines if line.endswith("\toffline"))
    assert offline == ["huggingface/sentence-transformers/all-MiniLM-L6-v2", "neuralpipe/all-MiniLM-L6-v2-int8",
                       "neuralpipe/splade-tiny"]
    assert all(line.endswith(("\toffline", "\tdownload")) for line in lines)
    assert main(["models", "catalog", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["huggingface/sentence-transformers/msmarco-distilbert-base-tas-b"]["versions"] == [
        "1.0.1",
        "1.0.2",
        "1.0.3",
    ]


@pytest.mark.unit
def test_errors_exit_1_with_the_reason(tmp_path, capsys):
    code = main(
        [
            "models",
            "package",
            str(splade_dir()),
            "--function-name",
            "SPARSE_TOKENIZE",
            "--model-format",
            "ONNX",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 1
    assert "needs an IDF corpus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            ["models", "package", str(splade_dir()), "--function-name", "NOPE", "--model-format", "ONNX", "--out", "x"]
        )
