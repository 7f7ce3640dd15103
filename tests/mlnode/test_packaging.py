"""Packaging: zip contents and config.json as OpenSearch's pretrained artifacts have them; IDF building."""

from __future__ import annotations

import json
import math
import shutil
import zipfile

import pytest
from tokenizers import Tokenizer

from mlnode.offline import minilm_dir, splade_dir
from mlnode.packaging import CorpusError, PackagingError, build_idf, package_model, sha256_file

AUTO_TRUNCATION_256 = {"direction": "Right", "max_length": 256, "strategy": "LongestFirst", "stride": 0}


def members(path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return sorted(archive.namelist())


def tokenizer_json(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("tokenizer.json"))


@pytest.mark.integration
@pytest.mark.parametrize(
    ("key", "model_file", "framework"),
    [
        ("minilm-torchscript", "all-MiniLM-L6-v2.pt", "sentence_transformers"),
        ("minilm-onnx", "all-MiniLM-L6-v2.onnx", "huggingface_transformers"),
    ],
)
def test_minilm_zip_and_config(model_zips, key, model_file, framework):
    model = model_zips[key]
    config = model.config
    fmt = "torch_script" if model_file.endswith(".pt") else "onnx"
    assert model.zip_path.name == f"sentence-transformers_all-MiniLM-L6-v2-1.0.1-{fmt}.zip"
    assert members(model.zip_path) == sorted([model_file, "tokenizer.json"])
    assert config["name"] == "huggingface/sentence-transformers/all-MiniLM-L6-v2"
    assert config["version"] == "1.0.1"
    assert config["function_name"] == config["model_task_type"] == "TEXT_EMBEDDING"
    assert config["model_content_size_in_bytes"] == model.zip_path.stat().st_size
    assert config["model_content_hash_value"] == sha256_file(model.zip_path)
    model_config = config["model_config"]
    assert model_config["model_type"] == "bert"
    assert model_config["embedding_dimension"] == 384
    assert model_config["framework_type"] == framework
    assert model_config["pooling_mode"] == "mean" and model_config["normalize_result"] is True
    assert model_config["model_max_length"] == 256
    assert json.loads(model_config["all_config"])["hidden_size"] == 384
    assert json.loads(model.config_path.read_text()) == config
    # the shipped tokenizer.json pads and truncates at 128: packaging resets both
    tokenizer = tokenizer_json(model.zip_path)
    assert tokenizer["truncation"] == AUTO_TRUNCATION_256
    assert tokenizer["padding"] is None


@pytest.mark.integration
def test_onnx_graphs_have_dynamic_axes_and_named_io(model_zips):
    onnx = pytest.importorskip("onnx")
    with zipfile.ZipFile(model_zips["splade-onnx"].zip_path) as archive:
        graph = onnx.load_from_string(archive.read("splade-tiny.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["output"]
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence"]


@pytest.mark.integration
def test_sparse_and_tokenizer_zips(model_zips):
    sparse = model_zips["splade-torchscript"]
    assert members(sparse.zip_path) == ["splade-tiny.pt", "tokenizer.json"]
    assert sparse.config["function_name"] == "SPARSE_ENCODING"
    assert "model_config" not in sparse.config  # as OpenSearch's sparse pretrained configs
    assert tokenizer_json(sparse.zip_path)["truncation"]["max_length"] == 512

    tok = model_zips["tokenizer"]
    assert members(tok.zip_path) == ["idf.json", "tokenizer.json"]
    with zipfile.ZipFile(tok.zip_path) as archive:
        idf = json.loads(archive.read("idf.json"))
    assert "[CLS]" not in idf and len(idf) > 30000


@pytest.mark.integration
def test_tokenizer_packaging_is_reproducible(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("first document\n\nsecond document about search\n")
    one = package_model(
        splade_dir(),
        tmp_path / "a",
        function_name="SPARSE_TOKENIZE",
        model_format="TORCH_SCRIPT",
        name="t",
        idf_corpus=corpus,
    )
    two = package_model(
        splade_dir(),
        tmp_path / "b",
        function_name="SPARSE_TOKENIZE",
        model_format="TORCH_SCRIPT",
        name="t",
        idf_corpus=corpus,
    )
    assert one.hash == two.hash


@pytest.mark.unit
def test_build_idf_from_text_lines(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("apple banana\napple cherry\n\ncherry cherry date\n")
    idf = build_idf(corpus, splade_dir() / "tokenizer.json")
    n = 3  # the blank line is not a document
    assert idf["apple"] == pytest.approx(math.log(1 + (n - 2 + 0.5) / (2 + 0.5)))
    assert idf["date"] == pytest.approx(math.log(1 + (n - 1 + 0.5) / (1 + 0.5)))
    assert idf["zebra"] == pytest.approx(math.log(1 + (n + 0.5) / 0.5))  # never seen: the rarest


@pytest.mark.unit
def test_build_idf_jsonl_uses_title_and_text(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "1", "title": "Apple", "text": "banana"}\n{"_id": "2", "text": "cherry"}\n')
    idf = build_idf(corpus, splade_dir() / "tokenizer.json")
    assert idf["apple"] == idf["banana"] == idf["cherry"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "a"}\n{"text": \n', "line 2: not JSON"),
        ('{"body": "a"}\n', r"line 1: no string field \[text\]"),
        ("\n\n", "holds no documents"),
    ],
)
def test_bad_corpus_names_the_line(tmp_path, content, message):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(content)
    with pytest.raises(CorpusError, match=message):
        build_idf(corpus, splade_dir() / "tokenizer.json")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"function_name": "TEXT_GENERATION", "model_format": "ONNX"},
            r"function_name \[TEXT_GENERATION\].*SPARSE_ENCODING",
        ),
        ({"function_name": "TEXT_EMBEDDING", "model_format": "PYTORCH"}, r"model_format \[PYTORCH\].*TORCH_SCRIPT"),
        ({"function_name": "SPARSE_TOKENIZE", "model_format": "TORCH_SCRIPT"}, "needs an IDF corpus"),
        (
            {"function_name": "TEXT_EMBEDDING", "model_format": "ONNX", "pooling_mode": "median"},
            r"pooling_mode \[median\]",
        ),
    ],
)
def test_bad_options_are_rejected(tmp_path, kwargs, message):
    with pytest.raises(PackagingError, match=message):
        package_model(minilm_dir(), tmp_path, **kwargs)
    assert not list(tmp_path.glob("*.zip"))


@pytest.mark.unit
def test_folder_without_tokenizer_is_rejected(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(PackagingError, match="no tokenizer.json"):
        package_model(tmp_path / "src", tmp_path / "out", function_name="TEXT_EMBEDDING", model_format="ONNX")


@pytest.mark.unit
def test_tokenizer_json_is_built_from_vocab_txt(tmp_path):

    src = tmp_path / "src"
    src.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
        shutil.copy(minilm_dir() / name, src / name)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("neural search\n")
    model = package_model(
        src, tmp_path / "out", function_name="SPARSE_TOKENIZE", model_format="TORCH_SCRIPT", idf_corpus=corpus
    )
    with zipfile.ZipFile(model.zip_path) as archive:
        built = Tokenizer.from_str(archive.read("tokenizer.json").decode())
    shipped = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    shipped.no_padding()
    text = "OpenSearch neural-search plugin, 2024!"
    assert built.encode(text).ids == shipped.encode(text).ids


@pytest.mark.unit
def test_sentence_transformers_modules_beyond_pooling_are_refused(tmp_path):
    src = tmp_path / "st"
    shutil.copytree(minilm_dir(), src, ignore=shutil.ignore_patterns("*.safetensors"))
    modules = json.loads((src / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (src / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(PackagingError, match=r"module \[sentence_transformers.models.Dense\] at \[3_Dense\]"):
        package_model(src, tmp_path / "out", function_name="TEXT_EMBEDDING", model_format="TORCH_SCRIPT")
