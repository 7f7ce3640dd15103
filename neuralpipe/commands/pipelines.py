"""``neuralpipe pipelines validate FILE...`` and ``neuralpipe pipelines export FILE [--ml-url URL]``.

validate: loads each YAML/JSON pipeline file and builds it; prints every error (processor type, tag, property)
and exits 1 if any file is bad. With ``--ml-url`` it also resolves each model name/id on the ML node.
export: prints the OpenSearch JSON body (``PUT _ingest/pipeline/<id>`` or ``PUT _search/pipeline/<id>``); with
``--ml-url`` model names are replaced by the ids the ML node knows them by. ``--mapping`` prints instead the index
body (settings + mappings) an ingest pipeline's output needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from processors.errors import OpenSearchError, ProcessorConfigError, describe_error
from processors.mapping import mapping_for_pipeline
from processors.mlclient import MLClient
from processors.pipeline import PipelineFile, build_pipeline, load_pipeline_file, resolve_model_names


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("pipelines", help="validate pipeline files, export their OpenSearch JSON bodies")
    sub = parser.add_subparsers(dest="pipelines_command", metavar="ACTION", required=True)
    validate = sub.add_parser("validate", help="check pipeline files; report every error")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("--ml-url", help="also resolve model names/ids on this ML node")
    export = sub.add_parser("export", help="print the OpenSearch JSON body of a pipeline file")
    export.add_argument("file", metavar="FILE")
    export.add_argument("--ml-url", help="replace model names by their ids on this ML node")
    export.add_argument("--mapping", action="store_true",
                        help="print the index body (settings + mappings) for an ingest pipeline instead "
                             "(needs --ml-url)")
    export.add_argument("--indent", type=int, default=2)


def run(args: argparse.Namespace) -> int:
    if args.pipelines_command == "validate":
        return asyncio.run(_validate(args.files, args.ml_url))
    return asyncio.run(_export(args))


def _report(path: str, exc: OpenSearchError) -> None:
    errors = exc.errors if isinstance(exc, ProcessorConfigError) and exc.errors else [exc]
    print(f"FAIL {path}: {len(errors)} error(s)", file=sys.stderr)
    for err in errors:
        print(f"  - {describe_error(err)}", file=sys.stderr)


async def _validate(files: list[str], ml_url: str | None) -> int:
    bad = 0
    ml = MLClient(ml_url) if ml_url else None
    try:
        for path in files:
            try:
                pf = load_pipeline_file(path)
                pipeline = build_pipeline(pf, ml=ml)  # type: ignore[arg-type]
                refs = pipeline.model_refs()
                if ml is not None:
                    await _check_models(refs, ml)
            except OpenSearchError as exc:
                bad += 1
                _report(path, exc)
                continue
            n = len(pipeline.processors) if pf.kind == "ingest" else (
                len(pipeline.request_processors) + len(pipeline.response_processors)
                + len(pipeline.phase_results_processors))
            models = f", models: {', '.join(dict.fromkeys(refs))}" if refs else ""
            print(f"OK   {path}: {pf.kind} pipeline [{pf.id}], {n} processor(s){models}")
    finally:
        if ml is not None:
            await ml.close()
    return 1 if bad else 0


async def _check_models(refs: list[str], ml: MLClient) -> None:
    errors: list[OpenSearchError] = []
    for ref in dict.fromkeys(refs):
        try:
            await ml.resolve_model_id(ref)
        except OpenSearchError as exc:
            errors.append(exc)
    if errors:
        raise ProcessorConfigError("; ".join(e.reason for e in errors), errors)


async def _export(args: argparse.Namespace) -> int:
    try:
        pf: PipelineFile = load_pipeline_file(args.file)
        build_pipeline(pf, ml=None)  # type: ignore[arg-type]  # validate before printing anything
    except OpenSearchError as exc:
        _report(args.file, exc)
        return 1
    if args.mapping and (pf.kind != "ingest" or not args.ml_url):
        print("--mapping needs an ingest pipeline file and --ml-url (the model's embedding_dimension)",
              file=sys.stderr)
        return 2
    body = pf.body
    if args.ml_url:
        async with MLClient(args.ml_url) as ml:
            try:
                if args.mapping:
                    body = await mapping_for_pipeline(pf.body, ml=ml, pipeline_id=pf.id)
                else:
                    body = await resolve_model_names(pf.kind, pf.body, ml=ml)
            except OpenSearchError as exc:
                _report(args.file, exc)
                return 1
    print(json.dumps(body, indent=args.indent or None, ensure_ascii=False))
    return 0
