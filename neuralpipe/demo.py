"""The end-to-end demo, and the reusable step that puts the offline models on an ML node.

``neuralpipe demo`` (see ``neuralpipe/commands/demo.py``):

1. starts an ML node and a data node in this process, on loopback, data dir ``./data/demo``;
2. registers and deploys the offline models through ML Commons' REST API, as a user would against
   a cluster: all-MiniLM-L6-v2 by its pretrained name (the node resolves it through its offline
   catalog), SPLADE-tiny as a SPARSE_ENCODING model and a SPARSE_TOKENIZE model whose IDF comes
   from the demo corpus (both packaged here into ML Commons zips, registered from ``file://`` URLs);
3. ingests the demo corpus (standard-library docstrings, :mod:`neuralpipe.demo_corpus`) through
   the dense+sparse ingest pipeline from ``pipelines/ingest/``, with the resumable ingest runner;
4. runs example ``neural``, ``neural_sparse`` and ``hybrid`` queries and prints ranked results.

A second run finds the models registered (by name) and the corpus ingested (checkpoint), so it
only starts the nodes, waits for the models to be deployed again and queries.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import aiohttp

ML = "/_plugins/_ml"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DATA_DIR = Path("data") / "demo"
DEMO_INDEX = "neuralpipe-demo"
DEMO_PIPELINE_CANDIDATES = ("dense-sparse.yaml", "dense_sparse.yaml", "dense-sparse.yml")

DENSE_NAME = "huggingface/sentence-transformers/all-MiniLM-L6-v2"
DENSE_VERSION = "1.0.1"
DENSE_FORMAT = "TORCH_SCRIPT"
SPARSE_NAME = "neuralpipe/splade-tiny-doc"
TOKENIZER_NAME = "neuralpipe/splade-tiny-tokenizer"

DEMO_QUERIES = (
    ("neural", "turn a Python object into a JSON string"),
    ("sparse", "compress files into a zip archive"),
    ("hybrid", "run a shell command and capture its output"),
)

# Used when pipelines/ingest/ has no dense+sparse file: the same body, OpenSearch's keys.
FALLBACK_PIPELINE: dict[str, Any] = {
    "description": "dense (all-MiniLM-L6-v2) + sparse (SPLADE-tiny) embeddings of `text`",
    "processors": [
        {"text_embedding": {"model_id": DENSE_NAME, "field_map": {"text": "text_embedding"}, "batch_size": 32}},
        {"sparse_encoding": {"model_id": SPARSE_NAME, "field_map": {"text": "text_sparse"},
                             "prune_type": "max_ratio", "prune_ratio": 0.1, "batch_size": 32}},
    ],
}

Say = Callable[[str], None]


class ModelSetupError(RuntimeError):
    """A model could not be registered or deployed; the message carries the ML node's reason."""


class MLAdmin:
    """The handful of ML Commons admin calls the demo makes (register, tasks, deploy, search)."""

    def __init__(self, base_url: str, *, poll_interval: float = 0.25, timeout: float = 900.0,
                 progress: bool = False) -> None:
        self.base_url = base_url.rstrip("/")
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.progress = progress
        self._session: aiohttp.ClientSession | None = None
        self._ticker: Any = None

    async def __aenter__(self) -> "MLAdmin":
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        assert self._session is not None
        async with self._session.request(method, f"{self.base_url}{ML}{path}", json=body) as resp:
            try:
                payload = await resp.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError):
                payload = {"raw": await resp.text()}
            return resp.status, payload if isinstance(payload, dict) else {"result": payload}

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, payload = await self.request(method, path, body)
        if status >= 400:
            reason = (payload.get("error") or {}).get("reason") if isinstance(payload.get("error"), dict) else payload
            raise ModelSetupError(f"{method} {ML}{path} answered {status}: {reason}")
        return payload

    async def find_model(self, name: str) -> dict[str, Any] | None:
        """The newest registered model with this exact name (deployed ones first), or None."""
        status, payload = await self.request("POST", "/models/_search",
                                             {"query": {"term": {"name.keyword": name}}, "size": 100})
        if status >= 400:
            status, payload = await self.request("POST", "/models/_search", {"query": {"match_all": {}}, "size": 1000})
        if status >= 400:
            return None
        found = []
        for hit in payload.get("hits", {}).get("hits", []):
            src = hit.get("_source", {})
            if src.get("name") != name or "chunk_number" in src:
                continue
            if src.get("model_state") in ("REGISTERING", "DEPLOY_FAILED", None) and not src.get("model_content_hash_value"):
                continue
            found.append(((src.get("model_state") == "DEPLOYED"), src.get("created_time") or 0,
                          {**src, "model_id": hit.get("_id") or src.get("model_id")}))
        if not found:
            return None
        found.sort(key=lambda f: (f[0], f[1]), reverse=True)
        return found[0][2]

    async def wait_task(self, task_id: str, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            task = await self.call("GET", f"/tasks/{task_id}")
            state = task.get("state")
            if state == "COMPLETED":
                return task
            if state in ("FAILED", "CANCELLED", "COMPLETED_WITH_ERROR", "EXPIRED", "UNREACHABLE"):
                raise ModelSetupError(f"{what}: task {task_id} ended {state}: {task.get('error')}")
            if time.monotonic() > deadline:
                raise ModelSetupError(f"{what}: task {task_id} still {state} after {self.timeout:.0f}s")
            self._tick(f"  {what}: task {state}")
            await asyncio.sleep(self.poll_interval)

    async def wait_deployed(self, model_id: str, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            model = await self.call("GET", f"/models/{model_id}")
            state = model.get("model_state")
            if state == "DEPLOYED":
                return
            if state in ("DEPLOY_FAILED",):
                raise ModelSetupError(f"{what}: model {model_id} is {state}")
            if state in ("REGISTERED", "UNDEPLOYED"):
                resp = await self.call("POST", f"/models/{model_id}/_deploy")
                if resp.get("task_id"):
                    await self.wait_task(resp["task_id"], f"deploy {what}")
                continue
            if time.monotonic() > deadline:
                raise ModelSetupError(f"{what}: model {model_id} still {state} after {self.timeout:.0f}s")
            self._tick(f"  {what}: {state}")
            await asyncio.sleep(self.poll_interval)

    def _tick(self, desc: str) -> None:
        """An elapsed-time line on stderr while a long step (packaging, deploying) runs."""
        if not self.progress:
            return
        if self._ticker is None:
            import sys

            from tqdm import tqdm

            # a live line on a terminal only: in a log file every refresh would be a new line
            self._ticker = tqdm(desc=desc, bar_format="{desc} ({elapsed})", leave=False, mininterval=0.5,
                                disable=not sys.stderr.isatty())
        self._ticker.set_description_str(desc, refresh=False)
        self._ticker.update(0)
        self._ticker.refresh()

    def _tick_done(self) -> None:
        if self._ticker is not None:
            self._ticker.close()
            self._ticker = None

    async def register(self, body: dict[str, Any], what: str) -> str:
        resp = await self.call("POST", "/models/_register", body)
        model_id = resp.get("model_id")
        if resp.get("task_id"):
            task = await self.wait_task(resp["task_id"], f"register {what}")
            model_id = task.get("model_id") or model_id
        if not model_id:
            raise ModelSetupError(f"register {what}: no model_id in {resp}")
        return str(model_id)

    async def ensure(self, name: str, what: str, register_body: Callable[[], dict[str, Any]], say: Say) -> str:
        """Reuse the model registered under ``name`` or register it; then make sure it is deployed."""
        found = await self.find_model(name)
        if found is not None:
            model_id = str(found["model_id"])
            say(f"  {what}: reusing {name} ({model_id}, {found.get('model_state')})")
        else:
            say(f"  {what}: registering {name} ...")
            t0 = time.monotonic()
            body = await asyncio.to_thread(register_body)
            try:
                model_id = await self.register(body, what)
            finally:
                self._tick_done()
            say(f"  {what}: registered as {model_id} ({time.monotonic() - t0:.1f}s)")
        t0 = time.monotonic()
        try:
            await self.wait_deployed(model_id, what)
        finally:
            self._tick_done()
        say(f"  {what}: DEPLOYED ({time.monotonic() - t0:.1f}s)")
        return model_id


def _packaged_register_body(package_dir: Path, *, name: str, function_name: str,
                            idf_corpus: Path | None = None) -> dict[str, Any]:
    """Package SPLADE-tiny (doc encoder or tokenizer) into an ML Commons zip; return its register body."""
    from mlnode.offline import splade_dir
    from mlnode.packaging import package_model

    out = package_dir / name.replace("/", "__")
    pm = package_model(splade_dir(), out, function_name=function_name, model_format="TORCH_SCRIPT", name=name,
                       version="1.0.0", idf_corpus=idf_corpus)
    body = dict(pm.config)
    body["url"] = pm.zip_path.resolve().as_uri()
    return body


async def deploy_offline_models(ml_url: str, *, idf_corpus: Path, package_dir: Path,
                                tokenizer_name: str = TOKENIZER_NAME, sparse_name: str = SPARSE_NAME,
                                say: Say = lambda _m: None, progress: bool = False) -> dict[str, str]:
    """Register (once) and deploy the three offline models on the ML node at ``ml_url``.

    Idempotent: models already registered under these names are reused. The node must allow
    ``file://`` URL registration (the embedded node does). Returns ``{"dense", "sparse", "tokenizer"}``
    -> model ids."""
    async with MLAdmin(ml_url, progress=progress) as admin:
        dense = await admin.ensure(DENSE_NAME, "dense all-MiniLM-L6-v2", lambda: {
            "name": DENSE_NAME, "version": DENSE_VERSION, "model_format": DENSE_FORMAT}, say)
        sparse = await admin.ensure(sparse_name, "sparse SPLADE-tiny", lambda: _packaged_register_body(
            package_dir, name=sparse_name, function_name="SPARSE_ENCODING"), say)
        tokenizer = await admin.ensure(tokenizer_name, "tokenizer (IDF)", lambda: _packaged_register_body(
            package_dir, name=tokenizer_name, function_name="SPARSE_TOKENIZE", idf_corpus=idf_corpus), say)
    return {"dense": dense, "sparse": sparse, "tokenizer": tokenizer}


def demo_pipeline_body(model_ids: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The dense+sparse ingest pipeline from pipelines/ingest/, pointed at the models just deployed."""
    import yaml

    source = "built-in"
    body = copy.deepcopy(FALLBACK_PIPELINE)
    for name in DEMO_PIPELINE_CANDIDATES:
        path = REPO_ROOT / "pipelines" / "ingest" / name
        if path.is_file():
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict) and loaded.get("processors"):
                body, source = loaded, str(path.relative_to(REPO_ROOT))
            break
    for proc in body.get("processors", []):
        for ptype, conf in proc.items():
            if ptype == "text_embedding":
                conf["model_id"] = model_ids["dense"]
            elif ptype == "sparse_encoding":
                conf["model_id"] = model_ids["sparse"]
    return body, source


@dataclass
class DemoResult:
    model_ids: dict[str, str]
    indexed: int
    skipped: int
    count: int
    results: dict[str, dict[str, Any]]


async def run_demo(data_dir: Path, *, say: Say = print, progress: bool = True, size: int = 5,
                   queries: tuple[tuple[str, str], ...] = DEMO_QUERIES) -> DemoResult:
    from neuralpipe.demo_corpus import write_corpus
    from neuralpipe.ingest.checkpoint import Checkpoint, CheckpointMismatch
    from neuralpipe.ingest.deadletter import DeadLetter
    from neuralpipe.ingest.readers import iter_input
    from neuralpipe.ingest.runner import IngestOptions, IngestRunner
    from neuralpipe.ingest.setup import ensure_index, load_ingest_pipeline
    from neuralpipe.local import LocalNode, make_client, make_ml_client
    from neuralpipe.searching import build_query, execute, fields_from_ingest_pipeline, format_table

    data_dir = Path(data_dir)
    t_all = time.monotonic()
    say(f"[1/5] corpus: Python standard-library docstrings -> {data_dir / 'corpus.jsonl'}")
    corpus = data_dir / "corpus.jsonl"
    n_docs = await asyncio.to_thread(write_corpus, corpus)
    say(f"  {n_docs} documents")

    say("[2/5] starting an ML node + data node in this process (loopback)")
    node = LocalNode(data_dir, roles=("ml", "data"))
    await node.start()
    say(f"  {node.url}  (data dir {data_dir})")
    client = make_client(node.url)
    ml = make_ml_client(node.url)
    try:
        say("[3/5] models: register + deploy through /_plugins/_ml (reused when already there)")
        model_ids = await deploy_offline_models(node.url, idf_corpus=corpus, package_dir=data_dir / "packages",
                                                say=say, progress=progress)

        body, source = demo_pipeline_body(model_ids)
        say(f"[4/5] ingest {n_docs} documents into [{DEMO_INDEX}] through the ingest pipeline ({source})")
        pipeline = await load_ingest_pipeline("demo-dense-sparse", body, ml)
        created = await ensure_index(client, DEMO_INDEX, body, ml)
        # the corpus follows the Python version: a changed corpus starts the ingest over
        corpus_name = f"{corpus.resolve()}#sha256:{hashlib.sha256(corpus.read_bytes()).hexdigest()[:16]}"
        checkpoint_path = data_dir / "ingest" / f"{DEMO_INDEX}.checkpoint.json"
        try:
            checkpoint = Checkpoint.open(checkpoint_path, input_name=corpus_name, index=DEMO_INDEX, restart=created)
        except CheckpointMismatch:
            checkpoint = Checkpoint.open(checkpoint_path, input_name=corpus_name, index=DEMO_INDEX, restart=True)
        runner = IngestRunner(client, pipeline=pipeline, checkpoint=checkpoint,
                              dead_letter=DeadLetter(data_dir / "ingest" / f"{DEMO_INDEX}.dead-letter.jsonl"),
                              options=IngestOptions(index=DEMO_INDEX, batch_size=32, concurrency=2, bulk_size=100,
                                                    progress=progress))
        stats = await runner.run(iter_input(str(corpus), "jsonl"), total=n_docs)
        if stats.aborted:
            raise ModelSetupError(f"ingest aborted: {stats.aborted}")
        await client.indices.refresh(index=DEMO_INDEX)
        count = (await client.count(index=DEMO_INDEX))["count"]
        say(f"  indexed {stats.indexed}, already there {stats.skipped}, failed {stats.failed_total}; "
            f"the index holds {count} documents")

        say("[5/5] queries (neural = dense kNN, sparse = neural_sparse with the IDF tokenizer, "
            "hybrid = match + neural + neural_sparse, min_max + arithmetic_mean)")
        # sparse queries go through the tokenizer model (inference-free at query time), as neural-search advises
        fields = replace(fields_from_ingest_pipeline(body), sparse_model=model_ids["tokenizer"],
                         text_fields=("title", "text"))
        results: dict[str, dict[str, Any]] = {}
        for kind, text in queries:
            query_body = build_query(kind, text, fields, size=size)
            response = await execute(DEMO_INDEX, query_body, client=client, ml=ml)
            results[kind] = response
            say("")
            say(format_table(response, text_fields=("text",), title=f"== {kind}: \"{text}\""))
        say(f"\ndone in {time.monotonic() - t_all:.1f}s. Try: neuralpipe search --data-dir {data_dir} "
            f"--index {DEMO_INDEX} --hybrid \"read a CSV file\"")
        return DemoResult(model_ids=model_ids, indexed=stats.indexed, skipped=stats.skipped, count=count,
                          results=results)
    finally:
        await client.close()
        await ml.close()
        await node.stop()
