"""Bench: restart time of the embedded data node on a mixed index (issue 11, "Must show"), side by side, per round.

The data dir holds one index of ``--docs`` documents, each with a 384-d random unit vector (faiss HNSW, cosinesimil,
m 16), a generated text (20-60 words drawn from a Zipf-like vocabulary of 5,000 made-up words) and a SPLADE-like
sparse map (30-80 of 30,000 tokens, positive weights) in a ``rank_features`` field. It is built once through the data
node itself and saved by its clean close, in ``$NEURALPIPE_BENCH_CACHE/datanode-restart`` (default
``/tmp/neuralpipe-bench``).

Each round, alternating:
- A: ``DataNode(dir)`` and its first knn query (k 10), then its first BM25 ``match`` query, then its first
  ``rank_feature`` query: the time until each of them has answered, from the start of the open.
- B: the raw floor: ``faiss.read_index`` of the index's graph file, ``sqlite3.connect`` and reading every document
  row (id and source text, not decoded), and, as a second floor, also ``json.loads`` of every source.
Ratio A/B per round; the median over rounds is reported next to every round's value.

    PYTHONPATH=. .venv/bin/python bench/datanode_restart.py --docs 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE, median, report  # noqa: E402

from datanode.node import DataNode, WriteOp  # noqa: E402

DIM = 384
INDEX = "corpus"
VOCAB, SPARSE_VOCAB = 5_000, 30_000
MAPPING = {"settings": {"index.knn": True, "index.number_of_replicas": 0}, "mappings": {"properties": {
    "text": {"type": "text"},
    "sparse": {"type": "rank_features"},
    "v": {"type": "knn_vector", "dimension": DIM, "method": {
        "name": "hnsw", "engine": "faiss", "space_type": "cosinesimil",
        "parameters": {"m": 16, "ef_construction": 40}}},
}}}


def word(i: int) -> str:
    """A pronounceable made-up word for vocabulary entry ``i`` (distinct for distinct ``i``)."""
    consonants, vowels = "bcdfghklmnprstvz", "aeiou"
    out = ""
    while True:
        out += consonants[i % 16] + vowels[(i // 16) % 5]
        i //= 80
        if i == 0:
            return out


def documents(start: int, count: int, rng: np.random.Generator) -> list[WriteOp]:
    words = [word(i) for i in range(VOCAB)]
    ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
    p_word = (1 / ranks) / (1 / ranks).sum()
    vecs = rng.normal(size=(count, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ops = []
    for i in range(count):
        text = " ".join(words[w] for w in rng.choice(VOCAB, size=int(rng.integers(20, 61)), p=p_word))
        tokens = rng.choice(SPARSE_VOCAB, size=int(rng.integers(30, 81)), replace=False)
        weights = np.round(rng.gamma(1.5, 0.6, size=tokens.size) + 0.01, 4)
        sparse = {f"t{t}": float(w) for t, w in zip(tokens.tolist(), weights.tolist())}
        ops.append(WriteOp("index", INDEX, str(start + i), source={
            "text": text, "sparse": sparse, "v": np.round(vecs[i], 6).tolist()}))
    return ops


def build(target: Path, n_docs: int) -> None:
    """The fixture data dir, written through the data node and saved by its clean close (built once)."""
    if (target / "complete").exists():
        return
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    node = DataNode(tmp)
    node.create_index(INDEX, MAPPING)
    rng = np.random.default_rng(0)
    for start in range(0, n_docs, 2000):
        results = node.write(documents(start, min(2000, n_docs - start), rng))
        assert all("error" not in r for r in results), [r for r in results if "error" in r][:1]
    node.refresh(INDEX)
    # touch every field once, so the clean close saves the index exactly as a served index would be saved
    node.search(INDEX, {"size": 1, "query": {"match": {"text": word(3)}}})
    node.close()
    (tmp / "complete").write_text(f"{n_docs} docs, built in {time.perf_counter() - started:.0f} s\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def graph_file(data_dir: Path) -> Path:
    node = DataNode(data_dir)
    uuid = node.index(INDEX).uuid
    node.close()
    return data_dir / "indices" / uuid / "vec-0.faiss"


def data_node_open(data_dir: Path, query: list[float]) -> tuple[float, float, float]:
    """Seconds from the start of ``DataNode(dir)`` until its first knn, first match and first rank_feature query
    have answered (one after the other)."""
    started = time.perf_counter()
    node = DataNode(data_dir)
    knn = node.search(INDEX, {"size": 10, "_source": False, "query": {"knn": {"v": {"vector": query, "k": 10}}}})
    t_knn = time.perf_counter() - started
    match = node.search(INDEX, {"size": 10, "_source": False, "query": {"match": {"text": f"{word(7)} {word(900)}"}}})
    t_match = time.perf_counter() - started
    feature = node.search(INDEX, {"size": 10, "_source": False,
                                  "query": {"rank_feature": {"field": "sparse.t17", "linear": {}}}})
    t_feature = time.perf_counter() - started
    assert len(knn["hits"]["hits"]) == 10 and match["hits"]["hits"] and feature["hits"]["hits"]
    node.close()
    return t_knn, t_match, t_feature


def raw_open(data_dir: Path, graph_path: Path, decode: bool) -> float:
    started = time.perf_counter()
    graph = faiss.read_index(str(graph_path))
    db = sqlite3.connect(data_dir / "datanode.sqlite3")
    rows = db.execute("SELECT id, source FROM docs WHERE idx=? ORDER BY seq_no", (INDEX,)).fetchall()
    if decode:
        for _, source in rows:
            json.loads(source)
    elapsed = time.perf_counter() - started
    assert graph.ntotal > 0 and rows
    db.close()
    return elapsed


def row(label: str, side_a: list[float], side_b: list[float]) -> tuple[str, str]:
    ratios = [a / b for a, b in zip(side_a, side_b)]
    return label, (f"ratio {median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)}); "
                   f"A {', '.join(f'{a:.2f}' for a in side_a)} s; B {', '.join(f'{b:.2f}' for b in side_b)} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data_dir = CACHE / "datanode-restart" / f"docs-{args.docs}"
    build(data_dir, args.docs)
    graph_path = graph_file(data_dir)
    rng = np.random.default_rng(1)
    query = rng.normal(size=DIM).astype(np.float32)
    query = (query / np.linalg.norm(query)).tolist()
    raw_open(data_dir, graph_path, False)  # warm-up: page cache; not counted
    sides: dict[str, list[float]] = {k: [] for k in ("knn", "match", "feature", "raw", "raw_json")}
    for n in range(args.rounds):
        t_knn, t_match, t_feature = data_node_open(data_dir, query)
        raw = raw_open(data_dir, graph_path, False)
        raw_json = raw_open(data_dir, graph_path, True)
        for key, value in zip(sides, (t_knn, t_match, t_feature, raw, raw_json)):
            sides[key].append(value)
        print(f"round {n + 1}: data node first knn {t_knn:.2f} s, + first match {t_match:.2f} s, + first "
              f"rank_feature {t_feature:.2f} s; raw read_index + SQLite rows {raw:.2f} s, + json.loads "
              f"{raw_json:.2f} s",
              flush=True)
    sizes = (f"graph file {graph_path.stat().st_size / 1e6:.0f} MB, "
             f"SQLite {(data_dir / 'datanode.sqlite3').stat().st_size / 1e6:.0f} MB")
    report(f"datanode_restart.py --docs {args.docs} --rounds {args.rounds} "
           f"(fixture: {(data_dir / 'complete').read_text().strip()}; {sizes})", [
        row("open + first knn / raw read_index + SQLite rows", sides["knn"], sides["raw"]),
        row("open + first knn + first match / raw", sides["match"], sides["raw"]),
        row("open + knn + match + first rank_feature / raw", sides["feature"], sides["raw"]),
        row("open + knn + match + first rank_feature / raw + json.loads of every row", sides["feature"],
            sides["raw_json"]),
    ])


if __name__ == "__main__":
    main()
