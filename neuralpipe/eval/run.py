"""``neuralpipe eval``: ingest a BEIR corpus through the real ingest pipeline (dense MiniLM + SPLADE doc encoder over
BEIR's ``title + " " + text``), run every judged query as dense, sparse, BM25 and hybrid, score the runs.

Eval writes only indices it created: each carries ``_meta.neuralpipe.created_by: neuralpipe eval`` in its mapping,
and an existing index without that mark is refused, never deleted or overwritten.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, cast

import yaml
from opensearchpy import AsyncOpenSearch
from opensearchpy.helpers import async_bulk
from tqdm import tqdm

from neuralpipe.admin.models import TOKENIZER_NAME, deploy_offline_models, model_admin
from neuralpipe.eval.methods import (
    METHOD_TITLES,
    METHODS,
    PASSAGE_FIELD,
    EvalModels,
    adapt_ingest_pipeline,
    eval_document,
    search_body,
    search_pipeline_body,
)
from neuralpipe.eval.metrics import BeirDataset, Run, evaluate, load_beir, run_from_hits
from neuralpipe.ingest.job import IngestJob, run_ingest
from neuralpipe.ingest.readers import Record
from neuralpipe.ingest.runner import IngestOptions
from neuralpipe.ingest.setup import Target, prepare_target
from neuralpipe.local import Connection, make_client, make_ml_client, open_endpoints
from opensearch_contract.errors import OpenSearchError
from processors.mlclient import MLClient
from processors.pipeline import SearchPipeline, load_pipeline_file
from processors.search import run_search

log = logging.getLogger(__name__)

CREATED_BY = "neuralpipe eval"
DEFAULT_PIPELINE = "pipelines/ingest/dense-sparse.yaml"  # package data of neuralpipe


class EvalError(Exception):
    """A problem the user can fix (bad arguments, a missing model, an index eval did not create)."""


@dataclass(frozen=True)
class EvalRequest:
    dataset: Path
    split: str = "test"
    methods: tuple[str, ...] = METHODS
    index: str | None = None
    exact: bool = False
    pipeline: Path | None = None
    reingest: bool = False
    models: tuple[str, str, str] | None = None  # dense, sparse, tokenizer ids or names; None: the offline ones
    k: int = 100
    batch_size: int = 32
    concurrency: int = 4
    max_queries: int | None = None
    analyzer: str = "english"  # of the passage field: English passages get OpenSearch's english analyzer


@dataclass
class EvalReport:
    """Mean metrics per method, the runs behind them, and what was measured: dataset, index, models, timings."""

    results: dict[str, dict[str, float]]
    runs: dict[str, Run]
    facts: dict[str, Any]

    def headline(self) -> str:
        f = self.facts
        ingest = f.get("ingest")  # "reused", "copied from ...", or the ingest summary
        how = ingest if isinstance(ingest, str) else f"ingested at {(ingest or {}).get('docs_per_second')} docs/s"
        return (f"{f['dataset']} (split {f['split']}): {f['docs']} docs ({how}), {f['queries']} queries; "
                f"index {f['index']} ({f['knn']}); searches took {f.get('search_seconds')} s")


def format_table(results: dict[str, dict[str, float]]) -> str:
    """One row per method, one column per metric."""
    names = list(next(iter(results.values())).keys()) if results else []
    width = max(len(METHOD_TITLES.get(m, m)) for m in results) if results else 10
    header = f"{'method':<{width}}  " + "  ".join(f"{n.replace('ndcg', 'nDCG'):>10}" for n in names)
    lines = [header, "-" * len(header)]
    for method, values in results.items():
        cells = "  ".join(f"{values[n]:>10.4f}" for n in names)
        lines.append(f"{METHOD_TITLES.get(method, method):<{width}}  {cells}")
    return "\n".join(lines)


@dataclass
class EvalContext:
    dataset: BeirDataset
    index: str
    models: EvalModels
    client: AsyncOpenSearch
    ml: MLClient  # ingest (batched predict calls)
    query_ml: MLClient  # a CachingML: query-time inference, once per (model, text)
    k: int
    concurrency: int
    pipeline_body: dict[str, Any] = field(default_factory=dict)
    analyzer: str = "english"
    state_dir: Path = Path("data") / "eval"
    facts: dict[str, Any] = field(default_factory=dict)


def parse_methods(text: str) -> tuple[str, ...]:
    chosen = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in chosen if m not in METHODS]
    if bad or not chosen:
        raise EvalError(f"unknown method(s) {bad or list(chosen)}; valid: {', '.join(METHODS)}")
    return chosen


def default_index_name(dataset_dir: Path, exact: bool) -> str:
    stem = re.sub(r"[^a-z0-9_-]+", "-", dataset_dir.resolve().name.lower()).strip("-_") or "dataset"
    return f"neuralpipe-eval-{stem}-{'exact' if exact else 'hnsw'}"


def eval_pipeline_body(path: Path | None, models: EvalModels) -> dict[str, Any]:
    """The ingest pipeline eval runs: ``--pipeline`` (or the shipped dense-sparse one) re-pointed at ``passage``."""
    try:
        if path is None:
            body = yaml.safe_load(resources.files("neuralpipe").joinpath(DEFAULT_PIPELINE).read_text(encoding="utf-8"))
        else:
            body = load_pipeline_file(path).body
        return adapt_ingest_pipeline(body, models)
    except ValueError as exc:
        raise EvalError(f"{path or DEFAULT_PIPELINE}: {exc}") from None
    except OpenSearchError as exc:
        raise EvalError(f"{path}: {exc.reason}") from None


def _load_dataset(req: EvalRequest) -> BeirDataset:
    dataset = load_beir(req.dataset, req.split)
    if req.max_queries:
        keep = list(dataset.queries)[: req.max_queries]
        dataset.queries = {q: dataset.queries[q] for q in keep}
        dataset.qrels = {q: dataset.qrels[q] for q in keep}
    return dataset


async def run_eval(req: EvalRequest, conn: Connection) -> EvalReport:
    dataset = _load_dataset(req)
    index = req.index or default_index_name(req.dataset, req.exact)
    async with open_endpoints(opensearch=conn.opensearch, ml_url=conn.ml_url, data_dir=conn.data_dir) as ends:
        client = make_client(ends.opensearch_url, conn.options)
        try:
            if req.exact and not ends.embedded:
                await _check_exact_supported(client, ends.opensearch_url)
            ml_url = ends.ml_url
            assert ml_url is not None, "open_endpoints starts an ML node when none is given (need_ml)"
            async with (make_ml_client(ml_url, conn.options) as ml,
                        make_ml_client(ml_url, conn.options, client_class=CachingML) as query_ml):
                if req.models is not None:
                    models = EvalModels(*[await ml.resolve_model_id(m) for m in req.models])
                else:
                    models = await _deploy_offline_models(ml_url, conn, dataset)
                ctx = EvalContext(dataset, index, models, client, ml, query_ml, req.k, max(1, req.concurrency),
                                  pipeline_body=eval_pipeline_body(req.pipeline, models),
                                  state_dir=conn.data_dir / "eval", analyzer=req.analyzer)
                await ensure_eval_index(ctx, exact=req.exact, reingest=req.reingest, batch_size=req.batch_size)
                runs = await run_queries(ctx, list(req.methods))
        finally:
            await client.close()
    facts = {"dataset": str(req.dataset), "split": req.split, "docs": len(dataset.corpus),
             "queries": len(dataset.queries), "index": index, "knn": "exact" if req.exact else "hnsw",
             "models": vars(models), "analyzer": req.analyzer, **ctx.facts}
    return EvalReport({m: evaluate(dataset.qrels, runs[m]).means for m in req.methods}, runs, facts)


async def _check_exact_supported(client: AsyncOpenSearch, url: str) -> None:
    version = (await client.info()).get("version", {})
    if version.get("build_type") != "neuralpipe":
        raise EvalError("--exact needs neuralpipe's data node (a flat knn_vector method); OpenSearch's k-NN plugin "
                        f"has none, and {url} is OpenSearch {version.get('number')}")


async def _deploy_offline_models(ml_url: str, conn: Connection, dataset: BeirDataset) -> EvalModels:
    """Register and deploy the offline models (the demo's step); the tokenizer model's IDF is built from this
    collection's passages and registered under its own name, so it never collides with the demo's."""
    name = re.sub(r"[^a-z0-9_-]+", "-", (dataset.path.name if dataset.path else "dataset").lower())
    work = conn.data_dir / "eval" / name
    work.mkdir(parents=True, exist_ok=True)
    idf_corpus = work / "idf-corpus.txt"
    if not idf_corpus.exists():
        with tempfile.NamedTemporaryFile("w", dir=work, delete=False, encoding="utf-8") as fh:
            for doc_id in dataset.corpus:
                fh.write(dataset.passage(doc_id).replace("\n", " ") + "\n")
        Path(fh.name).replace(idf_corpus)
    async with model_admin(ml_url, conn.options, say=lambda msg: print(msg, file=sys.stderr)) as admin:
        ids = await deploy_offline_models(admin, idf_corpus=idf_corpus, package_dir=work / "models",
                                          tokenizer_name=f"{TOKENIZER_NAME}-{name}")
    return EvalModels(dense=ids["dense"], sparse=ids["sparse"], tokenizer=ids["tokenizer"])


class CachingML(MLClient):
    """An ML client with query inference memoised per (model, text): each query text is embedded once even
    though dense and both hybrid methods ask for it. Queries only: ingest keeps a plain client, whose batches
    must stay whole."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # MLClient's arguments
        super().__init__(*args, **kwargs)
        self._cache: dict[tuple[str, str, str, str], Any] = {}
        self._locks: dict[tuple[str, str, str, str], asyncio.Lock] = {}

    async def _cached(self, kind: str, model_id: str, texts: list[str], options: str,
                      infer: Callable[[list[str]], Awaitable[list[Any]]]) -> list[Any]:
        out: list[Any] = []
        for text in texts:
            key = (kind, model_id, text, options)
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                if key not in self._cache:
                    self._cache[key] = (await infer([text]))[0]
            out.append(self._cache[key])
        return out

    async def text_embedding(self, model_id: str, texts: list[str], *, content_type: str | None = None
                             ) -> list[list[float]]:
        embed = super().text_embedding
        return await self._cached("text_embedding", model_id, texts, str(content_type),
                                  lambda one: embed(model_id, one, content_type=content_type))

    async def sparse_encoding(self, model_id: str, texts: list[str]) -> list[dict[str, float]]:
        encode = super().sparse_encoding
        return await self._cached("sparse_encoding", model_id, texts, "", lambda one: encode(model_id, one))


# --------------------------------------------------------------------------------------------- the index


async def created_by_eval(client: AsyncOpenSearch, index: str) -> bool | None:
    """None if ``index`` does not exist; else whether eval created it (the mark in its mapping's _meta)."""
    if not await client.indices.exists(index=index):
        return None
    for entry in (await client.indices.get_mapping(index=index)).values():
        meta = ((entry.get("mappings") or {}).get("_meta") or {}).get("neuralpipe") or {}
        return meta.get("created_by") == CREATED_BY
    return False


async def ensure_eval_index(ctx: EvalContext, *, exact: bool, reingest: bool, batch_size: int) -> None:
    """Make ``ctx.index`` hold this corpus as the pipeline writes it, doing as little model work as possible:

    - refuse an existing index eval did not create;
    - reuse the index if it holds the corpus and was built with the same pipeline body (same models);
    - else, if its sibling (the same default name with ``-exact`` / ``-hnsw``) was, copy the documents from it
      (vectors included: only the k-NN method differs);
    - else ingest the corpus through the pipeline.
    A small record per index (``<data-dir>/eval/indices/<index>.json``) keeps the pipeline fingerprint."""
    client, index = ctx.client, ctx.index
    n_docs = len(ctx.dataset.corpus)
    fingerprint = _fingerprint(ctx.pipeline_body, n_docs, ctx.analyzer)
    ours = await created_by_eval(client, index)
    if ours is False:
        raise EvalError(f"index [{index}] exists and was not created by neuralpipe eval, which never deletes or "
                        "overwrites an index it did not create: pass another --index")
    if ours and not reingest and await _holds_corpus(ctx, index, n_docs, fingerprint):
        log.info("index %s already holds the %d documents: reusing it", index, n_docs)
        ctx.facts["ingest"] = "reused"
        return
    if ours:
        await client.indices.delete(index=index)
    _record_path(ctx, index).unlink(missing_ok=True)
    target = Target(index, "neuralpipe-eval", ctx.pipeline_body,
                    properties={PASSAGE_FIELD: {"type": "text", "analyzer": ctx.analyzer}},
                    exact=exact, meta={"created_by": CREATED_BY})
    pipeline, _ = await prepare_target(client, ctx.ml, target)
    sibling = _sibling(index)
    if sibling and not reingest and await _holds_corpus(ctx, sibling, n_docs, fingerprint):
        started = time.perf_counter()
        await copy_documents(client, sibling, index, list(ctx.dataset.corpus))
        ctx.facts["ingest"] = f"copied from {sibling} in {time.perf_counter() - started:.1f} s"
        await client.indices.refresh(index=index)
    else:
        ctx.facts["ingest"] = await _ingest(ctx, pipeline, batch_size=batch_size)
    count = (await client.count(index=index))["count"]
    if count != n_docs:
        raise EvalError(f"index [{index}] holds {count} documents after ingest, expected {n_docs}: "
                        f"{ctx.facts['ingest']}")
    path = _record_path(ctx, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fingerprint": fingerprint, "docs": n_docs, "dataset": str(ctx.dataset.path)}))


def _fingerprint(pipeline_body: dict[str, Any], n_docs: int, analyzer: str = "standard") -> str:
    extra = {} if analyzer == "standard" else {"analyzer": analyzer}  # indices built before --analyzer stay reusable
    text = json.dumps({"pipeline": pipeline_body, "docs": n_docs, **extra}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _record_path(ctx: EvalContext, index: str) -> Path:
    return ctx.state_dir / "indices" / f"{index}.json"


def _sibling(index: str) -> str | None:
    for a, b in (("-exact", "-hnsw"), ("-hnsw", "-exact")):
        if index.startswith("neuralpipe-eval-") and index.endswith(a):
            return index[: -len(a)] + b
    return None


async def _holds_corpus(ctx: EvalContext, index: str, n_docs: int, fingerprint: str) -> bool:
    if not await created_by_eval(ctx.client, index):
        return False
    if (await ctx.client.count(index=index))["count"] != n_docs:
        return False
    try:
        record = json.loads(_record_path(ctx, index).read_text())
    except (OSError, ValueError):
        return False
    return bool(record.get("fingerprint") == fingerprint)


async def copy_documents(client: AsyncOpenSearch, source: str, target: str, ids: list[str], *,
                         chunk: int = 200) -> None:
    """Copy documents by id (``_mget`` then ``_bulk``), sources unchanged: no inference."""
    for start in range(0, len(ids), chunk):
        resp = await client.mget(index=source, body={"ids": ids[start : start + chunk]})
        actions = [{"_index": target, "_id": d["_id"], "_source": d["_source"]} for d in resp["docs"] if d.get("found")]
        _, result = await async_bulk(client, actions, raise_on_error=False, max_retries=3)
        errors = cast(list[dict[str, Any]], result)  # the failed items (a count only with stats_only=True)
        if errors:
            raise EvalError(f"copying documents from [{source}] to [{target}] failed: {errors[:2]}")


async def _ingest(ctx: EvalContext, pipeline: Any, *, batch_size: int) -> dict[str, Any]:
    records = []
    for offset, (doc_id, doc) in enumerate(ctx.dataset.corpus.items(), start=1):
        source = eval_document(doc_id, doc)
        records.append(Record(offset, str(source.pop("_id")), source))
    job = IngestJob(options=IngestOptions(index=ctx.index, batch_size=batch_size, concurrency=ctx.concurrency,
                                          progress=sys.stderr.isatty()),
                    input_name=str(ctx.dataset.path))
    stats = await run_ingest(ctx.client, job, records, pipeline=pipeline, total=len(records))
    summary = stats.to_json()
    if stats.aborted or stats.failed_total:
        first = [f.to_json() for f in stats.first_failures[:3]]
        raise EvalError(f"ingest into [{ctx.index}] failed: {summary}; first failures: {first}")
    return summary


# --------------------------------------------------------------------------------------------- search


async def run_queries(ctx: EvalContext, methods: list[str]) -> dict[str, Run]:
    pipelines: dict[str, SearchPipeline] = {}
    for method in methods:
        body = search_pipeline_body(method)
        if body is not None:
            pipelines[method] = SearchPipeline.from_body(f"neuralpipe-eval-{method}", body, ml=ctx.query_ml)

    async def search_fn(index: str, body: dict[str, Any]) -> dict[str, Any]:
        return await ctx.client.search(index=index, body=body)

    runs: dict[str, Run] = {m: {} for m in methods}
    sem = asyncio.Semaphore(ctx.concurrency)
    bar = tqdm(total=len(ctx.dataset.queries) * len(methods), desc="queries", unit="q", file=sys.stderr,
               mininterval=0.5, disable=not sys.stderr.isatty())

    async def one(qid: str, text: str, method: str) -> None:
        async with sem:
            body = search_body(method, text, ctx.models, k=ctx.k)
            resp = await run_search(ctx.index, body, search_fn=search_fn, ml=ctx.query_ml,
                                    pipeline=pipelines.get(method))
            runs[method][qid] = run_from_hits(resp["hits"]["hits"])
            bar.update(1)

    started = time.perf_counter()
    try:
        # query-major order: a query's text is embedded once (CachingML) and reused by the methods after it
        await asyncio.gather(*(one(q, t, m) for q, t in ctx.dataset.queries.items() for m in methods))
    finally:
        bar.close()
    ctx.facts["search_seconds"] = round(time.perf_counter() - started, 1)
    return runs
