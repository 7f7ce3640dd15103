"""neuralpipe ingest: bulk-load documents through an ingest pipeline into an index.

    neuralpipe ingest corpus.jsonl --index docs --pipeline pipelines/ingest/dense-sparse.yaml
    neuralpipe ingest data.csv --index docs --opensearch https://localhost:9200 --user admin --no-verify-certs
    cat docs.jsonl | neuralpipe ingest - --index docs

Stop it at any time (Ctrl-C, kill) and run the same command again: it resumes where the last
acknowledged bulk ended, without duplicates.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from neuralpipe.ingest.checkpoint import CheckpointMismatch
from neuralpipe.ingest.job import STDIN, IngestJob, Source, ingest_source
from neuralpipe.ingest.readers import FORMATS, InputError, resolve_input
from neuralpipe.ingest.runner import IngestOptions, IngestStats
from neuralpipe.ingest.setup import PipelineFileError, read_index_body
from neuralpipe.local import add_connection_arguments, connection, describe_error, is_reportable, quiet_client_logs
from neuralpipe.node import NodeStartError

DEFAULT_STATE_DIR = Path(".neuralpipe") / "ingest"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ingest", help="bulk-load JSONL / CSV / BEIR / stdin through an ingest pipeline into an index",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a .jsonl, .csv or .tsv file, a BEIR folder (corpus.jsonl), or - for stdin (JSONL)")
    p.add_argument("--index", required=True, help="target index (created from the pipeline's mapping if missing)")
    p.add_argument("--pipeline", metavar="FILE", type=Path,
                   help="ingest pipeline YAML/JSON (the body of PUT _ingest/pipeline/<id>); "
                        "without it documents are written as they are")
    p.add_argument("--index-body", metavar="FILE", type=Path,
                   help="JSON/YAML body of PUT <index> to create a missing index with (settings, mappings; semantic "
                        "fields are expanded client-side when the cluster has no neural-search)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="input format (default: from the path)")
    p.add_argument("--limit", type=int, metavar="N",
                   help="read only the first N records (to try a pipeline on a sample)")
    p.add_argument("--id-field", help="field (JSONL) or column (CSV) holding the document id (default: _id; CSV: an "
                                      "_id or id column); '' for a hash of the content")
    add_connection_arguments(p)
    g = p.add_argument_group("throughput and retries")
    g.add_argument("--batch-size", type=int, default=32, help="documents per pipeline batch (default: %(default)s)")
    g.add_argument("--concurrency", type=int, default=4, help="pipeline batches in flight (default: %(default)s)")
    g.add_argument("--bulk-size", type=int, default=200, help="documents per _bulk request (default: %(default)s)")
    g.add_argument("--max-retries", type=int, default=5, help="retries of 429 / 5xx answers (default: %(default)s)")
    g.add_argument("--initial-backoff", type=float, default=1.0,
                   help="seconds before the first retry, doubled each time (default: %(default)s)")
    g.add_argument("--max-backoff", type=float, default=30.0,
                   help="longest wait between retries (default: %(default)s)")
    s = p.add_argument_group("resume and reporting")
    s.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR),
                   help="where checkpoint and dead-letter files go (default: %(default)s)")
    s.add_argument("--checkpoint", metavar="FILE",
                   help="checkpoint file (default: in --state-dir, per input and index)")
    s.add_argument("--dead-letter", metavar="FILE",
                   help="JSONL of failed documents with reasons (default: in --state-dir)")
    s.add_argument("--restart", action="store_true", help="ignore the checkpoint and start from the first line")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def _state_paths(args: argparse.Namespace, input_name: str) -> tuple[Path, Path]:
    tag = hashlib.sha256(input_name.encode()).hexdigest()[:10]
    base = Path(args.state_dir) / f"{args.index}.{tag}"
    checkpoint = Path(args.checkpoint) if args.checkpoint else base.with_name(base.name + ".checkpoint.json")
    dead = Path(args.dead_letter) if args.dead_letter else base.with_name(base.name + ".dead-letter.jsonl")
    return checkpoint, dead


def _validate(args: argparse.Namespace) -> None:
    for name in ("batch_size", "concurrency", "bulk_size"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}")
    if args.max_retries < 0:
        raise InputError(f"--max-retries must be 0 or more, got {args.max_retries}")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_client_logs()
    try:
        _validate(args)
        fmt, file = resolve_input(args.input, args.format)
    except InputError as exc:
        print(f"neuralpipe ingest: {exc}", file=sys.stderr)
        return 2
    input_name = STDIN if file == "-" else str(Path(file).resolve())
    checkpoint_path, dead_path = _state_paths(args, input_name)
    job = IngestJob(options=IngestOptions(index=args.index, batch_size=args.batch_size, concurrency=args.concurrency,
                                          bulk_size=args.bulk_size, max_retries=args.max_retries,
                                          initial_backoff=args.initial_backoff, max_backoff=args.max_backoff,
                                          progress=not args.no_progress),
                    input_name=input_name, checkpoint=checkpoint_path, dead_letter=dead_path, restart=args.restart)
    source = Source(args.input, fmt, args.id_field, args.limit)
    try:
        index_body = read_index_body(args.index_body) if args.index_body else None
        stats = asyncio.run(ingest_source(connection(args), source, job, pipeline_file=args.pipeline,
                                          say=lambda msg: print(msg, file=sys.stderr), index_body=index_body))
    except (InputError, CheckpointMismatch, PipelineFileError, NodeStartError) as exc:
        print(f"neuralpipe ingest: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neuralpipe ingest: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - cluster / ML node / pipeline errors: one line, no traceback
        if not is_reportable(exc):
            raise
        print(f"neuralpipe ingest: {describe_error(exc)}", file=sys.stderr)
        for sub in getattr(exc, "errors", [])[1:]:
            print(f"  also: {describe_error(sub)}", file=sys.stderr)
        if getattr(exc, "status", None) == 404 and not args.ml_url and args.pipeline:
            print(f"  the embedded ML node in [{args.data_dir}] does not have this model and it is not in the "
                  "offline catalog: register it with `neuralpipe models register NAME --deploy`, "
                  "or pass --ml-url of an ML node that has it", file=sys.stderr)
        return 2
    _print_summary(args, stats, checkpoint_path, dead_path)
    if stats.aborted:
        return 2
    return 1 if stats.failed_total else 0


def _print_summary(args: argparse.Namespace, stats: IngestStats, checkpoint: Path, dead: Path) -> None:
    first = stats.first_failures
    if args.json:
        out = stats.to_json()
        out.update({"index": args.index, "checkpoint": str(checkpoint),
                    "dead_letter": str(dead) if stats.failed_total else None,
                    "first_failures": [{"line": f.line, "stage": f.stage, "reason": f.reason} for f in first]})
        print(json.dumps(out, indent=2))
        return
    s = stats.to_json()
    print(f"\ningest into [{args.index}] {'ABORTED: ' + stats.aborted if stats.aborted else 'done'}")
    print(f"  read        {stats.read:>9,} input records")
    print(f"  skipped     {stats.skipped:>9,} already done (checkpoint {checkpoint})")
    print(f"  indexed     {stats.indexed:>9,}  ({s['docs_per_second']:,} docs/s over {stats.elapsed:.1f}s)")
    print(f"  failed      {stats.failed_total:>9,}  (parse {stats.failed['parse']}, pipeline "
          f"{stats.failed['pipeline']}, bulk {stats.failed['bulk']})")
    if stats.retried_429 or stats.retried_5xx or stats.retried_ml:
        print(f"  retried     bulk 429: {stats.retried_429}, bulk 5xx: {stats.retried_5xx}, ML: {stats.retried_ml}")
    if stats.failed_total:
        print(f"  dead-letter {dead}")
        for f in first:
            print(f"    line {f.line}: [{f.stage}] {f.reason}")
    if stats.aborted:
        print("  run the same command again to resume from the checkpoint")
