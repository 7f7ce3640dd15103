"""The end-to-end demo.

``neuralpipe demo`` (see ``neuralpipe/commands/demo.py``):

1. starts an ML node and a data node in this process, on loopback, in the data dir (``./data``);
2. registers and deploys the models through ML Commons' REST API, as a user would against a
   cluster: all-MiniLM-L6-v2 and SPLADE-tiny by their catalog names (the node resolves them through
   its offline catalog) and a SPARSE_TOKENIZE model whose IDF comes from the demo corpus (packaged
   here into an ML Commons zip, registered from a ``file://`` URL);
3. ingests the demo corpus (standard-library docstrings, :mod:`neuralpipe.demo_corpus`) through
   the shipped ``pipelines/ingest/dense-sparse.yaml``, with the resumable ingest runner;
4. runs example ``neural``, ``neural_sparse`` and ``hybrid`` queries and prints ranked results.

A second run finds the models registered (by name) and the corpus ingested (checkpoint), so it
only starts the nodes, waits for the models to be deployed again and queries.
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from neuralpipe.admin.models import Say, deploy_offline_models, model_admin
from neuralpipe.demo_corpus import write_corpus
from neuralpipe.ingest.checkpoint import CheckpointMismatch
from neuralpipe.ingest.job import IngestJob, run_ingest
from neuralpipe.ingest.readers import iter_input
from neuralpipe.ingest.runner import IngestOptions, IngestStats
from neuralpipe.ingest.setup import Target, prepare_target
from neuralpipe.local import embedded_node, make_client, make_ml_client
from neuralpipe.node import DEFAULT_DATA_DIR
from neuralpipe.search.query import QueryFields, build_query, execute, fields_from_ingest_pipeline
from neuralpipe.search.table import format_table
from opensearch_contract.errors import OpenSearchError
from processors.mlclient import MLClient

DEMO_INDEX = "neuralpipe-demo"
PIPELINE = "pipelines/ingest/dense-sparse.yaml"  # package data of neuralpipe: the shipped file, model names as is

DEMO_QUERIES = (
    ("neural", "turn a Python object into a JSON string"),
    ("sparse", "compress files into a zip archive"),
    ("hybrid", "run a shell command and capture its output"),
)


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


def demo_pipeline_body() -> dict[str, Any]:
    """The shipped dense + sparse ingest pipeline (catalog model names, resolved by the ML node)."""
    body: dict[str, Any] = yaml.safe_load(resources.files("neuralpipe").joinpath(PIPELINE).read_text(encoding="utf-8"))
    return body


@dataclass
class DemoResult:
    model_ids: dict[str, str]
    indexed: int
    skipped: int
    count: int
    results: dict[str, dict[str, Any]]


def search_hint(data_dir: Path) -> str:
    """The command to try next, runnable as printed from this shell."""
    prog = "neuralpipe" if shutil.which("neuralpipe") else f"{shlex.quote(sys.executable)} -m neuralpipe"
    where = "" if data_dir == DEFAULT_DATA_DIR else f" --data-dir {shlex.quote(str(data_dir))}"
    return f"{prog} search{where} --index {DEMO_INDEX} --hybrid 'read a CSV file'"


async def _ingest(client: Any, ml: MLClient, corpus: Path, work: Path, *, n_docs: int, progress: bool,
                  say: Say) -> tuple[IngestStats, int]:
    body = demo_pipeline_body()
    say(f"[4/5] ingest {n_docs} documents into [{DEMO_INDEX}] through the ingest pipeline ({PIPELINE})")
    pipeline, created = await prepare_target(client, ml, Target(DEMO_INDEX, "dense-sparse", body))
    # the corpus follows the Python version: a changed corpus starts the ingest over
    corpus_name = f"{corpus.resolve()}#sha256:{hashlib.sha256(corpus.read_bytes()).hexdigest()[:16]}"
    job = IngestJob(options=IngestOptions(index=DEMO_INDEX, batch_size=32, concurrency=2, bulk_size=100,
                                          progress=progress),
                    input_name=corpus_name, input_path=corpus, new_index=created,
                    checkpoint=work / "ingest" / f"{DEMO_INDEX}.checkpoint.json",
                    dead_letter=work / "ingest" / f"{DEMO_INDEX}.dead-letter.jsonl")
    try:
        stats = await run_ingest(client, job, iter_input(str(corpus), "jsonl"), pipeline=pipeline, total=n_docs)
    except CheckpointMismatch:
        stats = await run_ingest(client, replace(job, restart=True), iter_input(str(corpus), "jsonl"),
                                 pipeline=pipeline, total=n_docs)
    if stats.aborted:
        raise DemoError(f"ingest aborted: {stats.aborted}")
    count = (await client.count(index=DEMO_INDEX))["count"]
    say(f"  indexed {stats.indexed}, already there {stats.skipped}, failed {stats.failed_total}; "
        f"the index holds {count} documents")
    return stats, count


async def run_demo(data_dir: Path, *, say: Say = print, progress: bool = True, size: int = 5,
                   queries: tuple[tuple[str, str], ...] = DEMO_QUERIES) -> DemoResult:
    data_dir = Path(data_dir)
    work = data_dir / "demo"  # the corpus, the tokenizer model's zip, the ingest checkpoint
    t_all = time.monotonic()
    corpus = work / "corpus.jsonl"
    say(f"[1/5] corpus: Python standard-library docstrings -> {corpus}")
    n_docs = await asyncio.to_thread(write_corpus, corpus)
    say(f"  {n_docs} documents")

    say("[2/5] starting an ML node + data node in this process (loopback)")
    node = embedded_node(data_dir)
    await node.start()
    say(f"  {node.url}  (data dir {data_dir})")
    client = make_client(node.url)
    ml = make_ml_client(node.url)
    try:
        say("[3/5] models: register + deploy through /_plugins/_ml (reused when already there)")
        async with model_admin(node.url, say=say, progress=progress) as admin:
            model_ids = await deploy_offline_models(admin, idf_corpus=corpus, package_dir=work / "packages")
        stats, count = await _ingest(client, ml, corpus, work, n_docs=n_docs, progress=progress, say=say)

        say("[5/5] queries (neural = dense kNN, sparse = neural_sparse with the IDF tokenizer, "
            "hybrid = match + neural + neural_sparse, min_max + arithmetic_mean)")
        # sparse queries go through the tokenizer model (inference-free at query time), as neural-search advises
        fields = replace(fields_from_ingest_pipeline(demo_pipeline_body()), sparse_model=model_ids["tokenizer"],
                         text_fields=("title", "text"))
        results = {kind: await _query(client, ml, kind, text, fields, size=size, say=say) for kind, text in queries}
        say(f"\ndone in {time.monotonic() - t_all:.1f}s. Try: {search_hint(data_dir)}")
        return DemoResult(model_ids=model_ids, indexed=stats.indexed, skipped=stats.skipped, count=count,
                          results=results)
    except OpenSearchError as exc:
        raise DemoError(exc.reason) from None
    finally:
        await client.close()
        await ml.close()
        await node.stop()


async def _query(client: Any, ml: MLClient, kind: str, text: str, fields: QueryFields, *, size: int,
                 say: Say) -> dict[str, Any]:
    response = await execute(DEMO_INDEX, build_query(kind, text, fields, size=size), client=client, ml=ml)
    say("")
    say(format_table(response, text_fields=("text",), title=f"== {kind}: \"{text}\""))
    return response
