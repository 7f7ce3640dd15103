"""``neuralpipe search``: neural, neural_sparse, hybrid and match queries, shown as a ranked table.

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

import yaml

from neuralpipe.local import (add_connection_arguments, client_options, describe_error, is_reportable, make_client,
                              make_ml_client, open_endpoints, quiet_client_logs)
from neuralpipe.searching import (DEFAULT_HYBRID_PIPELINE, QueryConfigError, QueryFields, build_query, execute,
                                  fields_from_ingest_pipeline, fields_from_mapping, format_table)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("search", help="run neural / neural_sparse / hybrid / match queries and show ranked hits",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True, help="index to search")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--neural", metavar="TEXT", help="dense query: `neural` on the knn_vector field")
    q.add_argument("--sparse", metavar="TEXT", help="sparse query: `neural_sparse` on the rank_features field")
    q.add_argument("--hybrid", metavar="TEXT", help="`hybrid` of match + neural + neural_sparse, normalized and combined")
    q.add_argument("--match", metavar="TEXT", help="BM25 `match` on the text field(s)")
    q.add_argument("--body", metavar="FILE", help="a search body (JSON or YAML), as for POST <index>/_search")
    p.add_argument("--search-pipeline", metavar="FILE",
                   help="search pipeline YAML/JSON (body of PUT _search/pipeline/<id>); hybrid default: min_max + arithmetic_mean")
    p.add_argument("--size", type=int, default=10, help="hits to return (default: %(default)s)")
    f = p.add_argument_group("fields and models (default: from the index or --ingest-pipeline)")
    f.add_argument("--ingest-pipeline", metavar="FILE", help="the ingest pipeline the index was filled with")
    f.add_argument("--field", help="knn_vector field for --neural")
    f.add_argument("--model-id", help="dense model id or registered name for --neural")
    f.add_argument("--sparse-field", help="rank_features field for --sparse")
    f.add_argument("--sparse-model-id", help="sparse encoder or tokenizer model id / name for --sparse")
    f.add_argument("--text-field", action="append", help="text field for --match and snippets (repeatable)")
    add_connection_arguments(p)
    p.add_argument("--json", action="store_true", help="print OpenSearch's response JSON instead of a table")
    return p


def _read_body(path: str) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))  # YAML is a superset of JSON
    if not isinstance(data, dict):
        raise QueryConfigError(f"[{path}] must hold a search body object, got {type(data).__name__}")
    return data


def _kind_and_text(args: argparse.Namespace) -> tuple[str, str | None]:
    for kind in ("neural", "sparse", "hybrid", "match"):
        value = getattr(args, kind)
        if value is not None:
            return kind, value
    return "body", None


def run(args: argparse.Namespace) -> int:
    quiet_client_logs()
    try:
        if args.size < 1:
            raise QueryConfigError(f"--size must be at least 1, got {args.size}")
        response, fields = asyncio.run(_search(args))
    except (QueryConfigError, FileNotFoundError) as exc:
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


def _cli_fields(args: argparse.Namespace) -> QueryFields:
    return QueryFields(dense_field=args.field, dense_model=args.model_id, sparse_field=args.sparse_field,
                       sparse_model=args.sparse_model_id, text_fields=tuple(args.text_field or ()))


async def resolve_fields(client: Any, index: str, given: QueryFields, ingest_pipeline: Path | None) -> QueryFields:
    fields = given
    if ingest_pipeline is not None:
        from neuralpipe.ingest.setup import read_pipeline_body

        fields = fields.merged(fields_from_ingest_pipeline(read_pipeline_body(ingest_pipeline)))
    mapping_resp = await client.indices.get_mapping(index=index)
    for entry in mapping_resp.values():
        fields = fields.merged(fields_from_mapping(entry.get("mappings") or {}))
        break
    return fields


async def _search(args: argparse.Namespace) -> tuple[dict[str, Any], QueryFields]:
    from neuralpipe.ingest.setup import load_search_pipeline, read_pipeline_body

    kind, text = _kind_and_text(args)
    options = client_options(args)
    async with open_endpoints(opensearch=args.opensearch, ml_url=args.ml_url, data_dir=Path(args.data_dir),
                              need_ml=kind != "match") as endpoints:
        client = make_client(endpoints.opensearch_url, options)
        ml = make_ml_client(endpoints.ml_url, options) if endpoints.ml_url else None
        try:
            fields = await resolve_fields(client, args.index, _cli_fields(args),
                                          Path(args.ingest_pipeline) if args.ingest_pipeline else None)
            if kind == "body":
                body = _read_body(args.body)
                body.setdefault("size", args.size)
            else:
                body = build_query(kind, text or "", fields, size=args.size)
            pipeline_body = read_pipeline_body(Path(args.search_pipeline)) if args.search_pipeline else (
                DEFAULT_HYBRID_PIPELINE if kind == "hybrid" else None)
            pipeline = await load_search_pipeline("cli", pipeline_body, ml) if pipeline_body else None
            return await execute(args.index, body, client=client, ml=ml, pipeline=pipeline), fields
        finally:
            await client.close()
            if ml is not None:
                await ml.close()
