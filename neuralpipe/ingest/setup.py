"""Before the first document: read the pipeline file, build the pipeline, make sure the target index exists."""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import NotFoundError, RequestError

from neuralpipe.admin.models import ModelAdmin
from neuralpipe.search.query import fields_from_ingest_pipeline
from opensearch_contract.errors import OpenSearchError
from processors import semantic
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


def read_index_body(path: Path) -> dict[str, Any]:
    """A ``PUT <index>`` body (settings, mappings) from a JSON or YAML file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineFileError(f"cannot read index body [{path}]: {exc}") from None
    if not isinstance(data, dict) or set(data) - {"settings", "mappings", "aliases"}:
        raise PipelineFileError(f"index body [{path}] must be an object with settings and/or mappings")
    return data


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


def _no_semantic_handler(exc: RequestError) -> bool:
    """The cluster has no neural-search: it refuses a ``semantic`` mapping entry as an unknown type."""
    return exc.error == "mapper_parsing_exception" and "No handler for type [semantic]" in str(exc.info)


async def ensure_index(client: AsyncOpenSearch, index: str, body: Callable[[], Awaitable[dict[str, Any]]],
                       ml: MLClient | None = None) -> bool:
    """Create ``index`` with ``await body()`` unless it exists. True when this call created it. A body with
    ``semantic`` fields goes as is (a cluster with neural-search does their work); a cluster without neural-search
    gets the mapping OpenSearch would have made (processors.semantic, client-side: ``neuralpipe ingest`` and
    ``search`` then write and query the generated fields)."""
    if await client.indices.exists(index=index):
        return False
    created = (await body()) or None
    try:
        try:
            await client.indices.create(index=index, body=created)
        except RequestError as exc:
            if created is None or ml is None or not _no_semantic_handler(exc):
                raise
            mappings = created["mappings"]
            expanded = semantic.expand(mappings, await semantic.fetch_models(mappings, ml), client_side=True)
            await client.indices.create(index=index, body={**created, "mappings": expanded})
            log.info("index [%s]: semantic fields expanded client-side (the cluster has no neural-search)", index)
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
    index_body: dict[str, Any] | None = None  # the PUT <index> body to start from (semantic fields welcome)


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
        made = await index_body_for(target.pipeline_body, ml, properties=target.properties, exact=target.exact,
                                    meta=target.meta)
        return _merged(target.index_body, made) if target.index_body else made

    created = await ensure_index(client, target.index, body, ml)
    fields = await client_side_semantic_fields(client, target.index)
    if fields:
        if ml is None:
            raise OpenSearchError(f"index [{target.index}] has semantic fields {sorted(fields)} that neuralpipe embeds "
                                  f"client-side: it needs an ML node (--ml-url)", status=400,
                                  error_type="illegal_argument_exception")
        step = semantic.SemanticFieldProcessor(fields)
        if pipeline is None:
            pipeline = IngestPipeline(target.pipeline_id, {"processors": []}, [step], [], ml)
        else:  # after the user's processors, as OpenSearch runs its system processor after the pipelines
            pipeline.processors.append(step)
    return pipeline, created


async def client_side_semantic_fields(client: AsyncOpenSearch, index: str) -> dict[str, semantic.SemanticField]:
    """The semantic fields neuralpipe handles for ``index``: those it expanded client-side when it created the index
    (``_meta.neuralpipe.semantic``); ``type: semantic`` fields are the cluster's own work."""
    try:
        mappings = await client.indices.get_mapping(index=index)
    except NotFoundError:
        return {}
    for entry in mappings.values():
        return semantic.fields_of(entry.get("mappings") or {}, client_side=True)
    return {}


def _merged(base: dict[str, Any], made: dict[str, Any]) -> dict[str, Any]:
    """The user's index body with the pipeline's generated settings, properties and _meta added beside its own."""
    out = copy.deepcopy(base)
    for key in ("settings",):
        if made.get(key):
            out[key] = {**made[key], **(out.get(key) or {})}
    mappings = out.setdefault("mappings", {})
    made_mappings = made.get("mappings") or {}
    mappings["properties"] = {**(made_mappings.get("properties") or {}), **(mappings.get("properties") or {})}
    if made_mappings.get("_meta"):
        mappings["_meta"] = {**made_mappings["_meta"], **(mappings.get("_meta") or {})}
    return out
