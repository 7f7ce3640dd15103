"""SPARSE_ENCODING (SPLADE-tiny) and SPARSE_TOKENIZE runtimes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from transformers import BertForMaskedLM

from mlnode.offline import splade_dir
from mlnode.packaging import build_idf
from mlnode.runtimes import PredictInputError, load_runtime
from mlnode.zipcheck import validate_and_extract
from tests.fixtures.models import IDF_CORPUS, write_idf_corpus

pytestmark = [pytest.mark.integration]

SENTENCE = "The capital of France is Paris, famous for its coffee."


def weights_of(result: dict) -> dict[str, float]:
    (tensor,) = result["output"]
    assert tensor["name"] == "output"
    (weights,) = tensor["dataAsMap"]["response"]
    return weights


@pytest.fixture(scope="module")
def expected_splade() -> dict[str, float]:
    """SPLADE straight from transformers: log(1 + relu(max over tokens of the MLM logits)), specials zeroed."""
    tokenizer = Tokenizer.from_file(str(splade_dir() / "tokenizer.json"))
    model = BertForMaskedLM.from_pretrained(str(splade_dir())).eval()
    encoding = tokenizer.encode(SENTENCE)
    with torch.no_grad():
        logits = model(
            input_ids=torch.tensor([encoding.ids]), attention_mask=torch.tensor([encoding.attention_mask])
        ).logits
    values = torch.log1p(torch.relu(logits[0].max(dim=0).values)).numpy()
    special = [i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special]
    values[special] = 0.0
    return {tokenizer.decode([int(i)]): float(values[i]) for i in np.flatnonzero(values)}


@pytest.mark.parametrize("key", ["splade-torchscript", "splade-onnx"])
def test_splade_top_tokens_match_transformers(model_runtimes, expected_splade, key):
    got = weights_of(model_runtimes[key].infer([SENTENCE])[0])
    top = sorted(expected_splade, key=expected_splade.get, reverse=True)[:10]
    assert list(got)[:10] == top
    assert {"paris", "france", "capital", "coffee"} <= set(top)
    assert set(got) == set(expected_splade)
    for token in top:
        assert got[token] == pytest.approx(expected_splade[token], rel=1e-4, abs=1e-5)
    assert not {"[CLS]", "[SEP]", "[PAD]", ""} & set(got)


def test_splade_torchscript_equals_onnx(model_runtimes):
    assert model_runtimes["splade-torchscript"].backend.input_names == ["input_ids", "attention_mask"]
    assert model_runtimes["splade-onnx"].backend.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    texts = [SENTENCE, "sparse retrieval with opensearch " * 150, "hello"]
    ts = [weights_of(r) for r in model_runtimes["splade-torchscript"].infer(texts)]
    onnx = [weights_of(r) for r in model_runtimes["splade-onnx"].infer(texts)]
    for a, b in zip(ts, onnx, strict=True):
        shared = set(a) | set(b)
        diff = max(abs(a.get(t, 0.0) - b.get(t, 0.0)) for t in shared)
        assert diff < 1e-3


def test_tokenizer_weights_are_the_idf_it_was_built_with(model_runtimes, tmp_path):
    idf = build_idf(write_idf_corpus(tmp_path / "corpus.jsonl"), splade_dir() / "tokenizer.json")
    weights = weights_of(model_runtimes["tokenizer"].infer(["the coffee index index engine"])[0])
    assert list(weights) == ["the", "coffee", "index", "engine"]  # de-duplicated, in text order
    for token, weight in weights.items():
        assert weight == pytest.approx(idf[token])
    n = len(IDF_CORPUS)
    assert weights["coffee"] == pytest.approx(np.log(1 + (n - 1 + 0.5) / (1 + 0.5)))  # df 1 of 10
    assert weights["index"] == pytest.approx(np.log(1 + (n - 2 + 0.5) / (2 + 0.5)))  # df 2 of 10
    assert weights["the"] < weights["index"] < weights["coffee"]


def test_tokenizer_weight_defaults_to_one_without_idf(model_zips, tmp_path):
    model = model_zips["tokenizer"]
    folder = validate_and_extract(
        model.zip_path,
        tmp_path / "m",
        model_format="TORCH_SCRIPT",
        function_name="SPARSE_TOKENIZE",
        expected_hash=model.hash,
        max_bytes=1 << 30,
    )
    idf = json.loads((folder / "idf.json").read_text())
    del idf["coffee"]
    (folder / "idf.json").write_text(json.dumps(idf))
    runtime = load_runtime(folder, model.config)
    weights = weights_of(runtime.infer(["coffee search"])[0])
    assert weights["coffee"] == 1.0
    assert weights["search"] == pytest.approx(idf["search"])


def test_sparse_runtimes_count_tokens(model_runtimes):
    assert model_runtimes["splade-onnx"].count_tokens(["hello world"]) == [4]
    assert model_runtimes["tokenizer"].max_length == 512


@pytest.mark.parametrize("key", ["splade-onnx", "tokenizer"])
def test_sparse_embedding_format_token_id(model_runtimes, key):
    runtime = model_runtimes[key]
    words = weights_of(runtime.infer(["coffee search"])[0])
    ids = weights_of(runtime.infer(["coffee search"], {"sparse_embedding_format": "token_id"})[0])
    assert ids == {str(runtime.tokenizer.token_id(word)): weight for word, weight in words.items()}
    assert weights_of(runtime.infer(["coffee search"], {"sparse_embedding_format": "WORD"})[0]) == words


def test_sparse_embedding_format_invalid(model_runtimes):
    with pytest.raises(PredictInputError, match=r"No enum constant .*SparseEmbeddingFormat\.INVALID"):
        model_runtimes["splade-onnx"].infer(["x"], {"sparse_embedding_format": "invalid"})


@pytest.mark.parametrize("key", ["splade-torchscript", "splade-onnx"])
def test_splade_padded_batch_equals_texts_alone(model_runtimes, key):
    """Padding never leaks into the max: the sparse graph replaces padded positions instead of masking the logits."""
    runtime = model_runtimes[key]
    texts = ["hello", SENTENCE, "sparse retrieval with opensearch " * 40, "coffee"]
    batch = [weights_of(r) for r in runtime.infer(texts)]
    for text, got in zip(texts, batch, strict=True):
        (alone,) = [weights_of(r) for r in runtime.infer([text])]
        assert list(got) == list(alone)
        assert max(abs(got[t] - alone[t]) for t in alone) < 1e-4
