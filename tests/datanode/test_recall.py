"""HNSW recall on real MiniLM embeddings: the data node's knn (faiss HNSW) against exact search.

Sentences come from the docstrings of Python's standard library (no evaluation data). Embeddings are computed
here with sentence-transformers from the offline all-MiniLM-L6-v2 weights."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opensearchpy import helpers

from mlnode.offline import minilm_dir
from tests.fixtures.datanode import os_client

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

N_DOCS, N_QUERIES, K = 2000, 100, 10
MODULES = ["collections", "json", "os", "re", "string", "textwrap", "argparse", "asyncio", "logging", "pathlib",
           "typing", "functools", "itertools", "datetime", "email", "http.client", "urllib.parse", "unittest",
           "subprocess", "threading", "shutil", "tarfile", "zipfile", "csv", "sqlite3", "decimal", "fractions",
           "statistics", "random", "heapq", "bisect", "enum", "dataclasses", "contextlib", "inspect", "ast", "pickle",
           "copy", "pprint", "difflib", "calendar", "socket", "ssl", "selectors", "configparser", "tempfile", "io",
           "codecs", "locale", "doctest", "pdb", "timeit", "tokenize", "operator", "numbers", "math", "weakref",
           "types", "queue", "hashlib", "secrets", "base64", "struct", "uuid", "ipaddress", "mimetypes", "smtplib",
           "gzip", "bz2", "lzma", "zlib", "platform", "warnings", "traceback", "signal", "multiprocessing"]


def stdlib_sentences() -> list[str]:
    found: set[str] = set()
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj)
            for sentence in re.split(r"(?<=[.!?])\s+", (doc or "").replace("\n", " ")):
                if 30 <= len(sentence.strip()) <= 300:
                    found.add(sentence.strip())
    return sorted(found)


@pytest.fixture(scope="module")
def embeddings() -> tuple[np.ndarray, np.ndarray]:
    sentences = stdlib_sentences()
    assert len(sentences) >= N_DOCS + N_QUERIES
    rng = np.random.default_rng(0)
    picked = [sentences[i] for i in rng.choice(len(sentences), size=N_DOCS + N_QUERIES, replace=False)]
    # the embeddings are an input of this test, not what it checks: cache them once per machine
    root = Path(os.environ.get("NEURALPIPE_TEST_MODEL_CACHE", Path.home() / ".cache" / "neuralpipe" / "test-models"))
    key = hashlib.sha256("\n".join([str(minilm_dir()), *picked]).encode()).hexdigest()[:16]
    cached = root / f"datanode-recall-minilm-{key}.npy"
    if cached.exists():
        vectors = np.load(cached)
    else:
        from sentence_transformers import SentenceTransformer  # here: only a cache miss needs torch and the model

        model = SentenceTransformer(str(minilm_dir()), device="cpu")
        vectors = np.asarray(model.encode(picked, batch_size=64, normalize_embeddings=True), dtype=np.float32)
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached.with_suffix(".tmp.npy"), vectors)
        os.replace(cached.with_suffix(".tmp.npy"), cached)
    return vectors[:N_DOCS], vectors[N_DOCS:]


def test_hnsw_recall_at_10_and_ef_search(data_node: Any, embeddings: tuple[np.ndarray, np.ndarray]) -> None:
    docs, queries = embeddings
    client = os_client(data_node.url)
    client.indices.create(index="mini", body={"settings": {"index.knn": True}, "mappings": {"properties": {
        "emb": {"type": "knn_vector", "dimension": 384,
                "method": {"name": "hnsw", "engine": "faiss", "space_type": "cosinesimil",
                           "parameters": {"m": 16, "ef_construction": 100}}}}}})
    ok, _ = helpers.bulk(client, ({"_index": "mini", "_id": str(i), "emb": v.tolist()} for i, v in enumerate(docs)),
                         chunk_size=500, refresh=True, request_timeout=120)
    assert ok == N_DOCS
    exact = np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :K]

    def recall(ef_search: int | None) -> float:
        hits = 0
        for q, truth in zip(queries, exact):
            knn: dict[str, Any] = {"vector": q.tolist(), "k": K}
            if ef_search is not None:
                knn["method_parameters"] = {"ef_search": ef_search}
            res = client.search(index="mini", body={"size": K, "_source": False, "query": {"knn": {"emb": knn}}})
            hits += len({int(h["_id"]) for h in res["hits"]["hits"]} & set(truth.tolist()))
        return hits / (K * len(queries))

    default = recall(None)      # the mapping's ef_search (100)
    low = recall(K)             # ef_search = k: the smallest beam faiss allows
    high = recall(256)
    print(f"recall@10: ef_search=10 {low:.3f}, default(100) {default:.3f}, 256 {high:.3f}")
    assert default >= 0.95 and high >= 0.95
    assert low < high  # method_parameters.ef_search reaches the graph search
    client.close()
