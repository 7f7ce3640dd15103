"""``neuralpipe eval DATASET_DIR``: retrieval quality of every search method on a BEIR collection.

Ingests the corpus through the real ingest pipeline (dense MiniLM + SPLADE doc encoder over BEIR's
``title + " " + text``) into the target -- the embedded data node by default, or ``--opensearch URL`` --
then runs every judged query as dense (``neural``), sparse (``neural_sparse``, tokenizer model at query
time), BM25 (``match``) and hybrid (BM25 + dense; ``min_max`` + ``arithmetic_mean``, and ``rrf``)
through ``processors.search.run_search``, and prints nDCG@10 / recall@100 per method.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuralpipe.evaluation import (
    DENSE_FIELD,
    METHOD_TITLES,
    METHODS,
    PASSAGE_FIELD,
    BeirDataset,
    BeirFormatError,
    EvalModels,
    Run,
    adapt_ingest_pipeline,
    eval_document,
    evaluate,
    ingest_pipeline_body,
    load_beir,
    run_from_hits,
    search_body,
    search_pipeline_body,
)

log = logging.getLogger(__name__)


class EvalError(Exception):
    """A problem the user can fix (bad arguments, a missing model): printed without a traceback."""


def add_parser(subparsers: Any) -> None:
    from neuralpipe.local import add_connection_arguments

    p = subparsers.add_parser(
        "eval",
        help="nDCG@10 / recall@100 of dense, sparse, BM25 and hybrid search on a BEIR folder",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("dataset", type=Path, metavar="DATASET_DIR", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    p.add_argument("--split", default="test", help="qrels split to score (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object keyed by method instead of a table")
    p.add_argument("--exact", action="store_true", help="exact k-NN (a flat index) for the dense field instead of HNSW")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: %(default)s")
    p.add_argument("--index", help="index name (default: neuralpipe-eval-<dataset folder>-<hnsw|exact>)")
    p.add_argument("--pipeline", type=Path, metavar="FILE",
                   help="dense + sparse ingest pipeline whose processors' settings eval uses, re-pointed at the BEIR "
                        "passage (default: pipelines/ingest/dense-sparse.yaml)")
    p.add_argument("--reingest", action="store_true", help="delete and rebuild the index even if it already holds the corpus")
    p.add_argument("--dense-model", help="dense model id or registered name on the ML node (default: deploy the offline MiniLM)")
    p.add_argument("--sparse-model", help="sparse doc encoder id or name (default: deploy the offline SPLADE-tiny)")
    p.add_argument("--tokenizer-model", help="sparse tokenizer model id or name for queries (default: one with the corpus' IDF)")
    p.add_argument("--k", type=int, default=100, help="hits per query (default: %(default)s; recall@100 needs 100)")
    p.add_argument("--batch-size", type=int, default=32, help="ingest inference batch size (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=4, help="ingest batches and queries in flight (default: %(default)s)")
    p.add_argument("--max-queries", type=int, help="score only the first N judged queries (a quick look)")
    p.add_argument("--save-runs", type=Path, metavar="DIR", help="write each method's run as DIR/<method>.json")
    add_connection_arguments(p)


def run(args: argparse.Namespace) -> int:
    try:
        report = asyncio.run(run_eval(args))
    except (EvalError, BeirFormatError) as exc:
        print(f"neuralpipe eval: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(report.headline(), file=sys.stderr)
        print(json.dumps({m: {k: round(v, 4) for k, v in r.items()} for m, r in report.results.items()}))
    else:
        print(report.headline())
        print(format_table(report.results))
    return 0


def format_table(results: dict[str, dict[str, float]]) -> str:
    names = next(iter(results.values())).keys() if results else []
    width = max(len(METHOD_TITLES.get(m, m)) for m in results) if results else 10
    header = f"{'method':<{width}}  " + "  ".join(f"{_pretty(n):>10}" for n in names)
    lines = [header, "-" * len(header)]
    for method, values in results.items():
        lines.append(f"{METHOD_TITLES.get(method, method):<{width}}  " + "  ".join(f"{values[n]:>10.4f}" for n in names))
    return "\n".join(lines)


def _pretty(metric: str) -> str:
    return metric.replace("ndcg", "nDCG")


# ----------------------------------------------------------------------------------------- orchestration


@dataclass
class EvalReport:
    """Mean metrics per method, and what was measured: dataset, index, models, ingest summary, timings."""

    results: dict[str, dict[str, float]]
    facts: dict[str, Any]

    def headline(self) -> str:
        f = self.facts
        ingest = f.get("ingest")
        how = ingest if isinstance(ingest, str) else f"ingested at {ingest.get('docs_per_second')} docs/s" if isinstance(ingest, dict) else "?"
        return (f"{f['dataset']} (split {f['split']}): {f['docs']} docs ({how}), {f['queries']} queries; "
                f"index {f['index']} ({f['knn']}); searches took {f.get('search_seconds')} s")


@dataclass
class EvalContext:
    dataset: BeirDataset
    index: str
    models: EvalModels
    client: Any  # AsyncOpenSearch
    ml: Any  # MLClient: ingest (batched predict calls)
    query_ml: Any  # CachingML over the same client: query-time inference, once per (model, text)
    k: int
    concurrency: int
    pipeline_body: dict = field(default_factory=dict)
    state_dir: Path = Path("data") / "eval"
    facts: dict[str, Any] = field(default_factory=dict)


DEFAULT_PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "ingest" / "dense-sparse.yaml"


def eval_pipeline_body(path: Path | None, models: EvalModels, *, batch_size: int) -> dict:
    """The ingest pipeline eval runs: ``--pipeline`` (or the shipped dense-sparse one) re-pointed at ``passage``;
    a plain dense + sparse pipeline when no file is given and none ships."""
    if path is None and not DEFAULT_PIPELINE.exists():
        return ingest_pipeline_body(models, batch_size=batch_size)
    from processors.pipeline import load_pipeline_file

    source = path or DEFAULT_PIPELINE
    try:
        return adapt_ingest_pipeline(load_pipeline_file(source).body, models)
    except ValueError as exc:
        raise EvalError(f"{source}: {exc}") from None
    except Exception as exc:  # an OpenSearchError from the file reader
        raise EvalError(f"{source}: {getattr(exc, 'reason', exc)}") from None


def _methods(text: str) -> list[str]:
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in chosen if m not in METHODS]
    if bad or not chosen:
        raise EvalError(f"unknown method(s) {bad or chosen}; valid: {', '.join(METHODS)}")
    return chosen


def default_index_name(dataset_dir: Path, exact: bool) -> str:
    stem = re.sub(r"[^a-z0-9_-]+", "-", dataset_dir.resolve().name.lower()).strip("-_") or "dataset"
    return f"neuralpipe-eval-{stem}-{'exact' if exact else 'hnsw'}"


async def run_eval(args: argparse.Namespace) -> EvalReport:
    from neuralpipe.local import client_options, make_client, make_ml_client, open_endpoints

    methods = _methods(args.methods)
    given = [args.dense_model, args.sparse_model, args.tokenizer_model]
    if any(given) and not all(given):
        raise EvalError("give all three of --dense-model, --sparse-model, --tokenizer-model, or none")
    dataset = load_beir(args.dataset, args.split)
    if args.max_queries:
        keep = list(dataset.queries)[: args.max_queries]
        dataset.queries = {q: dataset.queries[q] for q in keep}
        dataset.qrels = {q: dataset.qrels[q] for q in keep}
    index = args.index or default_index_name(args.dataset, args.exact)
    options = client_options(args)

    async with open_endpoints(opensearch=args.opensearch, ml_url=args.ml_url, data_dir=Path(args.data_dir)) as ends:
        client = make_client(ends.opensearch_url, options)
        try:
            if args.exact and not ends.embedded:
                info = await client.info()
                if info.get("version", {}).get("build_type") != "neuralpipe":
                    raise EvalError("--exact needs neuralpipe's data node (a flat knn_vector method); OpenSearch's k-NN "
                                    f"plugin has none, and {ends.opensearch_url} is OpenSearch {info.get('version', {}).get('number')}")
            async with make_ml_client(ends.ml_url, options) as raw_ml:
                if all(given):
                    models = EvalModels(*[await raw_ml.resolve_model_id(m) for m in given])
                else:
                    models = await _deploy_offline_models(ends.ml_url, dataset, Path(args.data_dir))
                ctx = EvalContext(dataset, index, models, client, raw_ml, CachingML(raw_ml), args.k, max(1, args.concurrency),
                                  pipeline_body=eval_pipeline_body(args.pipeline, models, batch_size=args.batch_size),
                                  state_dir=Path(args.data_dir) / "eval")
                await ensure_index(ctx, exact=args.exact, reingest=args.reingest, batch_size=args.batch_size)
                runs = await run_queries(ctx, methods)
        finally:
            await client.close()

    if args.save_runs:
        args.save_runs.mkdir(parents=True, exist_ok=True)
        for method, method_run in runs.items():
            (args.save_runs / f"{method}.json").write_text(json.dumps(method_run))
    facts = {"dataset": str(args.dataset), "split": args.split, "docs": len(dataset.corpus), "queries": len(dataset.queries),
             "index": index, "knn": "exact" if args.exact else "hnsw", "models": vars(models), **ctx.facts}
    return EvalReport({m: evaluate(dataset.qrels, runs[m]).means for m in methods}, facts)


async def _deploy_offline_models(ml_url: str, dataset: BeirDataset, data_dir: Path) -> EvalModels:
    """Package, register and deploy the offline models (the demo's step); the tokenizer model's IDF is built from
    this collection's passages and registered under its own name, so it never collides with the demo's."""
    from neuralpipe.demo import deploy_offline_models

    name = re.sub(r"[^a-z0-9_-]+", "-", (dataset.path.name if dataset.path else "dataset").lower())
    work = data_dir / "eval" / name
    work.mkdir(parents=True, exist_ok=True)
    idf_corpus = work / "idf-corpus.txt"
    if not idf_corpus.exists():
        with tempfile.NamedTemporaryFile("w", dir=work, delete=False, encoding="utf-8") as fh:
            for doc_id in dataset.corpus:
                fh.write(dataset.passage(doc_id).replace("\n", " ") + "\n")
        Path(fh.name).replace(idf_corpus)
    ids = await _maybe_await(deploy_offline_models(
        ml_url, idf_corpus=idf_corpus, package_dir=work / "models",
        tokenizer_name=f"neuralpipe/splade-tiny-tokenizer-{name}", say=lambda msg: print(msg, file=sys.stderr)))
    return EvalModels(dense=ids["dense"], sparse=ids["sparse"], tokenizer=ids["tokenizer"])


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class CachingML:
    """The ML client with query inference memoised per (model, text): each query text is embedded once even
    though dense and both hybrid methods ask for it. Everything else goes to the real client."""

    def __init__(self, ml: Any) -> None:
        self._ml = ml
        self._cache: dict[tuple[str, str, str, str], Any] = {}
        self._locks: dict[tuple[str, str, str, str], asyncio.Lock] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ml, name)

    async def _cached(self, kind: str, model_id: str, texts: list[str], kwargs: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        extra = json.dumps(kwargs, sort_keys=True, default=str)
        for text in texts:
            key = (kind, model_id, text, extra)
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                if key not in self._cache:
                    self._cache[key] = (await getattr(self._ml, kind)(model_id, [text], **kwargs))[0]
            out.append(self._cache[key])
        return out

    async def text_embedding(self, model_id: str, texts: list[str], **kwargs: Any) -> list[list[float]]:
        return await self._cached("text_embedding", model_id, texts, kwargs)

    async def sparse_encoding(self, model_id: str, texts: list[str], **kwargs: Any) -> list[dict[str, float]]:
        return await self._cached("sparse_encoding", model_id, texts, kwargs)


# --------------------------------------------------------------------------------------------- ingest


async def ensure_index(ctx: EvalContext, *, exact: bool, reingest: bool, batch_size: int) -> None:
    """Make ``ctx.index`` hold this corpus as the pipeline writes it, doing as little model work as possible:

    - reuse the index if it holds the corpus and was built with the same pipeline body (same models);
    - else, if its sibling (the same default name with ``-exact`` / ``-hnsw``) was, copy the documents from it
      (vectors included: only the k-NN method differs);
    - else ingest the corpus through the pipeline.
    A small record per index (``<data-dir>/eval/indices/<index>.json``) keeps the pipeline fingerprint."""
    client, index = ctx.client, ctx.index
    n_docs = len(ctx.dataset.corpus)
    fingerprint = _fingerprint(ctx.pipeline_body, n_docs)
    if not reingest and await _holds_corpus(ctx, index, n_docs, fingerprint):
        log.info("index %s already holds the %d documents: reusing it", index, n_docs)
        ctx.facts["ingest"] = "reused"
        return
    if await client.indices.exists(index=index):
        await client.indices.delete(index=index)
    _record_path(ctx, index).unlink(missing_ok=True)
    from processors.mapping import mapping_for_pipeline
    from processors.pipeline import IngestPipeline

    body = ctx.pipeline_body
    index_body = await _maybe_await(mapping_for_pipeline(body, ml=ctx.ml))
    index_body.setdefault("mappings", {}).setdefault("properties", {})[PASSAGE_FIELD] = {"type": "text"}
    if exact:
        use_exact_knn(index_body)
    await client.indices.create(index=index, body=index_body)
    sibling = _sibling(index)
    if sibling and not reingest and await _holds_corpus(ctx, sibling, n_docs, fingerprint):
        started = time.perf_counter()
        await copy_documents(client, sibling, index, list(ctx.dataset.corpus))
        ctx.facts["ingest"] = f"copied from {sibling} in {time.perf_counter() - started:.1f} s"
    else:
        pipeline = await _maybe_await(IngestPipeline.from_body("neuralpipe-eval", body, ml=ctx.ml))
        ctx.facts["ingest"] = await ingest(ctx, pipeline, batch_size=batch_size)
    await client.indices.refresh(index=index)
    count = (await client.count(index=index))["count"]
    if count != n_docs:
        raise EvalError(f"index [{index}] holds {count} documents after ingest, expected {n_docs}: {ctx.facts['ingest']}")
    path = _record_path(ctx, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fingerprint": fingerprint, "docs": n_docs, "dataset": str(ctx.dataset.path)}))


def _fingerprint(pipeline_body: dict, n_docs: int) -> str:
    import hashlib

    return hashlib.sha256(json.dumps({"pipeline": pipeline_body, "docs": n_docs}, sort_keys=True).encode()).hexdigest()


def _record_path(ctx: EvalContext, index: str) -> Path:
    return ctx.state_dir / "indices" / f"{index}.json"


def _sibling(index: str) -> str | None:
    for a, b in (("-exact", "-hnsw"), ("-hnsw", "-exact")):
        if index.startswith("neuralpipe-eval-") and index.endswith(a):
            return index[: -len(a)] + b
    return None


async def _holds_corpus(ctx: EvalContext, index: str, n_docs: int, fingerprint: str) -> bool:
    if not await ctx.client.indices.exists(index=index):
        return False
    if (await ctx.client.count(index=index))["count"] != n_docs:
        return False
    try:
        record = json.loads(_record_path(ctx, index).read_text())
    except (OSError, ValueError):
        return False
    return record.get("fingerprint") == fingerprint


async def copy_documents(client: Any, source: str, target: str, ids: list[str], *, chunk: int = 200) -> None:
    """Copy documents by id (``_mget`` then ``_bulk``), sources unchanged: no inference."""
    from opensearchpy.helpers import async_bulk

    for start in range(0, len(ids), chunk):
        resp = await client.mget(index=source, body={"ids": ids[start : start + chunk]})
        actions = [{"_index": target, "_id": d["_id"], "_source": d["_source"]} for d in resp["docs"] if d.get("found")]
        ok, errors = await async_bulk(client, actions, raise_on_error=False, max_retries=3)
        if errors:
            raise EvalError(f"copying documents from [{source}] to [{target}] failed: {errors[:2]}")


def use_exact_knn(index_body: dict) -> None:
    """Turn every ``knn_vector`` field's method into exact (flat) search, keeping its space type."""
    for spec in _walk_properties(index_body.get("mappings", {}).get("properties", {})):
        if spec.get("type") == "knn_vector":
            method = dict(spec.get("method") or {})
            method["name"] = "flat"
            method.pop("parameters", None)
            spec["method"] = method


def _walk_properties(props: dict) -> Any:
    for spec in props.values():
        if isinstance(spec, dict):
            yield spec
            yield from _walk_properties(spec.get("properties", {}))


async def ingest(ctx: EvalContext, pipeline: Any, *, batch_size: int) -> dict[str, Any]:
    from neuralpipe.ingest.checkpoint import Checkpoint
    from neuralpipe.ingest.deadletter import DeadLetter
    from neuralpipe.ingest.readers import Record
    from neuralpipe.ingest.runner import IngestOptions, IngestRunner

    records = []
    for offset, (doc_id, doc) in enumerate(ctx.dataset.corpus.items(), start=1):
        source = eval_document(doc_id, doc)
        records.append(Record(offset, str(source.pop("_id")), source))
    runner = IngestRunner(
        ctx.client,
        options=IngestOptions(index=ctx.index, batch_size=batch_size, concurrency=ctx.concurrency, progress=sys.stderr.isatty()),
        checkpoint=Checkpoint(None, input_name=str(ctx.dataset.path), index=ctx.index),
        dead_letter=DeadLetter(None),
        pipeline=pipeline,
    )
    stats = await runner.run(records, total=len(records))
    summary = stats.to_json()
    if stats.aborted or stats.failed_total:
        first = [f.to_json() for f in runner.dead_letter.first[:3]]
        raise EvalError(f"ingest into [{ctx.index}] failed: {summary}; first failures: {first}")
    return summary


# --------------------------------------------------------------------------------------------- search


async def run_queries(ctx: EvalContext, methods: list[str]) -> dict[str, Run]:
    from processors.pipeline import SearchPipeline
    from processors.search import run_search

    pipelines: dict[str, Any] = {}
    for method in methods:
        body = search_pipeline_body(method)
        if body is not None:
            pipelines[method] = await _maybe_await(SearchPipeline.from_body(f"neuralpipe-eval-{method}", body, ml=ctx.query_ml))

    async def search_fn(index: str, body: dict) -> dict:
        return await ctx.client.search(index=index, body=body)

    runs: dict[str, Run] = {m: {} for m in methods}
    sem = asyncio.Semaphore(ctx.concurrency)
    progress = _QueryProgress(len(ctx.dataset.queries) * len(methods))

    async def one(qid: str, text: str, method: str) -> None:
        async with sem:
            body = search_body(method, text, ctx.models, k=ctx.k)
            resp = await run_search(ctx.index, body, search_fn=search_fn, ml=ctx.query_ml, pipeline=pipelines.get(method))
            runs[method][qid] = run_from_hits(resp["hits"]["hits"])
            progress.advance()

    started = time.perf_counter()
    try:
        # query-major order: a query's text is embedded once (CachingML) and reused by the methods after it
        await asyncio.gather(*(one(q, t, m) for q, t in ctx.dataset.queries.items() for m in methods))
    finally:
        progress.close()
    ctx.facts["search_seconds"] = round(time.perf_counter() - started, 1)
    return runs


class _QueryProgress:
    def __init__(self, total: int) -> None:
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc="queries", unit="q", file=sys.stderr, mininterval=0.5)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


__all__ = ["add_parser", "run", "run_eval", "format_table", "use_exact_knn", "default_index_name", "DENSE_FIELD"]
