"""neural_sparse_two_phase_processor vs the plain neural_sparse query on SciFact train, against the data node.

Same vectors on both sides: SPLADE-tiny document vectors (``datanode_search.sparse_vectors``) and query vectors from
SPLADE-tiny too (``--query-model splade``, bi-encoder mode, the default) or from the tokenizer model (``tokenizer``:
inference-free, IDF weights), computed in process and cached, sent as ``neural_sparse`` + ``query_tokens`` so no
model runs while timing. The data node (``neuralpipe serve --roles data``, own process, loopback HTTP) holds one
``rank_features`` field. Each round runs every judged train query one at a time through ``processors.run_search``
twice, plain then two-phase (OpenSearch's defaults: max_ratio 0.4, expansion_rate 5.0), alternating the order round
by round; it reports both QPS, their ratio, and the top-10 overlap of two-phase with the plain query.

    .venv/bin/python bench/sparse_two_phase.py [--rounds 3] [--queries N] [--query-model splade|tokenizer]
                                               [--prune-ratio 0.4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE, SCIFACT, MLNodeServer, batches, in_process_runtime, median, package, queries  # noqa: E402
from datanode_search import sparse_vectors  # noqa: E402

INDEX = "bench-two-phase"
FIELD = "passage_sparse"


def two_phase_pipeline(prune_ratio: float) -> dict:
    return {"request_processors": [{"neural_sparse_two_phase_processor": {
        "two_phase_parameter": {"prune_ratio": prune_ratio}}}]}


def splade_queries() -> list[dict]:
    """SPLADE-tiny vectors of every query in queries.jsonl (file order), cached."""
    cache = CACHE / "vectors" / "sparse-queries-splade.json"
    if not cache.exists():
        runtime = in_process_runtime(package("sparse", "ONNX"))
        out = []
        for batch in batches(queries(), 32):
            out += [r["output"][0]["dataAsMap"]["response"][0] for r in runtime.infer(batch)]
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(out))
    return json.loads(cache.read_text())


def train_queries(n: int | None) -> list[int]:
    """Positions (in queries.jsonl order, the order of the cached query vectors) of the judged train queries."""
    from neuralpipe.evaluation import load_beir

    judged = set(load_beir(SCIFACT, "train").qrels)
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as fh:
        ids = [json.loads(line)["_id"] for line in fh if line.strip()]
    return [i for i, qid in enumerate(ids) if qid in judged][:n]


def build_index(url: str, docs: list[dict]) -> None:
    from opensearchpy import OpenSearch, helpers

    client = OpenSearch(hosts=[url], timeout=600)
    client.indices.create(index=INDEX, body={"mappings": {"properties": {FIELD: {"type": "rank_features"}}}})
    actions = ({"_index": INDEX, "_id": str(i), "_source": {FIELD: {t: w for t, w in d.items() if "." not in t}}}
               for i, d in enumerate(docs))
    helpers.bulk(client, actions, chunk_size=200, request_timeout=600)
    client.indices.refresh(index=INDEX)
    client.close()


async def run_side(url: str, bodies: list[dict], pipeline_body: dict | None) -> tuple[float, list[list[str]]]:
    from opensearchpy import AsyncOpenSearch

    from neuralpipe.searching import opensearch_search_fn
    from processors import SearchPipeline, run_search

    client = AsyncOpenSearch(hosts=[url], timeout=600)
    pipeline = SearchPipeline.from_body("two-phase", pipeline_body, ml=None) if pipeline_body else None
    search_fn = opensearch_search_fn(client)
    tops = []
    try:
        start = time.perf_counter()
        for body in bodies:
            resp = await run_search(INDEX, body, search_fn=search_fn, ml=None, pipeline=pipeline)
            tops.append([h["_id"] for h in resp["hits"]["hits"]])
        elapsed = time.perf_counter() - start
    finally:
        await client.close()
    return len(bodies) / elapsed, tops


def overlap(a: list[list[str]], b: list[list[str]]) -> float:
    return sum(len(set(x) & set(y)) / max(len(y), 1) for x, y in zip(a, b)) / len(b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=None, help="first N judged train queries (default: all)")
    parser.add_argument("--query-model", choices=("splade", "tokenizer"), default="splade")
    parser.add_argument("--prune-ratio", type=float, default=0.4, help="two_phase_parameter.prune_ratio")
    args = parser.parse_args(argv)

    docs, all_queries = sparse_vectors(n_queries=10**6)
    if args.query_model == "splade":
        all_queries = splade_queries()
    picked = train_queries(args.queries)
    bodies = [{"size": 10, "_source": False, "query": {"neural_sparse": {FIELD: {"query_tokens": all_queries[i]}}}}
              for i in picked]
    print(f"SciFact train: {len(docs)} docs, {len(bodies)} judged queries ({args.query_model} query vectors), "
          f"prune_ratio {args.prune_ratio}, {args.rounds} rounds")
    ratios, overlaps = [], []
    with MLNodeServer(roles="data") as node:
        build_index(node.url, docs)
        asyncio.run(run_side(node.url, bodies[:20], None))  # warm-up: first requests open connections
        for r in range(args.rounds):
            sides = [("plain", None), ("two-phase", two_phase_pipeline(args.prune_ratio))]
            results = {}
            for name, pipe in (sides if r % 2 == 0 else sides[::-1]):
                results[name] = asyncio.run(run_side(node.url, bodies, pipe))
            (plain_qps, plain_top), (two_qps, two_top) = results["plain"], results["two-phase"]
            ratios.append(two_qps / plain_qps)
            overlaps.append(overlap(two_top, plain_top))
            print(f"round {r + 1}: plain {plain_qps:.1f} QPS, two-phase {two_qps:.1f} QPS, ratio {ratios[-1]:.2f}, "
                  f"top-10 overlap {overlaps[-1]:.4f}")
    print(f"median ratio two-phase / plain {median(ratios):.2f}; top-10 overlap min {min(overlaps):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
