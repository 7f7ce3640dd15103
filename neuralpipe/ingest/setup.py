"""Before the first document: read the pipeline file, build the pipeline, make sure the target index exists."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import RequestError

from neuralpipe.admin.models import ModelAdmin
from neuralpipe.search.query import fields_from_ingest_pipeline
from opensearch_contract.errors import OpenSearchError
from processors.mapping import mapping_for_pipeline
from processors.mlclient import MLClient
from processors.pipeline import IngestPipeline, load_pipeline_file

log = logging.getLogger(__name__)


class PipelineFileError(Exception):
    """The pipeline file cannot be read or is not a valid pipeline."""


def read_pipeline_body(path: Path) -> dict[str, Any]:
    """The JSON body of ``PUT _ingest/pipeline/<id>`` (or ``_search/pipeline``) from a YAML/JSON file."""
    if not path.is_file():
        raise PipelineFileError(f"no such pipeline file [{path}]")
    try:
        return load_pipeline_file(path).body
    except OpenSearchError as exc:
        raise PipelineFileError(exc.reason) from None


def use_exact_knn(index_body: dict[str, Any]) -> None:
    """Turn every ``knn_vector`` field's method into exact (flat) search, keeping its space type."""
    for spec in _walk_properties(index_body.get("mappings", {}).get("properties", {})):
        if spec.get("type") == "knn_vector":
            method = dict(spec.get("method") or {})
            method["name"] = "flat"
            method.pop("parameters", None)
            spec["method"] = method


def _walk_properties(props: dict[str, Any]) -> Any:
    for spec in props.values():
        if isinstance(spec, dict):
            yield spec
            yield from _walk_properties(spec.get("properties", {}))


async def index_body_for(pipeline_body: dict[str, Any] | None, ml: MLClient | None, *,
                         properties: dict[str, Any] | None = None, exact: bool = False,
                         meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Settings and mappings for what the pipeline writes (plus ``properties``), with ``_meta.neuralpipe``: the
    fields and models the pipeline used, so ``neuralpipe search`` needs no flags, and ``meta``."""
    body: dict[str, Any] = {}
    neuralpipe_meta = dict(meta or {})
    if pipeline_body is not None and ml is not None:
        body = await mapping_for_pipeline(pipeline_body, ml=ml)
        neuralpipe_meta = {**fields_from_ingest_pipeline(pipeline_body).to_meta(), **neuralpipe_meta}
    if properties:
        body.setdefault("mappings", {}).setdefault("properties", {}).update(properties)
    if exact:
        use_exact_knn(body)
    if neuralpipe_meta:
        body.setdefault("mappings", {}).setdefault("_meta", {})["neuralpipe"] = neuralpipe_meta
    return body


async def ensure_index(client: AsyncOpenSearch, index: str, body: Callable[[], Awaitable[dict[str, Any]]]) -> bool:
    """Create ``index`` with ``await body()`` unless it exists. True when this call created it."""
    if await client.indices.exists(index=index):
        return False
    try:
        await client.indices.create(index=index, body=(await body()) or None)
    except RequestError as exc:
        if exc.error == "resource_already_exists_exception":  # created meanwhile by someone else
            return False
        raise
    log.info("created index [%s]", index)
    return True


@dataclass(frozen=True)
class Target:
    """The index an ingest writes and the pipeline it runs (None: documents as they are)."""

    index: str
    pipeline_id: str = "ingest"
    pipeline_body: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None  # extra mapped fields
    exact: bool = False  # flat k-NN instead of HNSW
    meta: dict[str, Any] | None = None  # more of _meta.neuralpipe


async def prepare_target(client: AsyncOpenSearch, ml: MLClient | None, target: Target, *,
                         admin: ModelAdmin | None = None) -> tuple[IngestPipeline | None, bool]:
    """Build the pipeline (with ``admin``: after registering the catalog models it names that are missing), resolve
    its model names, and create the index unless it exists. Returns the pipeline and whether the index is new."""
    pipeline = None
    if target.pipeline_body is not None and ml is not None:
        pipeline = IngestPipeline.from_body(target.pipeline_id, target.pipeline_body, ml=ml)
        if admin is not None:
            await admin.ensure_catalog_models(pipeline.model_refs())
        await pipeline.prepare()  # model names -> ids: a missing model fails here, before the first document

    async def body() -> dict[str, Any]:
        return await index_body_for(target.pipeline_body, ml, properties=target.properties, exact=target.exact,
                                    meta=target.meta)

    return pipeline, await ensure_index(client, target.index, body)
