"""IDF for SPARSE_TOKENIZE models, computed from a corpus the user names.

Formula (BM25 / Lucene's idf): ``idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))`` where ``N`` is the
number of documents and ``df(t)`` the number of documents whose token ids (WordPiece/BPE ids from the
model's ``tokenizer.json``, special tokens excluded) contain ``t``. Every vocabulary token gets a value,
so a token never seen in the corpus gets the largest idf (the BM25 reading of "rare"), not ML Commons'
fallback 1.0, which only applies to tokens missing from ``idf.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

_BATCH = 512


class CorpusError(ValueError):
    """The corpus file cannot be read as JSONL or plain text lines."""


def iter_corpus(corpus_path: Path, *, text_field: str = "text") -> Iterator[str]:
    """Yield the documents of a corpus: JSONL (one object per line, ``text_field`` and, when present, a
    ``title`` prepended) or plain text (one document per non-blank line)."""
    corpus_path = Path(corpus_path)
    with corpus_path.open(encoding="utf-8") as handle:
        first = ""
        lines = iter(handle)
        for first in lines:
            if first.strip():
                break
        jsonl = corpus_path.suffix in {".jsonl", ".ndjson"} or first.lstrip().startswith("{")
        for number, line in enumerate(_chain(first, lines), start=1):
            if not line.strip():
                continue
            if not jsonl:
                yield line.strip()
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"corpus [{corpus_path}] line {number}: not JSON ({exc.msg})") from exc
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise CorpusError(f"corpus [{corpus_path}] line {number}: no string field [{text_field}]")
            title = record.get("title")
            yield f"{title} {record[text_field]}" if isinstance(title, str) and title else record[text_field]


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    if first:
        yield first
    yield from rest


def bm25_idf(doc_freq: np.ndarray, n_docs: int) -> np.ndarray:
    """Lucene's BM25 idf, elementwise."""
    return np.log1p((n_docs - doc_freq + 0.5) / (doc_freq + 0.5))


def build_idf(corpus_path: Path, tokenizer_json: Path, *, text_field: str = "text") -> dict[str, float]:
    """Return ``{token: idf}`` for every non-special vocabulary token of ``tokenizer_json``."""
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    special = {tok.content for tok in tokenizer.get_added_tokens_decoder().values() if tok.special}
    size = max(vocab.values()) + 1
    doc_freq = np.zeros(size, dtype=np.int64)
    n_docs = 0
    batch: list[str] = []

    def flush() -> None:
        for encoding in tokenizer.encode_batch(batch, add_special_tokens=False):
            ids = np.unique(np.asarray(encoding.ids, dtype=np.int64))
            doc_freq[ids] += 1

    for text in iter_corpus(Path(corpus_path), text_field=text_field):
        batch.append(text)
        n_docs += 1
        if len(batch) >= _BATCH:
            flush()
            batch = []
    if batch:
        flush()
    if n_docs == 0:
        raise CorpusError(f"corpus [{corpus_path}] holds no documents")
    idf = bm25_idf(doc_freq.astype(np.float64), n_docs)
    return {
        token: float(idf[index])
        for token, index in sorted(vocab.items(), key=lambda item: item[1])
        if token not in special and not math.isnan(idf[index])
    }
