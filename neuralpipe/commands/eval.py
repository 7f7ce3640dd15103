"""neuralpipe eval DATASET_DIR: retrieval quality of every search method on a BEIR collection.

Ingests the corpus through the real ingest pipeline (dense MiniLM + SPLADE doc encoder over BEIR's
title + " " + text) into the target -- the embedded data node by default, or --opensearch URL --
then runs every judged query as dense (neural), sparse (neural_sparse, tokenizer model at query
time), BM25 (match) and hybrid (BM25 + dense; min_max + arithmetic_mean, and rrf) and prints
nDCG@10 / recall@100 per method. Eval never deletes or overwrites an index it did not create.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from neuralpipe.admin.models import ModelSetupError
from neuralpipe.eval.methods import METHODS
from neuralpipe.eval.metrics import BeirFormatError
from neuralpipe.eval.run import EvalError, EvalRequest, format_table, parse_methods, run_eval
from neuralpipe.local import add_connection_arguments, connection, describe_error, is_reportable, quiet_client_logs
from neuralpipe.node import NodeStartError


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval", help="nDCG@10 / recall@100 of dense, sparse, BM25 and hybrid search on a BEIR folder",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path, metavar="DATASET_DIR",
                   help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    p.add_argument("--split", default="test", help="qrels split to score (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object keyed by method instead of a table")
    p.add_argument("--exact", action="store_true", help="exact k-NN (a flat index) for the dense field instead of HNSW")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: %(default)s")
    p.add_argument("--index", help="index name (default: neuralpipe-eval-<dataset folder>-<hnsw|exact>); "
                                   "an existing index must be one eval created")
    p.add_argument("--pipeline", type=Path, metavar="FILE",
                   help="dense + sparse ingest pipeline whose processors' settings eval uses, re-pointed at the BEIR "
                        "passage (default: the shipped pipelines/ingest/dense-sparse.yaml)")
    p.add_argument("--reingest", action="store_true",
                   help="rebuild the index (one eval created) even if it already holds the corpus")
    p.add_argument("--dense-model", help="dense model id or registered name on the ML node "
                                         "(default: deploy the offline MiniLM)")
    p.add_argument("--sparse-model", help="sparse doc encoder id or name (default: deploy the offline SPLADE-tiny)")
    p.add_argument("--tokenizer-model", help="sparse tokenizer model id or name for queries "
                                             "(default: one with the corpus' IDF)")
    p.add_argument("--k", type=int, default=100, help="hits per query (default: %(default)s; recall@100 needs 100)")
    p.add_argument("--batch-size", type=int, default=32, help="ingest inference batch size (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="ingest batches and queries in flight (default: %(default)s)")
    p.add_argument("--analyzer", choices=("english", "standard"), default="english",
                   help="analyzer of the BM25 passage field (default: %(default)s)")
    p.add_argument("--max-queries", type=int, help="score only the first N judged queries (a quick look)")
    p.add_argument("--save-runs", type=Path, metavar="DIR", help="write each method's run as DIR/<method>.json")
    add_connection_arguments(p)


def _request(args: argparse.Namespace) -> EvalRequest:
    given = (args.dense_model, args.sparse_model, args.tokenizer_model)
    if any(given) and not all(given):
        raise EvalError("give all three of --dense-model, --sparse-model, --tokenizer-model, or none")
    return EvalRequest(dataset=args.dataset, split=args.split, methods=parse_methods(args.methods), index=args.index,
                       exact=args.exact, pipeline=args.pipeline, reingest=args.reingest,
                       models=given if all(given) else None, k=args.k, batch_size=args.batch_size,
                       concurrency=args.concurrency, max_queries=args.max_queries, analyzer=args.analyzer)


def run(args: argparse.Namespace) -> int:
    quiet_client_logs()
    try:
        report = asyncio.run(run_eval(_request(args), connection(args)))
    except (EvalError, BeirFormatError, NodeStartError, ModelSetupError) as exc:
        print(f"neuralpipe eval: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - cluster / ML node errors: one line, no traceback
        if not is_reportable(exc):
            raise
        print(f"neuralpipe eval: {describe_error(exc)}", file=sys.stderr)
        return 2
    if args.save_runs:
        args.save_runs.mkdir(parents=True, exist_ok=True)
        for method, method_run in report.runs.items():
            (args.save_runs / f"{method}.json").write_text(json.dumps(method_run))
    if args.json:
        print(report.headline(), file=sys.stderr)
        print(json.dumps({m: {k: round(v, 4) for k, v in r.items()} for m, r in report.results.items()}))
    else:
        print(report.headline())
        print(format_table(report.results))
    return 0
