"""``neuralpipe pipelines``: validate pipeline files (every error at once) and export their OpenSearch JSON bodies.

validate builds each file and prints every error (processor type, tag, property); with an ML node it also resolves
each model name or id. export prints the body of ``PUT _ingest/pipeline/<id>`` or ``PUT _search/pipeline/<id>``
(model names replaced by ids on the ML node), or the index body an ingest pipeline's output needs.
"""

from __future__ import annotations

import json
import sys

from opensearch_contract.errors import OpenSearchError
from processors.errors import ProcessorConfigError, describe_error
from processors.mapping import mapping_for_pipeline
from processors.mlclient import MLClient
from processors.pipeline import IngestPipeline, PipelineFile, build_pipeline, load_pipeline_file, resolve_model_names


def _report(path: str, exc: OpenSearchError) -> None:
    errors = exc.errors if isinstance(exc, ProcessorConfigError) and exc.errors else [exc]
    print(f"FAIL {path}: {len(errors)} error(s)", file=sys.stderr)
    for err in errors:
        print(f"  - {describe_error(err)}", file=sys.stderr)


async def validate(files: list[str], ml_url: str | None) -> int:
    """Print OK or every error of each file (exit code 1 if any is bad); with ``ml_url`` resolve its models too."""
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
            n = len(pipeline.processors) if isinstance(pipeline, IngestPipeline) else (
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


async def export(path: str, *, ml_url: str | None, mapping: bool, indent: int) -> int:
    """Print the pipeline's OpenSearch JSON body (model names resolved with ``ml_url``) or, with ``mapping``, the
    index body its output needs."""
    try:
        pf: PipelineFile = load_pipeline_file(path)
        build_pipeline(pf, ml=None)  # type: ignore[arg-type]  # validate before printing anything
    except OpenSearchError as exc:
        _report(path, exc)
        return 1
    if mapping and (pf.kind != "ingest" or not ml_url):
        print("--mapping needs an ingest pipeline file and --ml-url (the model's embedding_dimension)",
              file=sys.stderr)
        return 2
    body = pf.body
    if ml_url:
        async with MLClient(ml_url) as ml:
            try:
                if mapping:
                    body = await mapping_for_pipeline(pf.body, ml=ml, pipeline_id=pf.id)
                else:
                    body = await resolve_model_names(pf.kind, pf.body, ml=ml)
            except OpenSearchError as exc:
                _report(path, exc)
                return 1
    print(json.dumps(body, indent=indent or None, ensure_ascii=False))
    return 0
