"""Bench 6: the data node's knn and sparse search against raw faiss and a raw scipy dot product (goal >= 0.5).

Same vectors on both sides: the dense and sparse document vectors ``neuralpipe eval`` stored for SciFact
(``--eval-data-dir``; otherwise computed here with the in-process runtimes and cached), MiniLM query vectors (from
``bench/reference_dense.py --save-vectors DIR`` or the in-process runtime) and tokenizer-model query vectors. The
data node (``neuralpipe serve --roles data``, own process) gets an index with an HNSW ``knn_vector`` (faiss,
cosinesimil, m 16, ef_construction 100, ef_search 100) and a ``rank_features`` field; raw faiss gets an
``IndexHNSWFlat`` with the same parameters, and raw scipy a CSR matrix. Queries run one at a time (``--concurrency``
1, the latency path) and with several in flight; ``GET /`` with the same client gives the floor any HTTP request
pays here; knn recall@10 of each side is measured against exact inner-product search.

    .venv/bin/python bench/datanode_search.py [--vectors DIR] [--rounds 3] [--concurrency 1,8]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CACHE,
    SCIFACT,
    MLNodeServer,
    batches,
    drive,
    in_process_runtime,
    median,
    package,
    passages,
    queries,
    report,
)

INDEX = "bench-search"
SCIFACT_CORPUS = SCIFACT / "corpus.jsonl"
M, EF_CONSTRUCTION, EF_SEARCH = 16, 100, 100


def dense_vectors(vectors_dir: Path | None, n_queries: int, n_docs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    if vectors_dir and (vectors_dir / "doc_vectors.npy").exists():
        docs = np.load(vectors_dir / "doc_vectors.npy")[:n_docs]
        qs = np.load(vectors_dir / "query_vectors.npy")
        return docs.astype(np.float32), qs[:n_queries].astype(np.float32)
    cache = CACHE / "vectors" / f"dense-{n_docs or 'all'}"
    if not (cache / "doc_vectors.npy").exists():
        rt = in_process_runtime(package("dense", "ONNX"))

        def enc(texts):
            out = []
            for b in batches(texts, 32):
                out += [r["output"][0]["data"] for r in rt.infer(b)]
            return np.asarray(out, dtype=np.float32)

        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / "doc_vectors.npy", enc(passages(n_docs)))
        np.save(cache / "query_vectors.npy", enc(queries()))
    return np.load(cache / "doc_vectors.npy"), np.load(cache / "query_vectors.npy")[:n_queries]


def sparse_vectors(n_queries: int, n_docs: int | None = None) -> tuple[list[dict], list[dict]]:
    cache = CACHE / "vectors" / f"sparse-{n_docs or 'all'}.json"
    if not cache.exists():
        docs_rt = in_process_runtime(package("sparse", "ONNX"))
        tok_rt = in_process_runtime(package("tokenizer", "TORCH_SCRIPT"))

        def enc(rt, texts):
            out = []
            for b in batches(texts, 32):
                out += [r["output"][0]["dataAsMap"]["response"][0] for r in rt.infer(b)]
            return out

        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"docs": enc(docs_rt, passages(n_docs)), "queries": enc(tok_rt, queries())}))
    data = json.loads(cache.read_text())
    return data["docs"], data["queries"][:n_queries]


def vectors_from_eval_index(
    data_dir: Path, index: str, n_docs: int | None, corpus: Path = SCIFACT_CORPUS
) -> tuple[np.ndarray, list[dict]]:
    """The dense and sparse document vectors ``neuralpipe eval`` stored (``passage_embedding``, ``passage_sparse``),
    read back with ``_mget`` from a data node opened on the eval's data dir: the same vectors, no model work."""
    from opensearchpy import OpenSearch

    from neuralpipe.eval.metrics import read_corpus

    ids = list(read_corpus(corpus))[:n_docs]
    dense, sparse = [], []
    with MLNodeServer(roles="data", data_dir=data_dir) as node:
        client = OpenSearch(hosts=[node.url], timeout=600)
        for start in range(0, len(ids), 500):
            for d in client.mget(index=index, body={"ids": ids[start : start + 500]})["docs"]:
                if not d.get("found"):
                    raise SystemExit(
                        f"document {d['_id']} is not in [{index}] under {data_dir}: run `neuralpipe eval` first"
                    )
                dense.append(d["_source"]["passage_embedding"])
                sparse.append(d["_source"]["passage_sparse"])
        client.close()
    return np.asarray(dense, dtype=np.float32), sparse


def query_vectors(vectors_dir: Path | None, n_queries: int) -> tuple[np.ndarray, list[dict]]:
    if vectors_dir and (vectors_dir / "query_vectors.npy").exists():
        dense = np.load(vectors_dir / "query_vectors.npy")[:n_queries].astype(np.float32)
    else:
        rt = in_process_runtime(package("dense", "ONNX"))
        dense = np.asarray(
            [r["output"][0]["data"] for b in batches(queries(n_queries), 32) for r in rt.infer(b)], dtype=np.float32
        )
    tok = in_process_runtime(package("tokenizer", "TORCH_SCRIPT"))
    sparse = [r["output"][0]["dataAsMap"]["response"][0] for b in batches(queries(n_queries), 32) for r in tok.infer(b)]
    return dense, sparse


def expressible(token: str) -> bool:
    return "." not in token and token != ""


def build_index(url: str, dense: np.ndarray, sparse: list[dict]) -> None:
    from opensearchpy import OpenSearch, helpers

    client = OpenSearch(hosts=[url], timeout=600)
    if client.indices.exists(index=INDEX):
        client.indices.delete(index=INDEX)
    client.indices.create(
        index=INDEX,
        body={
            "settings": {"index.knn": True},
            "mappings": {
                "properties": {
                    "vec": {
                        "type": "knn_vector",
                        "dimension": int(dense.shape[1]),
                        "method": {
                            "name": "hnsw",
                            "engine": "faiss",
                            "space_type": "cosinesimil",
                            "parameters": {"m": M, "ef_construction": EF_CONSTRUCTION, "ef_search": EF_SEARCH},
                        },
                    },
                    "sp": {"type": "rank_features"},
                }
            },
        },
    )
    actions = (
        {
            "_index": INDEX,
            "_id": str(i),
            "_source": {
                "vec": dense[i].tolist(),
                "sp": {t: w for t, w in sparse[i].items() if expressible(t) and w > 0},
            },
        }
        for i in range(len(dense))
    )
    helpers.bulk(client, actions, chunk_size=200, request_timeout=600)
    client.indices.refresh(index=INDEX)
    assert client.count(index=INDEX)["count"] == len(dense)
    client.close()


def knn_bodies(qs: np.ndarray) -> list[dict]:
    return [{"size": 10, "_source": False, "query": {"knn": {"vec": {"vector": q.tolist(), "k": 10}}}} for q in qs]


def sparse_bodies(qs: list[dict]) -> list[dict]:
    return [
        {
            "size": 10,
            "_source": False,
            "query": {
                "bool": {
                    "should": [
                        {"rank_feature": {"field": f"sp.{t}", "linear": {}, "boost": w}}
                        for t, w in q.items()
                        if expressible(t)
                    ]
                }
            },
        }
        for q in qs
    ]


def ids_of(url: str, bodies: list[dict]) -> list[list[int]]:
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[url], timeout=600)
    out = [[int(h["_id"]) for h in client.search(index=INDEX, body=b)["hits"]["hits"]] for b in bodies]
    client.close()
    return out


def recall_at_10(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:10]) & set(t[:10].tolist())) / 10 for f, t in zip(found, truth)]))


def main(argv: list[str] | None = None) -> int:
    import faiss
    import scipy.sparse as sp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=Path, help="folder written by reference_dense.py --save-vectors")
    parser.add_argument("--queries", type=int, default=809)
    parser.add_argument("--docs", type=int, help="first N corpus documents only (a quick check)")
    parser.add_argument(
        "--eval-data-dir", type=Path, help="take the document vectors from a `neuralpipe eval` data dir ..."
    )
    parser.add_argument("--eval-index", default="neuralpipe-eval-scifact-hnsw", help="... and this index in it")
    parser.add_argument("--corpus", type=Path, default=SCIFACT_CORPUS, help="the eval's corpus.jsonl (document ids)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,8")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]

    if args.eval_data_dir:
        docs, sdocs = vectors_from_eval_index(args.eval_data_dir, args.eval_index, args.docs, args.corpus)
        qs, sqs = query_vectors(args.vectors, args.queries)
    else:
        docs, qs = dense_vectors(args.vectors, args.queries, args.docs)
        sdocs, sqs = sparse_vectors(args.queries, args.docs)
    n = len(docs)

    # raw faiss: same HNSW parameters, inner product on unit vectors (= cosine ranking)
    hnsw = faiss.IndexHNSWFlat(docs.shape[1], M, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = EF_CONSTRUCTION
    hnsw.add(docs)
    hnsw.hnsw.efSearch = EF_SEARCH
    exact = faiss.IndexFlatIP(docs.shape[1])
    exact.add(docs)
    truth = exact.search(qs, 10)[1]

    # raw scipy: CSR doc matrix over the tokens the data node can hold, one sparse query vector at a time
    vocab: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for i, d in enumerate(sdocs):
        for t, w in d.items():
            if expressible(t) and w > 0:
                rows.append(i)
                cols.append(vocab.setdefault(t, len(vocab)))
                vals.append(w)
    dmat = sp.csr_matrix((vals, (rows, cols)), shape=(n, len(vocab)), dtype=np.float32)
    qvecs = []
    for q in sqs:
        items = [(vocab[t], w) for t, w in q.items() if t in vocab]
        qvecs.append(
            sp.csr_matrix(
                ([w for _, w in items], ([0] * len(items), [c for c, _ in items])),
                shape=(1, len(vocab)),
                dtype=np.float32,
            )
        )

    def faiss_loop() -> list[list[int]]:
        return [hnsw.search(q[None, :], 10)[1][0].tolist() for q in qs]

    def scipy_loop() -> list[list[int]]:
        out = []
        for qv in qvecs:
            scores = (dmat @ qv.T).toarray().ravel()
            top = np.argpartition(-scores, 9)[:10]
            out.append(top[np.argsort(-scores[top])].tolist())
        return out

    kb, sb = knn_bodies(qs), sparse_bodies(sqs)
    results: dict[str, list[float]] = {}
    with MLNodeServer(roles="data") as node:
        t0 = time.perf_counter()
        build_index(node.url, docs, sdocs)
        index_seconds = time.perf_counter() - t0
        url = f"{node.url}/{INDEX}/_search"
        dn_knn_ids = ids_of(node.url, kb)
        dn_sparse_ids = ids_of(node.url, sb)
        raw_sparse_ids = scipy_loop()
        drive(url, kb[:32], concurrency=2)
        drive(url, sb[:32], concurrency=2)
        for _ in range(args.rounds):
            t = time.perf_counter()
            faiss_loop()
            results.setdefault("faiss_qps", []).append(len(qs) / (time.perf_counter() - t))
            t = time.perf_counter()
            scipy_loop()
            results.setdefault("scipy_qps", []).append(len(qs) / (time.perf_counter() - t))
            for c in levels:
                res = drive(node.url + "/", [None] * len(kb), concurrency=c, method="GET")
                results.setdefault(f"http_floor_get_root_qps_c{c}", []).append(len(kb) / res["elapsed"])
                res = drive(url, kb, concurrency=c)
                assert not res["errors"], res["errors"][:2]
                results.setdefault(f"datanode_knn_qps_c{c}", []).append(len(kb) / res["elapsed"])
                res = drive(url, sb, concurrency=c)
                assert not res["errors"], res["errors"][:2]
                results.setdefault(f"datanode_sparse_qps_c{c}", []).append(len(sb) / res["elapsed"])
    raw_ids = faiss_loop()
    same_sparse = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(dn_sparse_ids, raw_sparse_ids)]))
    med = {k: round(median(v), 1) for k, v in results.items()}
    out = {
        "bench": "datanode_search",
        "docs": n,
        "queries": len(qs),
        "index_seconds": round(index_seconds, 1),
        **med,
        "knn_recall@10_datanode": round(recall_at_10(dn_knn_ids, truth), 4),
        "knn_recall@10_faiss": round(recall_at_10(raw_ids, truth), 4),
        "sparse_top10_overlap_with_scipy": round(same_sparse, 4),
        "rounds": {k: [round(x, 1) for x in v] for k, v in results.items()},  # every round, not only the median
    }
    for c in levels:
        out[f"knn_ratio_c{c}"] = round(med[f"datanode_knn_qps_c{c}"] / med["faiss_qps"], 3)
        out[f"sparse_ratio_c{c}"] = round(med[f"datanode_sparse_qps_c{c}"] / med["scipy_qps"], 3)
    for c in levels:
        out[f"knn_share_of_http_floor_c{c}"] = round(
            med[f"datanode_knn_qps_c{c}"] / med[f"http_floor_get_root_qps_c{c}"], 3
        )
    print(json.dumps(out), flush=True)
    report(
        f"data node vs raw faiss / scipy on SciFact vectors ({n} docs, {len(qs)} queries, "
        f"median of {args.rounds} rounds; goal >= 0.5)",
        [(k, v) for k, v in out.items() if k not in ("bench", "rounds")],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
