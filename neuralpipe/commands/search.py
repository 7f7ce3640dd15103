"""neuralpipe search: neural, neural_sparse, hybrid and match queries, shown as a ranked table.

    neuralpipe search --index docs --neural "how do vaccines work"
    neuralpipe search --index docs --sparse "vaccine immune response" --sparse-model-id my-tokenizer
    neuralpipe search --index docs --hybrid "vaccine" --search-pipeline pipelines/search/hybrid.yaml
    neuralpipe search --index docs --body query.json --json --opensearch https://localhost:9200

Fields and models come from the flags, from --ingest-pipeline FILE, or from what `neuralpipe ingest`
recorded in the index's mapping (_meta.neuralpipe) when it created the index.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from neuralpipe.ingest.setup import PipelineFileError
from neuralpipe.local import add_connection_arguments, connection, describe_error, is_reportable, quiet_client_logs
from neuralpipe.node import NodeStartError
from neuralpipe.search.query import QueryConfigError, QueryFields
from neuralpipe.search.run import SearchRequest, search
from neuralpipe.search.table import format_table

KINDS = ("neural", "sparse", "hybrid", "match")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("search", help="run neural / neural_sparse / hybrid / match queries and show ranked hits",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True, help="index to search")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--neural", metavar="TEXT", help="dense query: `neural` on the knn_vector field")
    q.add_argument("--sparse", metavar="TEXT", help="sparse query: `neural_sparse` on the rank_features field")
    q.add_argument("--hybrid", metavar="TEXT",
                   help="`hybrid` of match + neural + neural_sparse, normalized and combined")
    q.add_argument("--match", metavar="TEXT", help="BM25 `match` on the text field(s)")
    q.add_argument("--body", metavar="FILE", type=Path,
                   help="a search body (JSON or YAML), as for POST <index>/_search")
    p.add_argument("--search-pipeline", metavar="FILE", type=Path,
                   help="search pipeline YAML/JSON (body of PUT _search/pipeline/<id>); "
                        "hybrid default: min_max + arithmetic_mean")
    p.add_argument("--size", type=int, default=10, help="hits to return (default: %(default)s)")
    f = p.add_argument_group("fields and models (default: from the index or --ingest-pipeline)")
    f.add_argument("--ingest-pipeline", metavar="FILE", type=Path, help="the ingest pipeline the index was filled with")
    f.add_argument("--field", help="knn_vector field for --neural")
    f.add_argument("--model-id", help="dense model id or registered name for --neural")
    f.add_argument("--sparse-field", help="rank_features field for --sparse")
    f.add_argument("--sparse-model-id", help="sparse encoder or tokenizer model id / name for --sparse")
    f.add_argument("--text-field", action="append", help="text field for --match and snippets (repeatable)")
    add_connection_arguments(p)
    p.add_argument("--json", action="store_true", help="print OpenSearch's response JSON instead of a table")
    return p


def _request(args: argparse.Namespace) -> SearchRequest:
    if args.size < 1:
        raise QueryConfigError(f"--size must be at least 1, got {args.size}")
    kind = next((k for k in KINDS if getattr(args, k) is not None), "body")
    fields = QueryFields(dense_field=args.field, dense_model=args.model_id, sparse_field=args.sparse_field,
                         sparse_model=args.sparse_model_id, text_fields=tuple(args.text_field or ()))
    return SearchRequest(index=args.index, kind=kind, text=getattr(args, kind, None) if kind != "body" else None,
                         body_file=args.body, size=args.size, fields=fields, ingest_pipeline=args.ingest_pipeline,
                         search_pipeline=args.search_pipeline)


def run(args: argparse.Namespace) -> int:
    quiet_client_logs()
    conn = connection(args)
    try:
        response, fields = asyncio.run(search(_request(args), conn, say=lambda msg: print(msg, file=sys.stderr)))
    except (QueryConfigError, PipelineFileError, NodeStartError, FileNotFoundError) as exc:
        print(f"neuralpipe search: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - shown to the user in OpenSearch's terms
        if not is_reportable(exc):
            raise
        print(f"neuralpipe search: {describe_error(exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(response, indent=2, ensure_ascii=False))
    else:
        print(format_table(response, text_fields=fields.text_fields))
    return 0
