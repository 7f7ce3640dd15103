"""Bench: memory and query cost of the data node's text and sparse postings (issue 14), in process.

Builds one index of ``--docs`` documents through ``datanode.index.Index`` (no HTTP, no SQLite): a generated text
(20-60 words from a Zipf-like vocabulary of 5,000 made-up words) and a SPLADE-like ``rank_features`` map (30-80 of
30,000 tokens), as ``bench/datanode_restart.py`` does, then reports
- the growth of the process's resident memory (VmRSS) over the build, next to the raw size of the postings
  (4-byte slot + 4-byte frequency per (term, document), 4 bytes per position, 1 norm byte per document, 4-byte
  slot + 4-byte weight per (token, document));
- per round, alternating: A = the data node's core, ``Executor.sparse_hits`` where the checkout has it (else
  ``Executor.run``), and its top 10, for a 3-word ``match`` (and a 5-token ``rank_feature`` bool); B = the
  raw numpy core on the same numbers (B for match: CSC columns of the 3 terms, BM25 per posting, summed with
  ``np.bincount``; B for features: a scipy CSC dot product), each over the same queries; ratio B/A of the time
  (= A's QPS / B's QPS).

Run it once per checkout to compare memory (the code under test is whatever ``datanode`` imports):

    PYTHONPATH=. .venv/bin/python bench/datanode_postings.py --docs 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median  # noqa: E402
from datanode_restart import word  # noqa: E402  (the same made-up vocabulary as the restart bench)

from datanode import similarity  # noqa: E402
from datanode.index import Index  # noqa: E402
from datanode.query import Executor  # noqa: E402

VOCAB, SPARSE_VOCAB = 5_000, 30_000
MAPPINGS = {"properties": {"text": {"type": "text"}, "sparse": {"type": "rank_features"}}}


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    words = [word(i) for i in range(VOCAB)]
    zipf = 1.0 / np.arange(1, VOCAB + 1)
    zipf /= zipf.sum()
    texts, sparse = [], []
    for _ in range(args.docs):
        texts.append(" ".join(words[j] for j in rng.choice(VOCAB, size=int(rng.integers(20, 61)), p=zipf)))
        tokens = rng.choice(SPARSE_VOCAB, size=int(rng.integers(30, 81)), replace=False)
        sparse.append({f"s{t}": float(w) for t, w in zip(tokens, rng.random(tokens.size) * 3 + 0.01)})
    index = Index("bench", "uuid", {"index.number_of_shards": "1"}, {"mappings": MAPPINGS}["mappings"], 0)
    before = rss_kib()
    started = time.perf_counter()
    for i in range(args.docs):
        index.put(str(i), index.mapping.parse({"text": texts[i], "sparse": sparse[i]}, str(i)))
    build = time.perf_counter() - started
    grown = rss_kib() - before

    # the raw numbers, and the raw engine: CSC matrices over the same slots
    analyzer_terms = [t.split() for t in texts]
    vocab = {w: k for k, w in enumerate(words)}
    rows, cols, tfs, lengths = [], [], [], np.zeros(args.docs, dtype=np.int64)
    for slot, terms in enumerate(analyzer_terms):
        uniq, counts = np.unique([vocab[t] for t in terms], return_counts=True)
        rows.append(np.full(uniq.size, slot))
        cols.append(uniq)
        tfs.append(counts)
        lengths[slot] = len(terms)
    text_csc = sp.csc_matrix((np.concatenate(tfs).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(args.docs, VOCAB))
    norm_bytes = np.array([similarity.int_to_byte4(int(n)) for n in lengths], dtype=np.uint8)
    s_rows = np.concatenate([np.full(len(s), k) for k, s in enumerate(sparse)])
    s_cols = np.concatenate([[int(t[1:]) for t in s] for s in sparse])
    s_vals = similarity.decode_feature(np.concatenate([list(s.values()) for s in sparse]).astype(np.float32))
    feat_csc = sp.csc_matrix((s_vals, (s_rows, s_cols)), shape=(args.docs, SPARSE_VOCAB))
    raw_bytes = text_csc.nnz * 8 + int(lengths.sum()) * 4 + args.docs + feat_csc.nnz * 8
    print(f"== datanode_postings.py --docs {args.docs}: built in {build:.1f} s; VmRSS grew {grown / 1024:.0f} MiB; "
          f"raw postings {raw_bytes / 2**20:.0f} MiB; ratio {grown * 1024 / raw_bytes:.2f}; "
          f"peak VmHWM {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

    queries = [rng.choice(200, size=3, replace=False) + 20 for _ in range(args.queries)]  # mid-frequency words
    fqueries = [rng.choice(SPARSE_VOCAB, size=5, replace=False) for _ in range(args.queries)]
    avgdl = similarity.avg_length(int(lengths.sum()), args.docs)

    def raw_match(q: np.ndarray) -> np.ndarray:
        out = np.zeros(args.docs, dtype=np.float32)
        for t in q.tolist():
            lo, hi = text_csc.indptr[t], text_csc.indptr[t + 1]
            slots = text_csc.indices[lo:hi]
            w = similarity.idf(hi - lo, args.docs)
            out += np.bincount(slots, similarity.bm25(text_csc.data[lo:hi], norm_bytes[slots], weight=w, avgdl=avgdl),
                               minlength=args.docs).astype(np.float32)
        top = np.argpartition(-out, 10)[:10]
        return top[np.argsort(-out[top])]

    def raw_features(q: np.ndarray) -> np.ndarray:
        scores = np.asarray(feat_csc[:, q].sum(axis=1)).ravel()
        top = np.argpartition(-scores, 10)[:10]
        return top[np.argsort(-scores[top])]

    sparse_hits = getattr(Executor, "sparse_hits", None)  # the node's sparse path, where this checkout has one

    def ours(body: dict[str, object]) -> np.ndarray:
        found = sparse_hits(Executor(index), body) if sparse_hits is not None else None
        if found is not None:  # matched slots and scores only
            hits, scores = found
            top = np.argpartition(-scores, 10)[:10] if hits.size > 10 else np.arange(hits.size)
            return hits[top[np.argsort(-scores[top], kind="stable")]]
        mask, scores = Executor(index).run(body)
        hits = np.flatnonzero(mask)
        top = hits[np.argpartition(-scores[hits], min(10, hits.size - 1))[:10]] if hits.size > 10 else hits
        return top[np.argsort(-scores[top], kind="stable")]

    match_bodies = [{"match": {"text": " ".join(words[t] for t in q.tolist())}} for q in queries]
    feat_bodies = [{"bool": {"should": [{"rank_feature": {"field": f"sparse.s{t}", "linear": {}}} for t in q.tolist()]}}
                   for q in fqueries]
    for label, a_side, b_side in [
            ("match", lambda: [ours(b) for b in match_bodies], lambda: [raw_match(q) for q in queries]),
            ("rank_feature", lambda: [ours(b) for b in feat_bodies], lambda: [raw_features(q) for q in fqueries])]:
        a_side(), b_side()  # warm
        ratios, a_times, b_times = [], [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            a_side()
            t1 = time.perf_counter()
            b_side()
            t2 = time.perf_counter()
            a_times.append((t1 - t0) / args.queries)
            b_times.append((t2 - t1) / args.queries)
            ratios.append(b_times[-1] / a_times[-1])
        print(f"   {label}: data node QPS / raw QPS {median(ratios):.2f} (rounds: "
              f"{', '.join(f'{r:.2f}' for r in ratios)}); A {', '.join(f'{t * 1e3:.2f}' for t in a_times)} ms/query; "
              f"B {', '.join(f'{t * 1e3:.2f}' for t in b_times)} ms/query")


if __name__ == "__main__":
    main()
