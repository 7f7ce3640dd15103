"""Server-side ingest and search pipelines, run through the ``processors`` package."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from opensearch_contract.errors import IllegalArgument, OpenSearchError, ResourceNotFound

NEEDS_ML_PROCESSORS = {"text_embedding", "sparse_encoding", "text_image_embedding", "ml_inference"}
ML_QUERIES = {"neural", "neural_sparse"}
SearchFn = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def _no_ml(what: str) -> IllegalArgument:
    return IllegalArgument(f"{what} needs an ML node, and this data node has none: start it with "
                           f"`neuralpipe serve --roles ml,data` or pass --ml-url")


def clauses_needing_a_model(query: Any) -> set[str]:
    """The ``neural`` / ``neural_sparse`` clauses in ``query`` that need a predict call: every ``neural``; a
    ``neural_sparse`` only with a ``model_id`` and no ``query_tokens`` (an ``analyzer`` runs without a model)."""
    found: set[str] = set()
    if isinstance(query, dict):
        for key, value in query.items():
            if key == "neural" or key == "neural_sparse" and _sparse_needs_model(value):
                found.add(key)
            else:
                found |= clauses_needing_a_model(value)
    elif isinstance(query, list):
        for value in query:
            found |= clauses_needing_a_model(value)
    return found


def _sparse_needs_model(clause: Any) -> bool:
    fields = clause.values() if isinstance(clause, dict) else ()
    return any(isinstance(p, dict) and "model_id" in p and p.get("query_tokens") is None for p in fields)


def find_keys(obj: Any, keys: set[str]) -> set[str]:
    """Which of ``keys`` appear as object keys anywhere in ``obj``."""
    found: set[str] = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in keys:
                found.add(key)
            found |= find_keys(value, keys)
    elif isinstance(obj, list) and obj and isinstance(obj[0], (dict, list)):
        for value in obj:  # clause lists; a list of values (a query vector, terms) holds no keys
            found |= find_keys(value, keys)
    return found


class PipelineRunner:
    def __init__(self, ml_url: str | None, *, query_cache_size: int | None = None) -> None:
        self.ml_url = ml_url
        self.query_cache_size = query_cache_size  # None: the ML client's default
        self._ml: Any = None
        self._cache: dict[tuple[str, str], tuple[Any, Any]] = {}

    @property
    def ml(self) -> Any:
        if self._ml is None and self.ml_url:
            from processors.mlclient import MLClient  # here: a plain search never pays for importing processors
            if self.query_cache_size is None:
                self._ml = MLClient(self.ml_url)
            else:
                self._ml = MLClient(self.ml_url, query_cache_size=self.query_cache_size)
        return self._ml

    def query_cache_stats(self) -> Any:
        """The ML client's query-embedding cache counts (``processors.mlclient.CacheStats``), None before any use."""
        return self._ml.query_cache.stats() if self._ml is not None else None

    async def close(self) -> None:
        if self._ml is not None:
            await self._ml.close()
            self._ml = None

    def _check_ml(self, kind: str, pipeline_id: str, body: Any) -> None:
        if self.ml_url:
            return
        procs = body.get("processors", []) if isinstance(body, dict) else []
        if kind == "search":
            procs = [p for key in ("request_processors", "response_processors") for p in body.get(key, [])]
        types = sorted({t for p in procs if isinstance(p, dict) for t in p} & (NEEDS_ML_PROCESSORS |
                                                                                {"neural_query_enricher"}))
        if types and kind == "ingest":
            raise _no_ml(f"pipeline [{pipeline_id}] uses [{', '.join(types)}], which")

    def build(self, kind: str, pipeline_id: str, body: Any, *, check_ml: bool = True) -> Any:
        """Validate a pipeline body (raises ``ProcessorConfigError`` listing every error). ``check_ml=False``
        stores a pipeline that needs an ML node on a node without one (it fails clearly when used)."""
        if check_ml:
            self._check_ml(kind, pipeline_id, body)
        from processors.pipeline import IngestPipeline, SearchPipeline  # here: see ``ml`` (start-up cost)
        cls = IngestPipeline if kind == "ingest" else SearchPipeline
        return cls.from_body(pipeline_id, body, ml=self.ml)

    def get(self, kind: str, pipeline_id: str, stored: dict[str, Any]) -> Any:
        body = stored.get(pipeline_id)
        if body is None:
            raise IllegalArgument(f"pipeline with id [{pipeline_id}] does not exist") if kind == "ingest" else \
                ResourceNotFound(f"Pipeline {pipeline_id} not found")
        cached = self._cache.get((kind, pipeline_id))
        if cached is not None and cached[0] is body:
            return cached[1]
        pipeline = self.build(kind, pipeline_id, body)
        self._cache[(kind, pipeline_id)] = (body, pipeline)
        return pipeline

    def forget(self, kind: str, pipeline_id: str) -> None:
        self._cache.pop((kind, pipeline_id), None)

    async def ingest(self, pipeline: Any, docs: list[tuple[str, str | None, dict[str, Any]]],
                     lookup: Any) -> list[dict[str, Any] | OpenSearchError]:
        """Run ``pipeline`` over (index, id, source) docs: the new source, or the doc's error."""
        from processors.document import IngestDocument  # here: see ``ml`` (start-up cost)
        ingest_docs = [IngestDocument(index, doc_id, source) for index, doc_id, source in docs]
        results = await pipeline.run(ingest_docs, lookup=lookup)
        out: list[dict[str, Any] | OpenSearchError] = []
        for result in results:
            if isinstance(result, OpenSearchError):
                out.append(result)
            elif isinstance(result, Exception):
                out.append(IllegalArgument(str(result)))
            else:
                out.append(result.source)
        return out

    async def search(self, index: str, body: dict[str, Any], pipeline: Any, search_fn: SearchFn) -> dict[str, Any]:
        query = body.get("query")
        used = clauses_needing_a_model(query)
        if used and self.ml is None:
            raise _no_ml(f"query [{sorted(used)[0]}]")
        from processors.search import run_search  # here: see ``ml`` (start-up cost)
        return await run_search(index, body, search_fn=search_fn, ml=self.ml, pipeline=pipeline)
