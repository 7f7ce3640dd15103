"""Before the first document: load the pipeline file and make sure the target index exists."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from opensearchpy.exceptions import RequestError

log = logging.getLogger(__name__)


class PipelineFileError(Exception):
    """The pipeline file cannot be read or is not a valid pipeline."""


def read_pipeline_body(path: Path) -> dict[str, Any]:
    """The JSON body of ``PUT _ingest/pipeline/<id>`` (or ``_search/pipeline``) from a YAML/JSON file."""
    try:
        from processors.pipeline import load_pipeline_file
    except ImportError:  # pragma: no cover - processors not installed
        load_pipeline_file = None
    if not path.is_file():
        raise PipelineFileError(f"no such pipeline file [{path}]")
    if load_pipeline_file is not None:
        loaded = load_pipeline_file(path)
        body = loaded[1] if isinstance(loaded, tuple) else getattr(loaded, "body", loaded)
    else:
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(body, dict):
        raise PipelineFileError(f"pipeline file [{path}] must hold an object with [processors], got {type(body).__name__}")
    return body


async def load_ingest_pipeline(pipeline_id: str, body: dict[str, Any], ml: Any) -> Any:
    from processors.pipeline import IngestPipeline

    pipeline = IngestPipeline.from_body(pipeline_id, body, ml=ml)
    prepare = getattr(pipeline, "prepare", None)  # resolves model names to ids, if the pipeline offers it
    if prepare is not None:
        await prepare()
    return pipeline


async def load_search_pipeline(pipeline_id: str, body: dict[str, Any], ml: Any) -> Any:
    from processors.pipeline import SearchPipeline

    pipeline = SearchPipeline.from_body(pipeline_id, body, ml=ml)
    prepare = getattr(pipeline, "prepare", None)
    if prepare is not None:
        await prepare()
    return pipeline


async def ensure_index(client: Any, index: str, pipeline_body: dict[str, Any] | None, ml: Any) -> bool:
    """Create ``index`` with the mapping derived from the pipeline if it does not exist.

    Returns True when this call created it."""
    if await client.indices.exists(index=index):
        return False
    body: dict[str, Any] = {}
    if pipeline_body is not None:
        from processors.mapping import mapping_for_pipeline

        body = await mapping_for_pipeline(pipeline_body, ml=ml)
        # remember which fields and models the pipeline used, so `neuralpipe search` needs no flags
        from neuralpipe.searching import fields_from_ingest_pipeline

        meta = fields_from_ingest_pipeline(pipeline_body).to_meta()
        if meta:
            body.setdefault("mappings", {}).setdefault("_meta", {})["neuralpipe"] = meta
    try:
        await client.indices.create(index=index, body=body or None)
    except RequestError as exc:
        if exc.error == "resource_already_exists_exception":  # created meanwhile by someone else
            return False
        raise
    log.info("created index [%s]", index)
    return True
