"""A predict request tokenizes each of its texts exactly once: the batching queue packs batches by the lengths of the
encodings it made when the request arrived, and the runtime runs those same encodings (issue 9)."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opensearchpy import OpenSearch

from mlnode import keys
from mlnode.runtimes.tokenization import TextTokenizer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LONG = " ".join(f"word{i} neural search" for i in range(300))  # longer than every model's max length
TEXTS = ["The capital of France is Paris.", LONG, "OpenSearch", "The capital of France is Paris!"]
TOKENIZING = ("encodings", "encode", "count_tokens")  # the TextTokenizer methods that run the tokenizer


class CountingTokenizer:
    """Wraps a runtime's tokenizer: every text any tokenizing method sees is counted; everything else is delegated."""

    def __init__(self, inner: TextTokenizer) -> None:
        self.inner = inner
        self.seen: collections.Counter[Any] = collections.Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in TOKENIZING:
            return attr

        def counted(texts: Any, *args: Any) -> Any:
            with self._lock:
                self.seen.update(texts)
            return attr(texts, *args)

        return counted


@pytest.fixture
def client(ml_node) -> Iterator[OpenSearch]:
    client = OpenSearch(hosts=[ml_node.url], timeout=300)
    yield client
    client.close()


@pytest.mark.parametrize(
    ("key", "algorithm"), [("dense", "text_embedding"), ("sparse", "sparse_encoding"), ("tokenizer", "sparse_tokenize")]
)
def test_each_text_is_tokenized_once_per_predict(ml_node, client, key, algorithm):
    model_id = ml_node.model_ids[key]
    runtime = ml_node.node.app[keys.DEPLOYMENTS].get(model_id).runtime
    expected = client.plugins.ml.predict(algorithm_name=algorithm, model_id=model_id, body={"text_docs": TEXTS})
    counting = CountingTokenizer(runtime.tokenizer)
    runtime.tokenizer = counting
    try:
        got = client.plugins.ml.predict(algorithm_name=algorithm, model_id=model_id, body={"text_docs": TEXTS})
    finally:
        runtime.tokenizer = counting.inner
    assert counting.seen == collections.Counter(TEXTS)  # the two "Paris" texts differ by one character
    assert got == expected  # the same answer as without the counter
