"""``neuralpipe search``: where fields and models come from, the connections, one query, its response."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from opensearchpy import AsyncOpenSearch

from neuralpipe.admin.models import model_admin
from neuralpipe.ingest.setup import read_pipeline_body
from neuralpipe.local import Connection, make_client, make_ml_client, open_endpoints
from neuralpipe.search.query import (
    DEFAULT_HYBRID_PIPELINE,
    QueryConfigError,
    QueryFields,
    build_query,
    execute,
    fields_from_ingest_pipeline,
    fields_from_mapping,
)
from processors.pipeline import SearchPipeline


@dataclass(frozen=True)
class SearchRequest:
    index: str
    kind: str  # neural | sparse | hybrid | match | body
    text: str | None = None
    body_file: Path | None = None
    size: int = 10
    fields: QueryFields = QueryFields()  # what the command line named; the rest comes from the index
    ingest_pipeline: Path | None = None
    search_pipeline: Path | None = None


def read_body(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    if not isinstance(data, dict):
        raise QueryConfigError(f"[{path}] must hold a search body object, got {type(data).__name__}")
    return data


async def resolve_fields(client: AsyncOpenSearch, index: str, given: QueryFields,
                         ingest_pipeline: Path | None) -> QueryFields:
    fields = given
    if ingest_pipeline is not None:
        fields = fields.merged(fields_from_ingest_pipeline(read_pipeline_body(ingest_pipeline)))
    for entry in (await client.indices.get_mapping(index=index)).values():
        return fields.merged(fields_from_mapping(entry.get("mappings") or {}))
    return fields


def _models_used(kind: str, fields: QueryFields, pipeline: SearchPipeline | None) -> list[str]:
    refs = pipeline.model_refs() if pipeline is not None else []
    if kind in ("neural", "hybrid") and fields.dense_model:
        refs.append(fields.dense_model)
    if kind in ("sparse", "hybrid") and fields.sparse_model:
        refs.append(fields.sparse_model)
    return refs


async def search(req: SearchRequest, conn: Connection, *, say: Callable[[str], None]
                 ) -> tuple[dict[str, Any], QueryFields]:
    """Run the request; on an embedded ML node, first register and deploy the catalog models it names that are
    missing (saying so through ``say``)."""
    async with open_endpoints(opensearch=conn.opensearch, ml_url=conn.ml_url, data_dir=conn.data_dir,
                              need_ml=req.kind != "match", existing_data=True) as endpoints:
        client = make_client(endpoints.opensearch_url, conn.options)
        ml = make_ml_client(endpoints.ml_url, conn.options) if endpoints.ml_url else None
        try:
            fields = await resolve_fields(client, req.index, req.fields, req.ingest_pipeline)
            if req.body_file is not None:
                body = read_body(req.body_file)
                body.setdefault("size", req.size)
            else:
                body = build_query(req.kind, req.text or "", fields, size=req.size)
            pipeline_body = read_pipeline_body(req.search_pipeline) if req.search_pipeline else (
                DEFAULT_HYBRID_PIPELINE if req.kind == "hybrid" else None)
            pipeline = SearchPipeline.from_body("cli", pipeline_body, ml=ml) if pipeline_body and ml else None
            if ml is not None and not conn.ml_url:
                async with model_admin(ml.base_url, conn.options, say=say) as admin:
                    await admin.ensure_catalog_models(_models_used(req.kind, fields, pipeline))
            if pipeline is not None:
                await pipeline.prepare()
            return await execute(req.index, body, client=client, ml=ml, pipeline=pipeline), fields
        finally:
            await client.close()
            if ml is not None:
                await ml.close()
