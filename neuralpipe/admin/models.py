"""Models on an ML node, through ML Commons' REST API (opensearch-py's ``client.plugins.ml``): find a model by
name, register it (by its catalog name, or from a zip packaged here), deploy it and wait for the tasks.

The one ML Commons admin client of the command line: ``neuralpipe models register``, the demo, ``eval`` and the
embedded ingest and search (which register the catalog models a pipeline names when they are missing) use it.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import TransportError
from tqdm import tqdm

from mlnode.catalog import Catalog
from mlnode.offline import splade_dir
from mlnode.packaging import package_model
from neuralpipe.local import ClientOptions, Connection, embedded_node, make_client

Say = Callable[[str], None]
DENSE_NAME = "huggingface/sentence-transformers/all-MiniLM-L6-v2"
SPARSE_NAME = "neuralpipe/splade-tiny"
TOKENIZER_NAME = "neuralpipe/splade-tiny-tokenizer"
FAILED_TASK_STATES = ("FAILED", "CANCELLED", "COMPLETED_WITH_ERROR", "EXPIRED", "UNREACHABLE")


class ModelSetupError(Exception):
    """A model could not be found, registered or deployed; the message carries the ML node's reason."""


def _quiet(_msg: str) -> None:
    pass


def catalog_register_body(name: str, catalog: Catalog | None = None, *, version: str | None = None,
                          model_format: str | None = None) -> dict[str, Any]:
    """The pretrained-model register body for a name of the offline catalog (by default its first version and
    format; ML Commons' register API takes all three)."""
    catalog = catalog or Catalog.load()
    entry = catalog.entries.get(name)
    if entry is None:
        if version and model_format:  # a name another ML node's catalog may know (OpenSearch's pretrained models)
            return {"name": name, "version": version, "model_format": model_format}
        raise ModelSetupError(f"[{name}] is not in the offline catalog ({', '.join(catalog.names())}); for another "
                              "ML node's pretrained model give --version and --model-format")
    return {"name": name, "version": version or entry.versions[0],
            "model_format": model_format or entry.model_formats[0]}


def packaged_register_body(package_dir: Path, *, name: str, function_name: str,
                           idf_corpus: Path | None = None) -> dict[str, Any]:
    """Package SPLADE-tiny (a doc encoder, or a tokenizer model with ``idf_corpus``'s IDF) into an ML Commons zip;
    return its register body with a ``file://`` URL (``ModelAdmin.register`` uploads such a zip in chunks)."""
    out = package_dir / name.replace("/", "__")
    pm = package_model(splade_dir(), out, function_name=function_name, model_format="TORCH_SCRIPT", name=name,
                       version="1.0.0", idf_corpus=idf_corpus)
    return {**pm.config, "url": pm.zip_path.resolve().as_uri()}


CHUNK_BYTES = 10_000_000  # ML Commons' chunk size (ModelHelper.CHUNK_SIZE)


@dataclass
class ModelAdmin:
    """Register / deploy calls on the ML node ``client`` points at (an AsyncOpenSearch client)."""

    client: AsyncOpenSearch
    say: Say = _quiet
    progress: bool = False
    poll_interval: float = 0.25
    timeout: float = 900.0
    _ticker: Any = field(default=None, repr=False)

    async def _call(self, what: str, call: Any) -> dict[str, Any]:
        try:
            return await call
        except TransportError as exc:
            info = exc.info if isinstance(exc.info, dict) else {}
            error = info.get("error")
            reason = error.get("reason") if isinstance(error, dict) else exc.error
            raise ModelSetupError(f"{what}: the ML node answered {exc.status_code}: {reason}") from None

    async def find(self, name: str) -> dict[str, Any] | None:
        """The registered model with this exact name (deployed, then newest first), or None."""
        body = {"query": {"term": {"name.keyword": name}}, "size": 100}
        payload = await self._call(f"search models named [{name}]", self.client.plugins.ml.search_models(body=body))
        found = []
        for hit in payload.get("hits", {}).get("hits", []):
            src = hit.get("_source", {})
            if src.get("name") != name or "chunk_number" in src:
                continue
            if src.get("model_state") in ("REGISTERING", "DEPLOY_FAILED", None) and not src.get(
                    "model_content_hash_value"):
                continue  # a registration that never finished
            found.append((src.get("model_state") == "DEPLOYED", src.get("created_time") or 0,
                          {**src, "model_id": hit.get("_id") or src.get("model_id")}))
        found.sort(key=lambda f: (f[0], f[1]), reverse=True)
        return found[0][2] if found else None

    async def wait_task(self, task_id: str, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            task = await self._call(what, self.client.plugins.ml.get_task(task_id=task_id))
            state = task.get("state")
            if state == "COMPLETED":
                return task
            if state in FAILED_TASK_STATES:
                raise ModelSetupError(f"{what}: task {task_id} ended {state}: {task.get('error')}")
            if time.monotonic() > deadline:
                raise ModelSetupError(f"{what}: task {task_id} still {state} after {self.timeout:.0f}s")
            self._tick(f"  {what}: task {state}")
            await asyncio.sleep(self.poll_interval)

    async def register(self, body: dict[str, Any], what: str) -> str:
        url = body.get("url")
        if isinstance(url, str) and url.startswith("file://"):
            return await self.upload(body, what)
        resp = await self._call(f"register {what}", self.client.plugins.ml.register_model(body=body))
        model_id = resp.get("model_id")
        if resp.get("task_id"):
            model_id = (await self.wait_task(resp["task_id"], f"register {what}")).get("model_id") or model_id
        if not model_id:
            raise ModelSetupError(f"register {what}: no model_id in {resp}")
        return str(model_id)

    async def upload(self, body: dict[str, Any], what: str) -> str:
        """Register a zip packaged on this machine as opensearch-py-ml does: ``_register_meta``, then its chunks.
        The ML node may be elsewhere and needs no ``file://`` access to this machine's folders."""
        zip_path = Path(urllib.request.url2pathname(urllib.parse.urlparse(body["url"]).path))
        data = await asyncio.to_thread(zip_path.read_bytes)
        meta = {key: value for key, value in body.items() if key != "url"}
        meta.update(model_content_size_in_bytes=len(data), total_chunks=max(1, -(-len(data) // CHUNK_BYTES)),
                    model_content_hash_value=hashlib.sha256(data).hexdigest())
        resp = await self._call(f"register {what}", self.client.plugins.ml.register_model_meta(body=meta))
        model_id = resp.get("model_id")
        if not model_id:
            raise ModelSetupError(f"register {what}: no model_id in {resp}")
        for number in range(meta["total_chunks"]):
            chunk = data[number * CHUNK_BYTES:(number + 1) * CHUNK_BYTES]
            await self._call(f"upload {what} chunk {number}",
                             self.client.plugins.ml.upload_chunk(model_id=model_id, chunk_number=number, body=chunk))
            self._tick(f"  {what}: uploaded chunk {number + 1}/{meta['total_chunks']}")
        return str(model_id)

    async def deploy(self, model_id: str, what: str) -> None:
        """Deploy the model unless it is deployed, and wait until it is."""
        deadline = time.monotonic() + self.timeout
        while True:
            model = await self._call(f"get {what}", self.client.plugins.ml.get_model(model_id=model_id))
            state = model.get("model_state")
            if state == "DEPLOYED":
                return
            if state == "DEPLOY_FAILED":
                raise ModelSetupError(f"{what}: model {model_id} is {state}")
            if state in ("REGISTERED", "UNDEPLOYED"):
                resp = await self._call(f"deploy {what}", self.client.plugins.ml.deploy_model(model_id=model_id))
                if resp.get("task_id"):
                    await self.wait_task(resp["task_id"], f"deploy {what}")
                continue
            if time.monotonic() > deadline:
                raise ModelSetupError(f"{what}: model {model_id} still {state} after {self.timeout:.0f}s")
            self._tick(f"  {what}: {state}")
            await asyncio.sleep(self.poll_interval)

    async def ensure(self, name: str, what: str, register_body: Callable[[], dict[str, Any]], *,
                     deploy: bool = True) -> str:
        """Reuse the model registered under ``name`` or register it (``register_body`` runs in a worker thread:
        it may package a zip); then, with ``deploy``, make sure it is deployed."""
        found = await self.find(name)
        try:
            if found is not None:
                model_id = str(found["model_id"])
                self.say(f"  {what}: reusing {name} ({model_id}, {found.get('model_state')})")
            else:
                self.say(f"  {what}: registering {name} ...")
                t0 = time.monotonic()
                model_id = await self.register(await asyncio.to_thread(register_body), what)
                self.say(f"  {what}: registered as {model_id} ({time.monotonic() - t0:.1f}s)")
            if deploy:
                t0 = time.monotonic()
                await self.deploy(model_id, what)
                self.say(f"  {what}: DEPLOYED ({time.monotonic() - t0:.1f}s)")
        finally:
            self._tick_done()
        return model_id

    async def ensure_catalog_models(self, refs: Iterable[str]) -> None:
        """Register and deploy each catalog name in ``refs`` that no registered model carries (ids and other
        names are left to the pipeline, which reports what it cannot find)."""
        catalog = Catalog.load()
        for ref in dict.fromkeys(refs):
            if ref in catalog.entries and await self.find(ref) is None:
                self.say(f"model [{ref}] is not registered on the ML node: registering and deploying it from the "
                         "offline catalog")
                body = catalog_register_body(ref, catalog)
                await self.ensure(ref, ref, partial(dict, body))

    def _tick(self, desc: str) -> None:
        """An elapsed-time line on stderr while a long step (packaging, deploying) runs, on a terminal only:
        in a log file every refresh would be a new line."""
        if not self.progress:
            return
        if self._ticker is None:
            self._ticker = tqdm(desc=desc, bar_format="{desc} ({elapsed})", leave=False, mininterval=0.5,
                                disable=not sys.stderr.isatty())
        self._ticker.set_description_str(desc, refresh=False)
        self._ticker.update(0)
        self._ticker.refresh()

    def _tick_done(self) -> None:
        if self._ticker is not None:
            self._ticker.close()
            self._ticker = None


@asynccontextmanager
async def model_admin(ml_url: str, options: ClientOptions | None = None, *, say: Say = _quiet,
                      progress: bool = False) -> AsyncIterator[ModelAdmin]:
    client = make_client(ml_url, options)
    try:
        yield ModelAdmin(client, say=say, progress=progress)
    finally:
        await client.close()


async def deploy_offline_models(admin: ModelAdmin, *, idf_corpus: Path, package_dir: Path,
                                tokenizer_name: str = TOKENIZER_NAME) -> dict[str, str]:
    """Register (once) and deploy the demo's three models: all-MiniLM-L6-v2 and SPLADE-tiny by their catalog names,
    and a SPLADE-tiny tokenizer model whose IDF comes from ``idf_corpus``, packaged here and registered from a
    ``file://`` URL (the embedded node allows it). Returns ``{"dense", "sparse", "tokenizer"}`` -> model ids."""
    dense = await admin.ensure(DENSE_NAME, "dense all-MiniLM-L6-v2", lambda: catalog_register_body(DENSE_NAME))
    sparse = await admin.ensure(SPARSE_NAME, "sparse SPLADE-tiny", lambda: catalog_register_body(SPARSE_NAME))
    tokenizer = await admin.ensure(tokenizer_name, "tokenizer (IDF)", lambda: packaged_register_body(
        package_dir, name=tokenizer_name, function_name="SPARSE_TOKENIZE", idf_corpus=idf_corpus))
    return {"dense": dense, "sparse": sparse, "tokenizer": tokenizer}


async def register_by_name(conn: Connection, name: str, *, version: str | None, model_format: str | None,
                           deploy: bool, say: Say) -> tuple[str, bool]:
    """``neuralpipe models register``: on ``--ml-url`` or an embedded ML node in the data dir, register the model
    unless one carries this name, and deploy it if asked. Returns its id and whether it was registered now."""
    body = catalog_register_body(name, version=version, model_format=model_format)
    node = None
    ml_url = conn.ml_url
    if ml_url is None:
        node = embedded_node(conn.data_dir, ("ml",))
        ml_url = await node.start()
    try:
        async with model_admin(ml_url, conn.options, say=say) as admin:
            existed = await admin.find(name) is not None
            model_id = await admin.ensure(name, name, partial(dict, body), deploy=deploy)
    finally:
        if node is not None:
            await node.stop()
    return model_id, not existed
