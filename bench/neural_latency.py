"""Bench 5: ``neural`` query latency through the data node against its parts (goal: overhead <= 20%).

One ``neuralpipe serve --roles ml,data`` process serves MiniLM and an index of the SciFact corpus' MiniLM vectors
(HNSW, cosinesimil). For each SciFact query, one after another on a keep-alive connection, alternating:

- whole: ``POST /<index>/_search`` with ``{"neural": {"vec": {"query_text", "model_id", "k": 10}}}`` (the data node
  embeds the text through the ML node and runs the knn search);
- parts: ``POST _predict/text_embedding/<model>`` for the query vector, then ``POST /<index>/_search`` with that
  vector as a ``knn`` query: the same two steps as separate calls.

Reported: p50/p99 of both, and the overhead of the whole over the sum of its parts (p50 and p99).

    .venv/bin/python bench/neural_latency.py [--queries 300] [--format TORCH_SCRIPT]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MLNodeServer, package, percentile, predict_path, queries, report  # noqa: E402
from datanode_search import dense_vectors  # noqa: E402

INDEX = "bench-neural"


class Conn:
    def __init__(self, url: str) -> None:
        u = urlparse(url)
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)

    def post(self, path: str, body: dict) -> tuple[dict, float]:
        t0 = time.perf_counter()
        self.c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = self.c.getresponse()
        payload = json.loads(resp.read())
        ms = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            raise RuntimeError(f"{path}: {resp.status} {payload}")
        return payload, ms


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch, helpers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--format", default="TORCH_SCRIPT")
    parser.add_argument("--vectors", type=Path, help="folder written by reference_dense.py --save-vectors")
    parser.add_argument("--docs", type=int, help="first N corpus documents only (a quick check)")
    args = parser.parse_args(argv)
    docs, _ = dense_vectors(args.vectors, 1, args.docs)
    qs = queries(args.queries)
    whole, parts, embed, knn = [], [], [], []
    with MLNodeServer(roles="ml,data") as node:
        model_id = node.register_and_deploy(package("dense", args.format.upper()))
        client = OpenSearch(hosts=[node.url], timeout=600)
        if client.indices.exists(index=INDEX):
            client.indices.delete(index=INDEX)
        client.indices.create(index=INDEX, body={"settings": {"index.knn": True}, "mappings": {"properties": {"vec": {
            "type": "knn_vector", "dimension": int(docs.shape[1]),
            "method": {"name": "hnsw", "engine": "faiss", "space_type": "cosinesimil"}}}}})
        actions = ({"_index": INDEX, "_id": str(i), "_source": {"vec": v.tolist()}} for i, v in enumerate(docs))
        helpers.bulk(client, actions, chunk_size=200, request_timeout=600)
        client.indices.refresh(index=INDEX)
        client.close()
        conn = Conn(node.url)
        search = f"/{INDEX}/_search"

        def run_whole(q: str) -> list[str]:
            neural = {"neural": {"vec": {"query_text": q, "model_id": model_id, "k": 10}}}
            resp, ms = conn.post(search, {"size": 10, "_source": False, "query": neural})
            whole.append(ms)
            return [h["_id"] for h in resp["hits"]["hits"]]

        def run_parts(q: str) -> list[str]:
            pred, ms1 = conn.post(predict_path("text_embedding", model_id),
                                  {"text_docs": [q], "target_response": ["sentence_embedding"]})
            vec = pred["inference_results"][0]["output"][0]["data"]
            knn_query = {"knn": {"vec": {"vector": vec, "k": 10}}}
            resp, ms2 = conn.post(search, {"size": 10, "_source": False, "query": knn_query})
            embed.append(ms1)
            knn.append(ms2)
            parts.append(ms1 + ms2)
            return [h["_id"] for h in resp["hits"]["hits"]]

        for q in qs[:10]:  # warm-up
            run_whole(q)
            run_parts(q)
        for samples in (whole, parts, embed, knn):
            samples.clear()
        same = 0
        for i, q in enumerate(qs):
            if i % 2 == 0:
                a = run_whole(q)
                b = run_parts(q)
            else:
                b = run_parts(q)
                a = run_whole(q)
            same += a == b
    out = {"bench": "neural_latency", "queries": len(qs), "format": args.format.upper(),
           "neural_p50_ms": round(percentile(whole, 50), 2), "neural_p99_ms": round(percentile(whole, 99), 2),
           "parts_p50_ms": round(percentile(parts, 50), 2), "parts_p99_ms": round(percentile(parts, 99), 2),
           "embed_p50_ms": round(percentile(embed, 50), 2), "knn_p50_ms": round(percentile(knn, 50), 2),
           "overhead_p50": round(percentile(whole, 50) / percentile(parts, 50) - 1, 3),
           "overhead_p99": round(percentile(whole, 99) / percentile(parts, 99) - 1, 3),
           "overhead_mean": round(float(np.mean(whole)) / float(np.mean(parts)) - 1, 3),
           "same_top10": f"{same}/{len(qs)}"}
    print(json.dumps(out), flush=True)
    report(f"neural query through the data node vs predict + knn as separate calls, {len(qs)} SciFact queries, "
           "sequential, alternating (goal overhead <= 20%)", [(k, v) for k, v in out.items() if k != "bench"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
