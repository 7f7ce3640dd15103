"""TEXT_EMBEDDING runtimes over packaged all-MiniLM-L6-v2 against sentence-transformers itself."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from mlnode.offline import minilm_dir
from mlnode.packaging import package_model
from mlnode.runtimes import backends, load_runtime
from mlnode.zipcheck import validate_and_extract

pytestmark = [pytest.mark.integration]

LONG_TEXT = " ".join(f"word{i} neural search with opensearch" for i in range(200))  # ~1,400 tokens
TEXTS = [
    "The capital of France is Paris.",
    "A man is playing a guitar on stage.",
    LONG_TEXT,
    "OpenSearch",
    "Neural search turns text into dense vectors with an embedding model.",
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    return model.encode(TEXTS, convert_to_numpy=True)


def vectors(results: list[dict]) -> np.ndarray:
    return np.array([r["output"][0]["data"] for r in results], dtype=np.float64)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("key", ["minilm-torchscript", "minilm-onnx"])
def test_minilm_matches_sentence_transformers(model_runtimes, reference, key):
    runtime = model_runtimes[key]
    results = runtime.infer(TEXTS)
    assert [r["output"][0]["name"] for r in results] == ["sentence_embedding"] * len(TEXTS)
    assert all(r["output"][0]["shape"] == [384] and r["output"][0]["data_type"] == "FLOAT32" for r in results)
    assert cosines(vectors(results), reference).min() >= 0.9999
    assert runtime.max_length == 256
    assert runtime.batchable and runtime.function_name == "TEXT_EMBEDDING"


@pytest.mark.parametrize("key", ["minilm-torchscript", "minilm-onnx"])
def test_long_text_is_truncated_not_rejected(model_runtimes, key):
    runtime = model_runtimes[key]
    assert runtime.count_tokens([LONG_TEXT])[0] > 512
    alone = vectors(runtime.infer([LONG_TEXT]))
    assert alone.shape == (1, 384)
    assert np.isclose(np.linalg.norm(alone), 1.0, atol=1e-5)


def test_count_tokens_counts_special_tokens_untruncated(model_runtimes):
    runtime = model_runtimes["minilm-onnx"]
    assert runtime.count_tokens(["OpenSearch", "hello world"]) == [5, 4]  # [CLS] open ##sear ##ch [SEP]


def test_batch_equals_one_by_one(model_runtimes):
    runtime = model_runtimes["minilm-onnx"]
    batched = vectors(runtime.infer(TEXTS))
    single = np.vstack([vectors(runtime.infer([t])) for t in TEXTS])
    assert np.abs(batched - single).max() < 1e-5


def test_int8_onnx_close_to_fp32(model_runtimes, reference):
    runtime = model_runtimes["minilm-int8-onnx"]
    got = cosines(vectors(runtime.infer(TEXTS)), reference)
    # measured: 0.9990 (long text) .. 0.9997; quantisation costs a little, not the meaning
    assert got.min() >= 0.995
    assert got.mean() >= 0.998


@pytest.mark.parametrize("key", ["minilm-torchscript", "minilm-onnx"])
def test_concurrent_calls_from_threads_agree(model_runtimes, key):
    runtime = model_runtimes[key]
    texts = [TEXTS[0], TEXTS[1], TEXTS[4]]
    expected = vectors(runtime.infer(texts))
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda i: vectors(runtime.infer(texts[i % 3 :] + texts[: i % 3])), range(6)))
    for i, got in enumerate(results):
        results[i] = np.roll(got, i % 3, axis=0)
    for got in results:
        assert np.abs(got - expected).max() < 1e-5


def test_query_prefix_from_model_config(model_zips, tmp_path):
    model = model_zips["minilm-onnx"]
    folder = validate_and_extract(
        model.zip_path,
        tmp_path / "m",
        model_format="ONNX",
        function_name="TEXT_EMBEDDING",
        expected_hash=model.hash,
        max_bytes=1 << 30,
    )
    doc = {**model.config, "model_config": {**model.config["model_config"], "query_prefix": "query: "}}
    runtime = load_runtime(folder, doc)
    plain = vectors(runtime.infer(["query: what is paris"]))
    prefixed = vectors(runtime.infer(["what is paris"], {"content_type": "QUERY"}))
    assert np.abs(plain - prefixed).max() < 1e-6


@pytest.mark.slow
def test_torchscript_huggingface_framework_pools_in_the_runtime(tmp_path, reference):
    """TORCH_SCRIPT with framework_type huggingface_transformers: the graph returns token embeddings and
    the runtime applies pooling_mode + normalize_result, as ML Commons does."""
    model = package_model(
        minilm_dir(),
        tmp_path,
        function_name="TEXT_EMBEDDING",
        model_format="TORCH_SCRIPT",
        name="minilm-hf",
        framework_type="huggingface_transformers",
    )
    assert model.config["model_config"]["framework_type"] == "huggingface_transformers"
    folder = validate_and_extract(
        model.zip_path,
        tmp_path / "m",
        model_format="TORCH_SCRIPT",
        function_name="TEXT_EMBEDDING",
        expected_hash=model.hash,
        max_bytes=1 << 30,
    )
    runtime = load_runtime(folder, model.config)
    assert cosines(vectors(runtime.infer(TEXTS)), reference).min() >= 0.9999
    raw = load_runtime(
        folder, {**model.config, "model_config": {**model.config["model_config"], "normalize_result": False}}
    )
    norms = np.linalg.norm(vectors(raw.infer(TEXTS)), axis=1)
    assert norms.min() > 1.05  # MiniLM's mean-pooled vectors are not unit length before normalisation


def test_backends_take_the_configured_intra_op_threads(model_zips, model_runtimes, monkeypatch):

    monkeypatch.delenv("NEURALPIPE_INTRA_OP_THREADS", raising=False)
    onnx_file = next(model_runtimes["minilm-onnx"].model_dir.rglob("*.onnx"))
    pt_file = next(model_runtimes["minilm-torchscript"].model_dir.rglob("*.pt"))
    before = torch.get_num_threads()
    try:
        backends.set_intra_op_threads(1)
        session = backends.OnnxBackend(onnx_file)._session
        assert session.get_session_options().intra_op_num_threads == 1
        backends.TorchScriptBackend(pt_file)
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("NEURALPIPE_INTRA_OP_THREADS", "2")  # the environment overrides the setting
        assert backends.OnnxBackend(onnx_file)._session.get_session_options().intra_op_num_threads == 2
    finally:
        backends.set_intra_op_threads(0)
        torch.set_num_threads(before)
