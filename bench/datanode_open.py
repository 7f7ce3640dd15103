"""Bench: what opening the embedded data node costs (issue 10), two ratios measured side by side, round by round.

1. First search: ``neuralpipe search --match`` (the real CLI, own process, embedded data node) on a 5-document
   index, in a data dir that also holds a 100,000-document index vs. in a data dir holding only the small index.
   Goal <= 1.2. The same is also timed in-process (10 x ``DataNode(dir)`` + the match search per round), where the
   Python start-up both CLI sides pay is left out.
2. Opening the 100,000-document index (``DataNode(dir)`` then opening the index: its slots and HNSW graph) vs.
   raw ``faiss.read_index`` of its graph file plus opening its SQLite file. Goal <= 2. Also shown: raw
   ``faiss.read_index`` with ``IO_FLAG_MMAP_IFC`` (what the data node uses), and the open plus a first knn query
   against raw read plus the same faiss search.

The 100,000 documents are random unit vectors, 384-d (MiniLM's width), in a ``knn_vector`` field (faiss HNSW,
cosinesimil, m 16, ef_construction 40: the graph on disk, which opening reads, depends on m, not on
ef_construction) and a short text field. The fixture is built once in the cache dir (``$NEURALPIPE_BENCH_CACHE``,
default ``/tmp/neuralpipe-bench``), through the data node itself, and saved by its clean close.

    .venv/bin/python bench/datanode_open.py [--docs 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE, REPO, median, report  # noqa: E402

from datanode.node import DataNode, WriteOp  # noqa: E402
from neuralpipe.local import layout  # noqa: E402

DIM = 384
BIG, SMALL = "big", "small"
BIG_MAPPING = {"settings": {"index.knn": True}, "mappings": {"properties": {
    "text": {"type": "text"},
    "v": {"type": "knn_vector", "dimension": DIM, "method": {
        "name": "hnsw", "engine": "faiss", "space_type": "cosinesimil",
        "parameters": {"m": 16, "ef_construction": 40}}}}}}
SMALL_DOCS = ["the quick brown fox", "a lazy dog sleeps", "quick thinking wins", "brown bears fish", "fox and dog"]


def add_small(node: DataNode) -> None:
    node.create_index(SMALL, {"mappings": {"properties": {"text": {"type": "text"}}}})
    node.write([WriteOp("index", SMALL, str(i), source={"text": t}) for i, t in enumerate(SMALL_DOCS)])


def build_big(target: Path, n_docs: int) -> None:
    """A CLI data dir whose data node holds the big index and the small one, saved by a clean close (built once)."""
    if (target / "complete").exists():
        return
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    node = DataNode(layout(tmp)[1])
    node.create_index(BIG, BIG_MAPPING)
    rng = np.random.default_rng(0)
    for start in range(0, n_docs, 2000):
        vecs = rng.normal(size=(min(2000, n_docs - start), DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        node.write([WriteOp("index", BIG, str(start + i), source={"text": f"document {start + i}",
                                                                     "v": np.round(v, 6).tolist()})
                    for i, v in enumerate(vecs)])
    add_small(node)
    node.refresh(BIG)
    node.close()  # saves both segments
    (tmp / "complete").write_text(f"{n_docs} docs, built in {time.perf_counter() - started:.0f} s\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def build_small_only(target: Path) -> None:
    if (target / "complete").exists():
        return
    shutil.rmtree(target, ignore_errors=True)
    node = DataNode(layout(target)[1])
    add_small(node)
    node.close()
    (target / "complete").write_text("small index only\n")


def cli_search(cli_dir: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "neuralpipe.cli", "search", "--index", SMALL, "--match", "quick fox",
                          "--text-field", "text", "--data-dir", str(cli_dir), "--json"],
                         cwd=REPO, env=env, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    hits = json.loads(out.stdout)["hits"]["hits"]
    assert [h["_id"] for h in hits][:1] == ["0"], out.stdout[:500]
    return elapsed


def in_process_search(data_dir: Path, repeat: int = 10) -> float:
    """Seconds for ``repeat`` opens + first searches (milliseconds each: one alone is mostly scheduling noise)."""
    elapsed = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        node = DataNode(data_dir)
        res = node.search(SMALL, {"query": {"match": {"text": "quick fox"}}})
        elapsed += time.perf_counter() - started
        node.close()
        assert res["hits"]["hits"][0]["_id"] == "0"
    return elapsed


def graph_file(data_dir: Path) -> Path:
    node = DataNode(data_dir)
    uuid = node.index(BIG).uuid
    node.close()
    return data_dir / "indices" / uuid / "vec-0.faiss"


def open_index(data_dir: Path, query: np.ndarray | None) -> float:
    started = time.perf_counter()
    node = DataNode(data_dir)
    index = node.index(BIG)
    index.ensure_open()
    if query is not None:
        res = node.search(BIG, {"size": 10, "_source": False, "query": {"knn": {"v": {"vector": query.tolist(),
                                                                                       "k": 10}}}})
        assert len(res["hits"]["hits"]) == 10
    elapsed = time.perf_counter() - started
    assert index.root.vectors["v"].graph is not None and index.root.size > 0
    node.close()
    return elapsed


def raw_open(data_dir: Path, graph_path: Path, query: np.ndarray | None, flags: int = 0) -> float:
    started = time.perf_counter()
    graph = faiss.read_index(str(graph_path), flags)
    db = sqlite3.connect(data_dir / "datanode.sqlite3")
    db.execute("SELECT name, settings, mappings FROM indices").fetchall()
    if query is not None:
        _, ids = graph.search(query[None, :], 10)
        assert (ids >= 0).all()
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def ratio_rows(label: str, side_a: list[float], side_b: list[float], unit: str = "s") -> tuple[str, str]:
    ratios = [a / b for a, b in zip(side_a, side_b)]
    return label, (f"ratio {median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)}); "
                   f"A median {median(side_a):.3f} {unit}, B median {median(side_b):.3f} {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = CACHE / "datanode-open"
    big_cli, small_cli = root / f"big-{args.docs}-{DIM}", root / "small-only"
    build_big(big_cli, args.docs)
    build_small_only(small_cli)
    big_dir, small_dir = layout(big_cli)[1], layout(small_cli)[1]  # the data nodes' own dirs
    graph_path = graph_file(big_dir)
    query = np.random.default_rng(1).normal(size=DIM).astype(np.float32)
    query /= np.linalg.norm(query)

    cli_search(big_cli), cli_search(small_cli)  # warm-up: page cache, bytecode; not counted
    open_index(big_dir, None), raw_open(big_dir, graph_path, None)
    sides: dict[str, list[float]] = {k: [] for k in ("cli_big", "cli_small", "ip_big", "ip_small", "open", "raw",
                                                     "raw_mmap", "open_q", "raw_q")}
    for _ in range(args.rounds):  # the two sides of each ratio alternate within every round
        sides["cli_big"].append(cli_search(big_cli))
        sides["cli_small"].append(cli_search(small_cli))
        sides["ip_big"].append(in_process_search(big_dir))
        sides["ip_small"].append(in_process_search(small_dir))
        sides["open"].append(open_index(big_dir, None))
        sides["raw"].append(raw_open(big_dir, graph_path, None))
        sides["raw_mmap"].append(raw_open(big_dir, graph_path, None, faiss.IO_FLAG_MMAP_IFC))
        sides["open_q"].append(open_index(big_dir, query))
        sides["raw_q"].append(raw_open(big_dir, graph_path, query))
    sizes = (f"graph file {graph_path.stat().st_size / 1e6:.0f} MB, "
             f"SQLite {(big_dir / 'datanode.sqlite3').stat().st_size / 1e6:.0f} MB")
    report(f"datanode_open.py --docs {args.docs} --rounds {args.rounds} "
           f"(fixture: {(big_cli / 'complete').read_text().strip()}; {sizes})", [
        ratio_rows("1 first search, CLI: A with the big index beside / B small index alone (goal <= 1.2)",
                   sides["cli_big"], sides["cli_small"]),
        ratio_rows("1 first search, in-process, 10 x (DataNode(dir) + match): A big beside / B alone",
                   sides["ip_big"], sides["ip_small"]),
        ratio_rows("2 open the big index: A DataNode + open / B raw faiss.read_index + sqlite3 open (goal <= 2)",
                   sides["open"], sides["raw"]),
        ratio_rows("2 same, B with faiss.IO_FLAG_MMAP_IFC", sides["open"], sides["raw_mmap"]),
        ratio_rows("2 open + first knn (k 10): A data node / B raw read_index + faiss search",
                   sides["open_q"], sides["raw_q"]),
    ])


if __name__ == "__main__":
    main()
