"""BM25 with OpenSearch's english analyzer on SciFact: the data node's ``match`` against an in-process BM25.

Both sides see the same terms: each passage (BEIR's ``title + " " + text``) and each query is analysed once by
``datanode.analysis`` (english: standard tokenizer, possessive, lowercase, English stop words, Porter stemmer;
or standard). The in-process side is a plain BM25 over those terms (k1 1.2, b 0.75, Lucene's idf
``ln(1 + (N - df + 0.5) / (df + 0.5))``, exact field lengths); the data node (``neuralpipe serve --roles data``,
own process) indexes the passages in a ``text`` field with that analyzer and runs ``neuralpipe eval``'s BM25 body
(``match`` on ``passage``, k 100), with Lucene's one-byte length norms. Both runs are scored by
``neuralpipe.eval.metrics.evaluate`` (nDCG@10, recall@100).

With ``--hybrid`` it also embeds passages and queries with the offline MiniLM (in-process ONNX runtime, cached),
stores the vectors in a ``knn_vector`` (faiss HNSW, cosinesimil) and runs eval's hybrid_minmax body with a ``knn``
clause for the ``neural`` one (the same query vector ``neural`` would send) through a min_max + arithmetic_mean
search pipeline, per analyzer.

    .venv/bin/python bench/bm25_english.py [--split train] [--analyzers english,standard] [--hybrid]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from opensearchpy import OpenSearch, helpers

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import CACHE, SCIFACT, MLNodeServer, batches, in_process_runtime, package  # noqa: E402

from datanode.analysis import ANALYZERS  # noqa: E402
from neuralpipe.eval.methods import PASSAGE_FIELD, search_pipeline_body  # noqa: E402
from neuralpipe.eval.metrics import BeirDataset, Run, evaluate, load_beir, run_from_hits  # noqa: E402

K1, B, K = 1.2, 0.75, 100
DENSE_FIELD = "passage_embedding"


def in_process_bm25(docs: dict[str, list[str]], queries: dict[str, list[str]], k: int = K) -> Run:
    """Top ``k`` of every query by BM25 over already-analysed terms (a repeated query term counts twice, as the
    repeated SHOULD clause of Lucene's match query does)."""
    ids = list(docs)
    lengths = np.array([len(docs[d]) for d in ids], dtype=np.float64)
    avgdl = lengths.mean()
    postings: dict[str, tuple[list[int], list[int]]] = {}
    for i, d in enumerate(ids):
        for term, tf in Counter(docs[d]).items():
            rows, tfs = postings.setdefault(term, ([], []))
            rows.append(i)
            tfs.append(tf)
    norm = K1 * (1 - B + B * lengths / avgdl)
    run: Run = {}
    for qid, terms in queries.items():
        scores = np.zeros(len(ids))
        for term in terms:
            if term not in postings:
                continue
            rows, tfs = (np.asarray(x) for x in postings[term])
            idf = math.log(1 + (len(ids) - len(rows) + 0.5) / (len(rows) + 0.5))
            scores[rows] += idf * tfs / (tfs + norm[rows])
        top = [i for i in np.argsort(-scores, kind="stable")[:k] if scores[i] > 0]
        run[qid] = {ids[i]: float(scores[i]) for i in top}
    return run


def dense_vectors(dataset: BeirDataset) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """MiniLM vectors of every passage and query (the offline model eval deploys), cached under CACHE."""
    cache = CACHE / "vectors" / f"bm25-english-dense-{len(dataset.corpus)}.json"
    if not cache.exists():
        runtime = in_process_runtime(package("dense", "ONNX"))

        def encode(texts: list[str]) -> list[list[float]]:
            return [r["output"][0]["data"] for b in batches(texts, 32) for r in runtime.infer(b)]

        doc_ids, qids = list(dataset.corpus), list(dataset.queries)
        docs = dict(zip(doc_ids, encode([dataset.passage(d) for d in doc_ids])))
        queries = dict(zip(qids, encode([dataset.queries[q] for q in qids])))
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"docs": docs, "queries": queries}))
    data = json.loads(cache.read_text())
    return data["docs"], data["queries"]


def index_corpus(client: OpenSearch, name: str, analyzer: str, dataset: BeirDataset,
                 vectors: dict[str, list[float]] | None) -> None:
    props: dict[str, object] = {PASSAGE_FIELD: {"type": "text", "analyzer": analyzer}}
    if vectors:
        dim = len(next(iter(vectors.values())))
        props[DENSE_FIELD] = {"type": "knn_vector", "dimension": dim, "method": {
            "name": "hnsw", "engine": "faiss", "space_type": "cosinesimil",
            "parameters": {"m": 16, "ef_construction": 100}}}
    client.indices.create(index=name, body={"settings": {"index.knn": True}, "mappings": {"properties": props}})
    actions = ({"_index": name, "_id": d, PASSAGE_FIELD: dataset.passage(d),
                **({DENSE_FIELD: vectors[d]} if vectors else {})} for d in dataset.corpus)
    helpers.bulk(client, actions, chunk_size=200, request_timeout=600)
    client.indices.refresh(index=name)


def node_run(client: OpenSearch, name: str, dataset: BeirDataset, query_vectors: dict[str, list[float]] | None,
             pipeline: str | None) -> Run:
    """eval's bm25 body (``match``), or its hybrid_minmax body with ``knn`` for ``neural``, for every query."""
    run: Run = {}
    for qid, text in dataset.queries.items():
        match = {"match": {PASSAGE_FIELD: {"query": text}}}
        if query_vectors is None:
            body = {"size": K, "_source": False, "query": match}
            res = client.search(index=name, body=body, request_timeout=600)
        else:
            knn = {"knn": {DENSE_FIELD: {"vector": query_vectors[qid], "k": K}}}
            body = {"size": K, "_source": False, "query": {"hybrid": {"queries": [match, knn]}}}
            res = client.search(index=name, body=body, params={"search_pipeline": pipeline}, request_timeout=600)
        run[qid] = run_from_hits(res["hits"]["hits"])
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=SCIFACT)
    ap.add_argument("--split", default="train")
    ap.add_argument("--analyzers", default="english,standard")
    ap.add_argument("--hybrid", action="store_true", help="also hybrid_minmax (BM25 + MiniLM knn)")
    args = ap.parse_args()
    dataset = load_beir(args.dataset, args.split)
    judged = {q: t for q, t in dataset.queries.items() if q in dataset.qrels}
    dataset.queries = judged
    docs_vec, query_vec = dense_vectors(dataset) if args.hybrid else (None, None)
    results: dict[str, dict[str, float]] = {}
    with MLNodeServer(roles="data") as node:
        client = OpenSearch(hosts=[node.url], timeout=600)
        client.transport.perform_request("PUT", "/_search/pipeline/minmax", body=search_pipeline_body("hybrid_minmax"))
        for name in args.analyzers.split(","):
            analyzer = ANALYZERS[name]
            docs = {d: analyzer.terms(dataset.passage(d)) for d in dataset.corpus}
            queries = {q: analyzer.terms(t) for q, t in judged.items()}
            results[f"in-process BM25 ({name})"] = evaluate(dataset.qrels, in_process_bm25(docs, queries)).means
            index = f"bm25-{name}"
            index_corpus(client, index, name, dataset, docs_vec)
            results[f"data node match ({name})"] = evaluate(dataset.qrels, node_run(
                client, index, dataset, None, None)).means
            if query_vec is not None:
                results[f"data node hybrid min_max ({name})"] = evaluate(dataset.qrels, node_run(
                    client, index, dataset, query_vec, "minmax")).means
            print(json.dumps({k: {m: round(v, 4) for m, v in r.items()} for k, r in results.items()}), flush=True)
        client.close()
    for label, means in results.items():
        print(f"{label:<40} nDCG@10 {means['ndcg@10']:.4f}  recall@100 {means['recall@100']:.4f}")


if __name__ == "__main__":
    main()
