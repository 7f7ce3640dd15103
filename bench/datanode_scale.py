"""Bench (issue 14): how the embedded data node scales with the number of documents, against raw engines, per size.

For each ``--docs`` size, in a fresh data dir of its own under ``$NEURALPIPE_BENCH_CACHE/datanode-scale`` (default
``/tmp/neuralpipe-bench``), generated documents (seeded, so every run writes the same ones) go through
``neuralpipe serve --roles data`` (own process, loopback HTTP only: the bench measures whatever data node code the
checkout runs) and through raw engines in this process:

- ``text``: English-like text, 30-120 words drawn with Zipf frequencies (exponent 1) from ~50,000 made-up words;
- ``vec``: a 384-d ``knn_vector`` (faiss HNSW, cosinesimil, m 16, ef_construction 100, ef_search 100). Random unit
  vectors by default: they have no structure (every document is about as far from a query as any other), so HNSW
  recall is far lower than on real embeddings, for the node and raw faiss alike (recall@10 ~0.54 at 10,000
  documents): the 0.95 recall goal is for ``--vectors lowrank``, embedding-like vectors (a 32-d structure in
  384-d plus noise: well separated neighbours, recall@10 ~0.99 at 10,000) or ``--minilm-upto N`` (the texts
  embedded with the in-process MiniLM runtime when the size is <= N; slow: ~5 texts/s measured here, the made-up
  words split into many word pieces);
- ``sparse``: a SPLADE-like ``rank_features`` map, 60-120 tokens of a 30,000-token bert-like vocabulary (Zipf
  frequencies, ``##`` subwords), positive lognormal weights.
``--fields`` picks the fields (``--no-vectors`` drops ``vec``: a 1M x 384 HNSW build takes very long on 2 cores).

Measured side by side, every round printed as one JSON line:
1. ingest: ``_bulk`` (500-doc x-ndjson batches, one at a time) + ``POST /<index>/_refresh`` + the first query of the
   first field (the data node builds its HNSW graph there, not during ``_bulk``) vs SQLite inserts of the same JSON
   sources (WAL, synchronous=FULL, one transaction per batch) + faiss ``IndexHNSWFlat.add`` of the same vectors;
   the two sides alternate batch by batch. ``_bulk`` alone is reported too.
2. open: the node stopped cleanly (it saves its segment) and started again on the data dir; seconds from the spawn
   until the first knn, then BM25 ``match``, then ``neural_sparse`` (``query_tokens``) query has answered vs a fresh
   Python process that does what a raw engine needs to answer them (``faiss.read_index`` of a same-parameter graph
   file, ``sqlite3.connect``, ``np.load`` of the BM25 / sparse CSC arrays) and one faiss search; the raw loads
   in this process are shown too.
3. memory: the node's VmRSS after all queries (and again in the restarted node of the last open round, once it
   has answered every query once: its segment is mapped from files) vs the raw size (vectors n x 384 x 4 + text
   postings as int32 doc ids and freqs + sparse postings as int32 doc ids and float32 values); also net of an empty
   data node's RSS. Disk: the data dir vs the same raw size.
4. QPS with 1 and 8 requests in flight: knn vs the HTTP ceiling 1 / (``GET /`` time + raw faiss search time), BM25
   ``match`` (2-4 distinct words drawn by frequency) vs a numpy BM25 over CSC arrays (Lucene's BM25: k1 1.2,
   b 0.75, one-byte length norms, float32 steps), ``neural_sparse`` vs a numpy dot over CSC arrays (Lucene
   FeatureField's 9-bit values); raw sides single-threaded in this process.
5. quality: knn recall@10 of the node and of raw faiss vs exact search (goal >= 0.95), top-10 overlap of BM25 and
   neural_sparse with the raw sides (exact and up to ties at the 10th score) and the largest relative score gap.

    PYTHONPATH=. .venv/bin/python bench/datanode_scale.py --docs 10000,100000 --rounds 2
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE, REPO, drive, free_port, http_json, machine, median, report  # noqa: E402

INDEX = "scale"
DIM = 384
M, EF_CONSTRUCTION, EF_SEARCH = 16, 100, 100
K1, B = 1.2, 0.75
WORDS, TOKENS = 50_000, 30_000
BATCH = 500
ALL_FIELDS = ("vec", "text", "sparse")
GOALS = {  # ratio -> (goal, ">=" or "<=")
    "ingest": (0.5, ">="), "knn_vs_ceiling": (0.8, ">="), "bm25_vs_raw": (0.5, ">="),
    "sparse_vs_raw": (0.5, ">="), "rss_vs_raw": (2.0, "<="), "rss_after_restart_vs_raw": (2.0, "<="),
    "open_vs_raw": (2.0, "<="),
    "knn_recall@10": (0.95, ">="),
}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


# ------------------------------------------------------------------------------------------ the documents


def made_up_word(i: int, consonants: str = "bcdfghklmnprstvz", vowels: str = "aeiou") -> str:
    """Entry ``i`` of a vocabulary of pronounceable words: ``i`` in base 80, one syllable per digit (distinct)."""
    out = ""
    base = len(consonants) * len(vowels)
    while True:
        out += consonants[i % len(consonants)] + vowels[(i // len(consonants)) % len(vowels)]
        i //= base
        if i == 0:
            return out


def zipf_cdf(n: int) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1, dtype=np.float64)
    return np.cumsum(p / p.sum())


def draw(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size)), len(cdf) - 1).astype(np.int32)


@dataclass
class Batch:
    start: int
    words: list[np.ndarray]  # word ids per document, in text order
    tokens: list[np.ndarray]  # sparse token ids per document (distinct)
    weights: list[np.ndarray]  # their weights (float64, rounded as sent)
    vecs: np.ndarray | None  # float64, rounded as sent
    sources: list[str]  # the JSON sources both sides store


class Corpus:
    def __init__(self, seed: int, fields: tuple[str, ...]) -> None:
        self.seed, self.fields = seed, fields
        self.words = np.array([made_up_word(i) for i in range(WORDS)], dtype=object)
        # bert-like: every fifth token is a "##" continuation piece; other syllables than the words'
        self.tokens = [("##" if i % 5 == 4 else "") + made_up_word(i, "jklmnqrstwxy", "aeiouy") for i in range(TOKENS)]
        self.word_cdf, self.token_cdf = zipf_cdf(WORDS), zipf_cdf(TOKENS)
        self.embed: Any = None  # MiniLM runtime when the size asks for real embeddings
        self.lowrank: Any = None  # ``--vectors lowrank``

    def batch(self, start: int, count: int) -> Batch:
        rng = np.random.default_rng([self.seed, start])
        lengths = rng.integers(30, 121, size=count)
        flat = draw(rng, self.word_cdf, int(lengths.sum()))
        words = np.split(flat, np.cumsum(lengths)[:-1])
        tokens, weights = [], []
        for k in rng.integers(60, 121, size=count):
            picked = np.unique(draw(rng, self.token_cdf, int(k) * 2))
            picked = rng.permutation(picked)[: int(k)]
            tokens.append(np.sort(picked))
            weights.append(np.round(rng.lognormal(-0.5, 0.7, size=picked.size), 4) + 0.0001)
        texts = [" ".join(self.words[w].tolist()) for w in words]
        vecs = None
        if "vec" in self.fields:
            if self.embed is not None:
                vecs = self.embed(texts)
            elif self.lowrank is not None:
                vecs = self.lowrank(rng, count)
            else:
                vecs = rng.normal(size=(count, DIM))
            vecs = np.round(vecs / np.linalg.norm(vecs, axis=1, keepdims=True), 6)
        sources = []
        for i in range(count):
            src: dict[str, Any] = {}
            if "text" in self.fields:
                src["text"] = texts[i]
            if "sparse" in self.fields:
                src["sparse"] = {self.tokens[t]: w for t, w in zip(tokens[i].tolist(), weights[i].tolist())}
            if vecs is not None:
                src["vec"] = vecs[i].tolist()
            sources.append(json.dumps(src))
        return Batch(start, words, tokens, weights, vecs, sources)

    def queries(self, n: int) -> tuple[list[list[int]], list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """BM25 queries (2-4 distinct words, drawn by frequency), sparse queries (5-15 distinct tokens, lognormal
        weights) and knn query vectors (random unit; MiniLM embeddings of the BM25 queries with ``embed``)."""
        rng = np.random.default_rng([self.seed, 2**32 - 1])  # no batch starts there
        bm25 = []
        for k in rng.integers(2, 5, size=n):
            picked: list[int] = []
            while len(picked) < k:
                w = int(draw(rng, self.word_cdf, 1)[0])
                if w not in picked:
                    picked.append(w)
            bm25.append(picked)
        sparse = []
        for k in rng.integers(5, 16, size=n):
            toks = np.unique(draw(rng, self.token_cdf, int(k) * 3))[: int(k)]
            sparse.append((toks, np.round(rng.lognormal(-0.5, 0.7, size=toks.size), 4) + 0.0001))
        if self.embed is not None:
            qv = np.asarray(self.embed([" ".join(self.words[q].tolist()) for q in bm25]), dtype=np.float64)
        elif self.lowrank is not None:
            qv = self.lowrank(rng, n)  # held out: drawn like the documents, none of them
        else:
            qv = rng.normal(size=(n, DIM))
        qv = (qv / np.linalg.norm(qv, axis=1, keepdims=True)).astype(np.float32)
        return bm25, sparse, qv


def lowrank_embedder(seed: int, intrinsic: int = 32) -> Any:
    """Embedding-like vectors without a model: a random 32-d point mapped into 384-d by a fixed random matrix, plus
    isotropic noise (real sentence embeddings have such a low intrinsic dimension; exact neighbours are then
    well separated, as with MiniLM, and HNSW reaches the recall it gets on real embeddings)."""
    mix = np.random.default_rng([seed, 2**32 - 2]).normal(size=(intrinsic, DIM))

    def embed(rng: np.random.Generator, count: int) -> np.ndarray:
        return rng.normal(size=(count, intrinsic)) @ mix + 0.06 * math.sqrt(intrinsic) * rng.normal(size=(count, DIM))

    return embed


def minilm_embedder() -> Any:
    from _common import in_process_runtime, package

    rt = in_process_runtime(package("dense", "ONNX"))

    def embed(texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 32):
            out += [r["output"][0]["data"] for r in rt.infer(texts[i : i + 32])]
        return np.asarray(out, dtype=np.float64)

    return embed


# ------------------------------------------------------------------------------ Lucene's numbers, reimplemented


def small_float_int_to_byte4(i: int) -> int:
    """Lucene SmallFloat.intToByte4: the one-byte field length BM25 keeps (exact below 24, 4 significant bits above)."""
    max_int4 = 231  # longToInt4(Integer.MAX_VALUE)
    free = 255 - max_int4
    if i < free:
        return i
    v = i - free
    bits = v.bit_length()
    enc = v if bits < 4 else ((v >> (bits - 4)) & 0x07) | ((bits - 3) << 3)
    return free + enc


def small_float_byte4_to_int(b: int) -> int:
    free = 255 - 231
    if b < free:
        return b
    v = b - free
    bits, shift = v & 0x07, (v >> 3) - 1
    return free + (bits if shift == -1 else (bits | 0x08) << shift)


LENGTHS = np.array([small_float_byte4_to_int(b) for b in range(256)], dtype=np.float32)


def feature_value(values: np.ndarray) -> np.ndarray:
    """The weight Lucene's FeatureField keeps: a float32 with its low 15 bits dropped (9 significant bits)."""
    return (np.asarray(values, dtype=np.float32).view(np.uint32) & np.uint32(0xFFFF8000)).view(np.float32)


# ------------------------------------------------------------------------------------------- the raw engine


class RawEngine:
    """SQLite for the sources, faiss HNSW for the vectors, CSC arrays for BM25 and the sparse dot product."""

    def __init__(self, root: Path, fields: tuple[str, ...]) -> None:
        import faiss

        self.root, self.fields = root, fields
        root.mkdir(parents=True)
        self.db = sqlite3.connect(root / "raw.sqlite3", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, source TEXT NOT NULL)")
        self.hnsw = None
        if "vec" in fields:
            self.hnsw = faiss.IndexHNSWFlat(DIM, M, faiss.METRIC_INNER_PRODUCT)
            self.hnsw.hnsw.efConstruction = EF_CONSTRUCTION
        self._vecs: list[np.ndarray] = []
        self._text: list[Any] = []
        self._sparse: list[Any] = []
        self._lengths: list[np.ndarray] = []

    def insert(self, batch: Batch) -> float:
        """The timed raw side of one batch: SQLite rows (one transaction) + faiss add."""
        rows = [(str(batch.start + i), s) for i, s in enumerate(batch.sources)]
        started = time.perf_counter()
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO docs (id, source) VALUES (?, ?)", rows)
        self.db.execute("COMMIT")
        if self.hnsw is not None and batch.vecs is not None:
            self.hnsw.add(batch.vecs.astype(np.float32))
        return time.perf_counter() - started

    def postings(self, batch: Batch, word_ids: dict[str, int], token_ids: dict[str, int]) -> float:
        """Timed apart (the ``raw_with_postings`` side): what a raw inverted index would also do per batch, from
        the JSON sources: decode, split the text on spaces, count, and build the batch's CSR postings for the
        text and sparse fields (thrown away: ``keep`` builds the query sides' copy from the generator's ids)."""
        import scipy.sparse as sp

        started = time.perf_counter()
        t_rows: list[int] = []
        t_cols: list[int] = []
        s_rows: list[int] = []
        s_cols: list[int] = []
        s_vals: list[float] = []
        for i, src in enumerate(batch.sources):
            doc = json.loads(src)
            if "text" in doc:
                ids = [word_ids[w] for w in doc["text"].split()]
                t_rows += [i] * len(ids)
                t_cols += ids
            for tok, w in doc.get("sparse", {}).items():
                s_rows.append(i)
                s_cols.append(token_ids[tok])
                s_vals.append(w)
        n = len(batch.sources)
        if t_cols:
            sp.csr_matrix((np.ones(len(t_cols), np.int32), (t_rows, t_cols)), shape=(n, WORDS)).tocsc()
        if s_cols:
            sp.csr_matrix((np.asarray(s_vals, np.float32), (s_rows, s_cols)), shape=(n, TOKENS)).tocsc()
        return time.perf_counter() - started

    def keep(self, batch: Batch) -> None:
        """What the raw query sides need afterwards (not timed)."""
        import scipy.sparse as sp

        n = len(batch.sources)
        if batch.vecs is not None:
            self._vecs.append(batch.vecs.astype(np.float32))
        if "text" in self.fields:
            rows = np.repeat(np.arange(n), [len(w) for w in batch.words])
            flat = np.concatenate(batch.words)
            self._text.append(sp.csr_matrix((np.ones(flat.size, dtype=np.int32), (rows, flat)), shape=(n, WORDS)))
            self._lengths.append(np.array([len(w) for w in batch.words], dtype=np.int64))
        if "sparse" in self.fields:
            rows = np.repeat(np.arange(n), [len(t) for t in batch.tokens])
            self._sparse.append(sp.csr_matrix(
                (np.concatenate(batch.weights).astype(np.float32), (rows, np.concatenate(batch.tokens))),
                shape=(n, TOKENS)))

    def finish(self) -> None:
        """Stack the kept parts and save them (the files the raw open side loads)."""
        import faiss
        import scipy.sparse as sp

        self.vecs = np.concatenate(self._vecs) if self._vecs else np.zeros((0, DIM), np.float32)
        self.vecs /= np.maximum(np.linalg.norm(self.vecs, axis=1, keepdims=True), 1e-12)
        self._vecs = []
        arrays: dict[str, np.ndarray] = {}
        if "text" in self.fields:
            csc = sp.vstack(self._text).tocsc()
            csc.sort_indices()
            lengths = np.concatenate(self._lengths)
            table = np.array([small_float_int_to_byte4(i) for i in range(int(lengths.max()) + 1)], dtype=np.uint8)
            arrays.update(text_indptr=csc.indptr.astype(np.int64), text_docs=csc.indices.astype(np.int32),
                          text_freqs=csc.data.astype(np.int32), text_norms=table[lengths],
                          text_sum=np.array([lengths.sum()], dtype=np.int64))
        if "sparse" in self.fields:
            csc = sp.vstack(self._sparse).tocsc()
            csc.sort_indices()
            arrays.update(sparse_indptr=csc.indptr.astype(np.int64), sparse_docs=csc.indices.astype(np.int32),
                          sparse_values=feature_value(csc.data))
        self._text, self._sparse, self._lengths = [], [], []
        for name, arr in arrays.items():
            np.save(self.root / f"{name}.npy", arr)
        self.load_arrays(arrays)
        if self.hnsw is not None:
            self.hnsw.hnsw.efSearch = EF_SEARCH
            faiss.write_index(self.hnsw, str(self.root / "vec.faiss"))

    def load_arrays(self, a: dict[str, np.ndarray]) -> None:
        self.a = a
        self.n = int(self.vecs.shape[0]) if self.vecs.size else int(a["text_norms"].size if "text_norms" in a
                                                                      else a["sparse_docs"].max() + 1)
        if "text_norms" in a:
            n = a["text_norms"].size
            df = np.diff(a["text_indptr"]).astype(np.float64)
            self.idf = np.log(1 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
            avgdl = np.float32(float(a["text_sum"][0]) / n)
            norm_inverse = np.float32(1) / (np.float32(K1) * ((np.float32(1) - np.float32(B))
                                                              + np.float32(B) * LENGTHS / avgdl))
            self.doc_norm_inverse = norm_inverse[a["text_norms"]]

    def raw_bytes(self) -> int:
        out = self.vecs.size * 4
        if "text_docs" in self.a:
            out += self.a["text_docs"].size * 8  # doc id + freq, int32 each
        if "sparse_docs" in self.a:
            out += self.a["sparse_docs"].size * 8  # doc id int32 + value float32
        return int(out)

    def disk_bytes(self) -> int:
        return dir_bytes(self.root)

    # --- queries (single-threaded numpy / faiss) ---
    def knn(self, q: np.ndarray) -> list[int]:
        assert self.hnsw is not None
        return self.hnsw.search(q[None, :], 10)[1][0].tolist()

    def bm25_scores(self, words: list[int]) -> tuple[np.ndarray, np.ndarray]:
        a = self.a
        parts_d, parts_s = [], []
        for w in words:
            s, e = a["text_indptr"][w], a["text_indptr"][w + 1]
            docs = a["text_docs"][s:e]
            weight = self.idf[w]  # boost 1
            freqs = a["text_freqs"][s:e].astype(np.float32)
            parts_d.append(docs)
            parts_s.append(weight - weight / (np.float32(1) + freqs * self.doc_norm_inverse[docs]))
        return merge(parts_d, parts_s, self.n)

    def sparse_scores(self, toks: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = self.a
        parts_d, parts_s = [], []
        for t, w in zip(toks.tolist(), weights.astype(np.float32)):
            s, e = a["sparse_indptr"][t], a["sparse_indptr"][t + 1]
            parts_d.append(a["sparse_docs"][s:e])
            parts_s.append(w * a["sparse_values"][s:e])
        return merge(parts_d, parts_s, self.n)


def merge(parts_d: list[np.ndarray], parts_s: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(doc ids, summed float32 scores) of the docs any part touches."""
    if not parts_d:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    docs = np.concatenate(parts_d)
    scores = np.concatenate(parts_s)
    if docs.size > n // 8:  # dense accumulation is cheaper than sorting this many
        acc = np.zeros(n, dtype=np.float32)
        for d, s in zip(parts_d, parts_s):
            acc[d] += s  # doc ids are distinct within one posting list
        hit = np.flatnonzero(acc)
        return hit, acc[hit]
    uniq, inv = np.unique(docs, return_inverse=True)
    return uniq, np.bincount(inv, weights=scores).astype(np.float32)


def top10(docs: np.ndarray, scores: np.ndarray) -> list[int]:
    if docs.size > 10:
        part = np.argpartition(-scores, 9)[:10]
        docs, scores = docs[part], scores[part]
    order = np.lexsort((docs, -scores))
    return docs[order].tolist()


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------- the data node process

_LIVE: set[subprocess.Popen] = set()


def _cleanup() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _LIVE.discard(proc)


atexit.register(_cleanup)


@dataclass
class Node:
    """``neuralpipe serve --roles data`` on a data dir, its output appended to ``log``."""

    data_dir: Path
    log: Path
    proc: subprocess.Popen | None = None
    url: str = ""
    spawned: float = 0.0
    history: list[str] = field(default_factory=list)

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "neuralpipe.cli", "serve", "--roles", "data", "--host", "127.0.0.1",
               "--port", str(port), "--data-dir", str(self.data_dir)]
        with open(self.log, "a") as fh:
            fh.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n")
            fh.flush()
            self.spawned = time.perf_counter()
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        _LIVE.add(self.proc)

    def call(self, method: str, path: str, body: Any = None, *, timeout: float = 1800.0) -> tuple[int, Any]:
        return http_json(method, self.url + path, body, timeout=timeout)

    def first_answer(self, method: str, path: str, body: Any = None, *, timeout: float = 1800.0) -> Any:
        """Retry until the node answers 200 (it may not listen yet); raises if it exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"data node exited with {self.proc.returncode}; see {self.log}")
            try:
                status, payload = self.call(method, path, body, timeout=max(1.0, deadline - time.monotonic()))
                if status == 200:
                    return payload
                raise RuntimeError(f"{method} {path}: {status} {str(payload)[:300]}")
            except (urllib.error.URLError, ConnectionError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"data node did not answer {path} within {timeout:.0f}s") from None
                time.sleep(0.02)

    def stop(self, timeout: float = 1800.0) -> tuple[float, int]:
        """SIGTERM (a clean close: the node saves its segments); seconds until it exited, and its exit code."""
        assert self.proc is not None
        started = time.perf_counter()
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        _LIVE.discard(self.proc)
        self.proc = None
        return time.perf_counter() - started, rc

    def status_kb(self, key: str) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0


def bulk(node: Node, batch: Batch) -> float:
    lines = []
    for i, src in enumerate(batch.sources):
        lines.append(json.dumps({"index": {"_id": str(batch.start + i)}}))
        lines.append(src)
    payload = ("\n".join(lines) + "\n").encode()
    req = urllib.request.Request(f"{node.url}/{INDEX}/_bulk", data=payload, method="POST",
                                 headers={"Content-Type": "application/x-ndjson"})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=1800) as resp:
        body = json.loads(resp.read())
    elapsed = time.perf_counter() - started
    if body.get("errors"):
        bad = [item for item in body["items"] if "error" in next(iter(item.values()))]
        raise RuntimeError(f"_bulk at doc {batch.start}: {len(bad)} errors, first {bad[0]}")
    return elapsed


def mapping(fields: tuple[str, ...]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if "vec" in fields:
        props["vec"] = {"type": "knn_vector", "dimension": DIM, "method": {
            "name": "hnsw", "engine": "faiss", "space_type": "cosinesimil",
            "parameters": {"m": M, "ef_construction": EF_CONSTRUCTION, "ef_search": EF_SEARCH}}}
    if "text" in fields:
        props["text"] = {"type": "text"}
    if "sparse" in fields:
        props["sparse"] = {"type": "rank_features"}
    return {"settings": {"index.knn": True}, "mappings": {"properties": props}}


# ---------------------------------------------------------------------------------------------- one size


@dataclass
class Queries:
    bodies: dict[str, list[dict[str, Any]]]  # kind -> search bodies
    raw: dict[str, Any]  # kind -> callable(i) -> top-10 ids
    raw_scores: dict[str, Any]  # kind -> callable(i) -> (docs, scores)


def build_queries(corpus: Corpus, raw: RawEngine, n: int) -> Queries:
    bm25, sparse, qv = corpus.queries(n)
    bodies: dict[str, list[dict[str, Any]]] = {}
    fns: dict[str, Any] = {}
    scores: dict[str, Any] = {}
    if "vec" in corpus.fields:
        bodies["knn"] = [{"size": 10, "_source": False, "query": {"knn": {"vec": {"vector": q.tolist(), "k": 10}}}}
                         for q in qv]
        fns["knn"] = lambda i: raw.knn(qv[i])
        exact = exact_top10(raw.vecs, qv)
        fns["exact"] = lambda i: exact[i]
    if "text" in corpus.fields:
        bodies["bm25"] = [{"size": 10, "_source": False,
                           "query": {"match": {"text": " ".join(corpus.words[q].tolist())}}} for q in bm25]
        scores["bm25"] = lambda i: raw.bm25_scores(bm25[i])
        fns["bm25"] = lambda i: top10(*raw.bm25_scores(bm25[i]))
    if "sparse" in corpus.fields:
        bodies["sparse"] = [{"size": 10, "_source": False, "query": {"neural_sparse": {"sparse": {
            "query_tokens": {corpus.tokens[t]: w for t, w in zip(toks.tolist(), ws.tolist())}}}}}
            for toks, ws in sparse]
        scores["sparse"] = lambda i: raw.sparse_scores(*sparse[i])
        fns["sparse"] = lambda i: top10(*raw.sparse_scores(*sparse[i]))
    return Queries(bodies, fns, scores)


def exact_top10(vecs: np.ndarray, qs: np.ndarray) -> list[list[int]]:
    best_s = np.full((len(qs), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(qs), 0), dtype=np.int64)
    for start in range(0, len(vecs), 100_000):
        s = qs @ vecs[start : start + 100_000].T
        cat_s = np.concatenate([best_s, s], axis=1)
        cat_i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + s.shape[1]), s.shape)], axis=1)
        keep = np.argsort(-cat_s, axis=1, kind="stable")[:, :10]
        best_s, best_i = np.take_along_axis(cat_s, keep, 1), np.take_along_axis(cat_i, keep, 1)
    return best_i.tolist()


def raw_open_script(root: Path) -> str:
    return f"""
import json, sqlite3, sys, time
t0 = time.perf_counter()
import numpy as np
from pathlib import Path
root = Path({str(root)!r})
loaded = {{}}
if (root / "vec.faiss").exists():
    import faiss
    g = faiss.read_index(str(root / "vec.faiss"))
    g.search(np.ones((1, {DIM}), dtype=np.float32) / {DIM} ** 0.5, 10)
db = sqlite3.connect(root / "raw.sqlite3")
db.execute("SELECT count(*) FROM docs").fetchone()
for p in sorted(root.glob("*.npy")):
    loaded[p.stem] = np.load(p)
print(json.dumps({{"in_process_seconds": time.perf_counter() - t0}}))
"""


def raw_open_in_process(root: Path) -> float:
    import faiss

    started = time.perf_counter()
    if (root / "vec.faiss").exists():
        g = faiss.read_index(str(root / "vec.faiss"))
        g.search(np.ones((1, DIM), dtype=np.float32) / math.sqrt(DIM), 10)
    db = sqlite3.connect(root / "raw.sqlite3")
    db.execute("SELECT count(*) FROM docs").fetchone()
    for p in sorted(root.glob("*.npy")):
        np.load(p)
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def raw_open_process(root: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", raw_open_script(root)], check=True, capture_output=True, timeout=1800)
    return time.perf_counter() - started


def node_ids(node: Node, bodies: list[dict[str, Any]]) -> list[tuple[list[int], list[float]]]:
    out = []
    for b in bodies:
        status, res = node.call("POST", f"/{INDEX}/_search", b)
        if status != 200:
            raise RuntimeError(f"search {json.dumps(b)[:200]}: {status} {str(res)[:300]}")
        hits = res["hits"]["hits"]
        out.append(([int(h["_id"]) for h in hits], [float(h["_score"]) for h in hits]))
    return out


def agreement(found: list[tuple[list[int], list[float]]], raw_scores: Any, n: int) -> dict[str, float]:
    """Top-10 overlap with the raw side, exact and up to ties at the raw 10th score, and the worst relative gap
    between the node's score and the raw score of the same document."""
    exact, tied, gap = [], [], 0.0
    for i, (ids, scores) in enumerate(found[:n]):
        docs, raw_s = raw_scores(i)
        raw_ids = top10(docs, raw_s)
        score_of = dict(zip(docs.tolist(), raw_s.tolist()))
        tenth = score_of[raw_ids[-1]] if len(raw_ids) == 10 else 0.0
        same = set(ids) & set(raw_ids)
        ok = sum(1 for d in ids if d in same or abs(score_of.get(d, -1.0) - tenth) <= 1e-5 * max(1.0, tenth))
        denom = max(1, len(raw_ids))
        exact.append(len(same) / denom)
        tied.append(min(1.0, ok / denom))
        for d, s in zip(ids, scores):
            if d in score_of:
                gap = max(gap, abs(s - score_of[d]) / max(abs(score_of[d]), 1e-9))
    return {"top10_overlap": round(float(np.mean(exact)), 4),
            "top10_overlap_up_to_ties": round(float(np.mean(tied)), 4), "max_rel_score_gap": float(f"{gap:.3g}")}


def empty_node_rss(base: Path, log: Path) -> int:
    """VmRSS (bytes) of a data node on an empty data dir of its own, after one ``GET /``."""
    work = Path(tempfile.mkdtemp(prefix="empty-", dir=base))
    node = Node(work / "node", log)
    try:
        node.start()
        node.first_answer("GET", "/", timeout=300)
        return node.status_kb("VmRSS") * 1024
    finally:
        if node.proc is not None:
            node.stop()
        shutil.rmtree(work)  # created just above


def run_size(n: int, args: argparse.Namespace, fields: tuple[str, ...], base: Path, empty_rss: int) -> dict[str, Any]:
    size_started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f"docs{n}-", dir=base))  # fresh, ours: removed at the end unless --keep
    log = base / "logs" / f"{work.name}.log"
    say(f"size {n}: data dir {work}, node log {log}")
    corpus = Corpus(args.seed, fields)
    if "vec" in fields and n <= args.minilm_upto:
        corpus.embed = minilm_embedder()
    elif "vec" in fields and args.vectors == "lowrank":
        corpus.lowrank = lowrank_embedder(args.seed)
    raw = RawEngine(work / "raw", fields)
    node = Node(work / "node", log)
    summary: dict[str, Any] = {"docs": n, "fields": ",".join(fields), "vectors": (
        "none" if "vec" not in fields else "MiniLM" if corpus.embed is not None
        else "low-rank + noise" if corpus.lowrank is not None else "random unit")}
    rounds: dict[str, list[float]] = {}

    def line(step: str, rnd: int | None, **values: Any) -> None:
        emit({"bench": "datanode_scale", "docs": n, "step": step, **({"round": rnd} if rnd is not None else {}),
              **values})

    try:
        node.start()
        node.first_answer("GET", "/", timeout=300)
        status, resp = node.call("PUT", f"/{INDEX}", mapping(fields))
        if status != 200:
            raise RuntimeError(f"create index: {status} {resp}")

        # 1. ingest, the two sides alternating batch by batch
        t_bulk = t_raw = t_postings = 0.0
        word_ids = {w: i for i, w in enumerate(corpus.words.tolist())}
        token_ids = {t: i for i, t in enumerate(corpus.tokens)}
        last = time.monotonic()
        for k, start in enumerate(range(0, n, BATCH)):
            batch = corpus.batch(start, min(BATCH, n - start))
            if k % 2 == 0:
                t_bulk += bulk(node, batch)
                t_raw += raw.insert(batch)
            else:
                t_raw += raw.insert(batch)
                t_bulk += bulk(node, batch)
            if "text" in fields or "sparse" in fields:
                t_postings += raw.postings(batch, word_ids, token_ids)
            raw.keep(batch)
            done = start + len(batch.sources)
            if time.monotonic() - last > 10 or done == n:
                last = time.monotonic()
                say(f"size {n}: docs written {done}/{n} (node _bulk {t_bulk:.1f} s, raw {t_raw:.1f} s)")
        raw.finish()  # not timed: stacks and saves the raw query sides' arrays
        queries = build_queries(corpus, raw, args.queries)
        kinds = [k for k in ("knn", "bm25", "sparse") if k in queries.bodies]
        started = time.perf_counter()
        node.first_answer("POST", f"/{INDEX}/_refresh", timeout=3600)
        t_refresh = time.perf_counter() - started
        say(f"size {n}: refreshed in {t_refresh:.1f} s; first queries (the knn one builds the HNSW graph)")
        firsts = {}
        for kind in kinds:
            started = time.perf_counter()
            node.first_answer("POST", f"/{INDEX}/_search", queries.bodies[kind][0], timeout=7200)
            firsts[kind] = time.perf_counter() - started
        t_node = t_bulk + t_refresh + firsts[kinds[0]]
        status, count = node.call("GET", f"/{INDEX}/_count")
        assert status == 200 and count["count"] == n, count
        ingest = {"node_bulk_s": round(t_bulk, 2), "node_refresh_s": round(t_refresh, 2),
                  **{f"node_first_{k}_s": round(v, 2) for k, v in firsts.items()},
                  "raw_sqlite_faiss_s": round(t_raw, 2), "raw_postings_s": round(t_postings, 2),
                  "node_docs_per_s": round(n / t_node, 1), "node_bulk_only_docs_per_s": round(n / t_bulk, 1),
                  "raw_docs_per_s": round(n / t_raw, 1),
                  "ratio_ingest": round(t_raw / t_node, 3), "ratio_bulk_only": round(t_raw / t_bulk, 3),
                  "ratio_ingest_vs_raw_with_postings": round((t_raw + t_postings) / t_node, 3)}
        line("ingest", 1, **ingest)
        rounds["ingest"] = [ingest["ratio_ingest"]]
        rounds["bulk_only"] = [ingest["ratio_bulk_only"]]
        rounds["ingest_vs_raw_with_postings"] = [ingest["ratio_ingest_vs_raw_with_postings"]]
        summary["ingest"] = ingest

        # 5. quality (before the timed loops: it also warms both sides)
        say(f"size {n}: quality pass ({args.queries} queries per kind)")
        quality: dict[str, Any] = {}
        found = {k: node_ids(node, queries.bodies[k]) for k in kinds}
        if "knn" in kinds:
            exact = [queries.raw["exact"](i) for i in range(args.queries)]
            raw_knn = [queries.raw["knn"](i) for i in range(args.queries)]
            quality["knn_recall@10_node"] = round(float(np.mean(
                [len(set(f[0]) & set(e)) / 10 for f, e in zip(found["knn"], exact)])), 4)
            quality["knn_recall@10_raw_faiss"] = round(float(np.mean(
                [len(set(r) & set(e)) / 10 for r, e in zip(raw_knn, exact)])), 4)
            quality["knn_top10_overlap_node_vs_raw_faiss"] = round(float(np.mean(
                [len(set(f[0]) & set(r)) / 10 for f, r in zip(found["knn"], raw_knn)])), 4)
        for kind in ("bm25", "sparse"):
            if kind in kinds:
                quality[kind] = agreement(found[kind], queries.raw_scores[kind], args.queries)
        line("quality", None, **quality)
        summary["quality"] = quality

        # 4. QPS, the sides alternating round by round
        levels = [int(c) for c in args.concurrency.split(",")]
        url = f"{node.url}/{INDEX}/_search"
        for kind in kinds:
            drive(url, queries.bodies[kind][:16], concurrency=2)

        def raw_qps(kind: str) -> float:
            fn = queries.raw[kind]
            started = time.perf_counter()
            for i in range(args.queries):
                fn(i)
            return args.queries / (time.perf_counter() - started)

        def node_qps(kind: str, c: int) -> float:
            if kind == "root":
                res = drive(node.url + "/", [None] * args.queries, concurrency=c, method="GET")
            else:
                res = drive(url, queries.bodies[kind], concurrency=c)
            if res["errors"]:
                raise RuntimeError(f"{kind}: {res['errors'][:2]}")
            return args.queries / res["elapsed"]

        for r in range(1, args.rounds + 1):
            say(f"size {n}: QPS round {r}/{args.rounds}")
            raw_side: dict[str, float] = {}
            node_side: dict[str, float] = {}
            order = ("raw", "node") if r % 2 else ("node", "raw")
            for side in order:
                if side == "raw":
                    raw_side = {k: raw_qps(k) for k in kinds}
                else:
                    node_side = {f"{k}_c{c}": node_qps(k, c) for c in levels for k in ("root", *kinds)}
            values: dict[str, Any] = {f"raw_{k}_qps": round(v, 1) for k, v in raw_side.items()}
            values.update({f"node_{k}_qps": round(v, 1) for k, v in node_side.items()})
            for c in levels:
                if "knn" in kinds:
                    ceiling = 1 / (1 / node_side[f"root_c{c}"] + 1 / raw_side["knn"])
                    values[f"http_ceiling_knn_c{c}_qps"] = round(ceiling, 1)
                    values[f"ratio_knn_vs_ceiling_c{c}"] = round(node_side[f"knn_c{c}"] / ceiling, 3)
                for kind in ("bm25", "sparse"):
                    if kind in kinds:
                        values[f"ratio_{kind}_vs_raw_c{c}"] = round(node_side[f"{kind}_c{c}"] / raw_side[kind], 3)
            line("qps", r, **values)
            for key, value in values.items():
                if key.startswith("ratio_"):
                    rounds.setdefault(key[6:], []).append(value)

        # 3. memory and disk, after all queries
        rss, hwm = node.status_kb("VmRSS") * 1024, node.status_kb("VmHWM") * 1024
        raw_bytes = raw.raw_bytes()
        node_disk = dir_bytes(work / "node")
        memory = {"node_rss_mb": round(rss / 1e6, 1), "node_peak_rss_mb": round(hwm / 1e6, 1),
                  "empty_node_rss_mb": round(empty_rss / 1e6, 1), "raw_size_mb": round(raw_bytes / 1e6, 1),
                  "ratio_rss_vs_raw": round(rss / raw_bytes, 3),
                  "ratio_rss_net_of_empty_node_vs_raw": round((rss - empty_rss) / raw_bytes, 3),
                  "node_disk_mb": round(node_disk / 1e6, 1), "raw_engine_disk_mb": round(raw.disk_bytes() / 1e6, 1),
                  "ratio_disk_vs_raw": round(node_disk / raw_bytes, 3)}
        line("memory", None, **memory)
        summary["memory"] = memory

        # 2. open, the sides alternating round by round
        raw.db.close()
        for r in range(1, args.rounds + 1):
            say(f"size {n}: open round {r}/{args.rounds} (stop, start, first queries)")
            values = {}

            for side in (("raw", "node") if r % 2 else ("node", "raw")):
                if side == "raw":
                    values["raw_process_s"] = round(raw_open_process(raw.root), 3)
                    values["raw_in_process_s"] = round(raw_open_in_process(raw.root), 3)
                    continue
                stop_s, rc = node.stop()
                values.update(node_stop_s=round(stop_s, 2), node_stop_exit_code=rc)
                if rc != 0:  # e.g. its stop watchdog cut the save short: measured as is, said loudly
                    say(f"size {n}: WARNING the node exited with {rc} on SIGTERM after {stop_s:.1f} s; see {log}")
                node.start()
                for kind in kinds:  # one after the other, each timed from the spawn
                    node.first_answer("POST", f"/{INDEX}/_search", queries.bodies[kind][r % args.queries])
                    values[f"node_first_{kind}_s"] = round(time.perf_counter() - node.spawned, 3)
            all_first = values[f"node_first_{kinds[-1]}_s"]
            values["ratio_open_vs_raw"] = round(all_first / values["raw_process_s"], 3)
            values["ratio_open_vs_raw_in_process"] = round(all_first / values["raw_in_process_s"], 3)
            line("open", r, **values)
            for key in ("open_vs_raw", "open_vs_raw_in_process"):
                rounds.setdefault(key, []).append(values[f"ratio_{key}"])
            summary.setdefault("open", []).append(values)
        # 3b. memory of the restarted node (its segment mapped from files) once it has answered every query once
        for kind in kinds:
            res = drive(f"{node.url}/{INDEX}/_search", queries.bodies[kind], concurrency=1)
            if res["errors"]:
                raise RuntimeError(f"{kind} after restart: {res['errors'][:2]}")
        rss_restarted = node.status_kb("VmRSS") * 1024
        memory.update(node_rss_after_restart_mb=round(rss_restarted / 1e6, 1),
                      ratio_rss_after_restart_vs_raw=round(rss_restarted / raw_bytes, 3),
                      ratio_rss_after_restart_net_of_empty_node_vs_raw=round(
                          (rss_restarted - empty_rss) / raw_bytes, 3))
        line("memory_after_restart", None, **{k: v for k, v in memory.items() if "after_restart" in k})
        summary["rss_vs_raw"] = memory["ratio_rss_vs_raw"]
        rounds["rss_vs_raw"] = [memory["ratio_rss_vs_raw"]]
        rounds["rss_net_vs_raw"] = [memory["ratio_rss_net_of_empty_node_vs_raw"]]
        rounds["rss_after_restart_vs_raw"] = [memory["ratio_rss_after_restart_vs_raw"]]
        if "knn" in kinds:
            rounds["knn_recall@10"] = [quality["knn_recall@10_node"]]
        stop_s, rc = node.stop()
        summary["final_stop"] = {"seconds": round(stop_s, 2), "exit_code": rc}
    finally:
        if node.proc is not None:
            node.stop()
        if args.keep:
            say(f"size {n}: kept {work}")
        else:
            shutil.rmtree(work)  # created by this run (mkdtemp above)
    summary["rounds"] = rounds
    summary["seconds"] = round(time.perf_counter() - size_started, 1)
    line("summary", None, seconds=summary["seconds"], ratios={k: v for k, v in rounds.items()})
    return summary


def goal_of(key: str) -> tuple[float, str] | None:
    for name, goal in GOALS.items():
        if key == name or key.startswith(name + "_c"):
            return goal
    return None


def print_summary(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    for res in results:
        rows: list[tuple[str, Any]] = []
        for key, values in res["rounds"].items():
            med = median(values)
            goal = goal_of(key)
            verdict = ""
            if goal is not None:
                ok = med >= goal[0] if goal[1] == ">=" else med <= goal[0]
                verdict = f"goal {goal[1]} {goal[0]}: {'met' if ok else 'NOT met'}"
            rows.append((f"{key:32s}", f"median {med:8.3f}  rounds {values}  {verdict}"))
        q = res.get("quality", {})
        if "knn_recall@10_raw_faiss" in q:
            rows.append((f"{'knn recall@10 of raw faiss':32s}", f"{q['knn_recall@10_raw_faiss']} (top-10 overlap "
                         f"node vs raw faiss {q['knn_top10_overlap_node_vs_raw_faiss']})"))
        for kind in ("bm25", "sparse"):
            if kind in q:
                rows.append((f"{kind + ' agreement with raw':32s}", q[kind]))
        rows.append((f"{'ingest':32s}", res["ingest"]))
        rows.append((f"{'memory / disk':32s}", res["memory"]))
        rows.append((f"{'seconds for this size':32s}", res["seconds"]))
        report(f"datanode_scale.py {res['docs']} docs, fields {res['fields']} (vectors: {res['vectors']}), "
               f"{args.queries} queries per kind, {args.rounds} rounds, concurrency {args.concurrency}", rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", default="10000", help="comma-separated sizes, e.g. 10000,100000,1000000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200, help="queries per kind (knn, BM25, sparse)")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--fields", default=",".join(ALL_FIELDS), help=f"any of {', '.join(ALL_FIELDS)}")
    parser.add_argument("--no-vectors", action="store_true", help="drop the vec field (BM25 / rank_feature only)")
    parser.add_argument("--minilm-upto", type=int, default=0,
                        help="embed the texts with MiniLM (in-process runtime) for sizes <= N, else random vectors")
    parser.add_argument("--vectors", choices=("random", "lowrank"), default="random",
                        help="random unit vectors (no structure: HNSW's hardest case, recall far below real "
                             "embeddings') or low-rank + noise vectors (32-d structure in 384-d, embedding-like)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep each size's data dir (default: removed)")
    args = parser.parse_args(argv)
    fields = tuple(f for f in ALL_FIELDS if f in args.fields.split(",") and not (args.no_vectors and f == "vec"))
    unknown = set(args.fields.split(",")) - set(ALL_FIELDS)
    if unknown or not fields:
        parser.error(f"--fields [{args.fields}]: valid fields are {', '.join(ALL_FIELDS)}")
    sizes = [int(s) for s in args.docs.split(",")]
    if min(sizes) < 10 or args.queries < 1 or args.rounds < 1:
        parser.error("--docs sizes must be >= 10, --queries and --rounds >= 1")

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks: nodes stopped, our dirs removed

    signal.signal(signal.SIGTERM, on_signal)
    base = CACHE / "datanode-scale"
    (base / "logs").mkdir(parents=True, exist_ok=True)
    say(f"machine: {machine()}")
    empty_rss = empty_node_rss(base, base / "logs" / "empty-node.log")
    results, failed = [], []
    for n in sizes:
        try:
            results.append(run_size(n, args, fields, base, empty_rss))
        except Exception as exc:  # the next sizes still run; the summary says which size failed
            say(f"size {n} FAILED: {type(exc).__name__}: {exc}")
            failed.append(n)
    print_summary(results, args)
    if failed:
        print(f"== FAILED sizes: {failed} (see the messages above and the node logs in {base / 'logs'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
