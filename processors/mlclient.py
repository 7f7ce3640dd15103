"""An async client for ML Commons' REST API (``/_plugins/_ml``): our ML node's, or an OpenSearch cluster's.

It only needs predict, get model and model search. One aiohttp session per client keeps connections alive.
Every error the ML node answers surfaces as ``ModelInferenceError`` naming the model id and carrying the node's reason.

Query-time embeddings (``text_embedding(..., content_type="query")`` and ``query_sparse_encoding``: the texts of
``neural`` / ``neural_sparse`` queries) are kept in an LRU cache keyed by (model id, what was asked: dense with its
content type, or sparse; text), ``query_cache_size`` entries (0 turns it off), so a repeated query does not call the
model again. Ingest-time calls are never cached.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from opensearch_contract.errors import ResourceNotFound
from opensearch_contract.models import is_asymmetric
from opensearch_contract.security import forwarded_authorization
from processors.errors import ModelInferenceError

ML_BASE = "/_plugins/_ml"
DENSE_TARGET = "sentence_embedding"
DEFAULT_QUERY_CACHE_SIZE = 1024  # entries; a MiniLM vector is ~3 KB as Python floats, so ~3 MB when full

CacheKey = tuple[str, str, str]  # (model id, kind: "dense:<CONTENT_TYPE>" | "sparse", text)


@dataclass(frozen=True)
class CacheStats:
    size: int
    entries: int
    hits: int
    misses: int


class QueryCache:
    """A least-recently-used map of query texts to their model output, counting hits and misses."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"query_cache_size must be >= 0, got [{size}]")
        self.size = size
        self._items: OrderedDict[CacheKey, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key]
        self.misses += 1
        return None

    def put(self, key: CacheKey, value: Any) -> None:
        if self.size == 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def stats(self) -> CacheStats:
        return CacheStats(self.size, len(self._items), self.hits, self.misses)

    async def through(self, model_id: str, kind: str, texts: list[str],
                      compute: Callable[[list[str]], Awaitable[list[Any]]]) -> list[Any]:
        """Each text's cached result; the misses (each distinct text once) in one call to ``compute``."""
        found: dict[str, Any] = {}
        missing: list[str] = []
        for text in texts:
            if text in found or text in missing:
                continue
            value = self.get((model_id, kind, text))
            if value is None:
                missing.append(text)
            else:
                found[text] = value
        if missing:
            for text, value in zip(missing, await compute(missing)):
                found[text] = value
                self.put((model_id, kind, text), value)
        return [_copy(found[text]) for text in texts]


def _copy(value: Any) -> Any:
    # callers put results into query bodies they may change; the cached value stays as the model gave it
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value


class MLClient:
    def __init__(self, base_url: str, *, http_auth: tuple[str, str] | None = None, verify_certs: bool = True,
                 ca_certs: str | None = None, timeout: float = 300.0,
                 query_cache_size: int = DEFAULT_QUERY_CACHE_SIZE) -> None:
        self.query_cache = QueryCache(query_cache_size)
        self.base_url = base_url.rstrip("/")
        self._auth = aiohttp.BasicAuth(*http_auth) if http_auth else None
        self._forward_caller = self._auth is None and "@" not in self.base_url.partition("://")[2].partition("/")[0]
        if ca_certs:
            self._ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_certs)
        else:
            self._ssl = True if verify_certs else False
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._models: dict[str, dict[str, Any]] = {}
        self._names: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------------------------------------
    async def __aenter__(self) -> MLClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            try:
                await self._session.close()
            except RuntimeError:  # opened under an event loop that has ended
                pass
        self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        """One keep-alive session per event loop (a client reused under a new loop opens a new session)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            connector = aiohttp.TCPConnector(limit=64, ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector, auth=self._auth, timeout=self._timeout)
            self._session_loop = loop
        return self._session

    async def _request(self, method: str, path: str, body: dict[str, Any] | None, *, model_id: str | None
                       ) -> dict[str, Any]:
        url = f"{self.base_url}{ML_BASE}{path}"
        try:
            # inside a node serving an authenticated request, and with no credentials of its own: run as the caller
            headers = forwarded_authorization() if self._forward_caller else None
            async with self._get_session().request(method, url, json=body, headers=headers) as resp:
                try:
                    payload = await resp.json(content_type=None)
                except ValueError:
                    payload = {"error": {"type": "exception", "reason": (await resp.text())[:500]}}
                if resp.status >= 400:
                    raise _error_from(payload, resp.status, model_id, url)
                return payload if isinstance(payload, dict) else {"result": payload}
        except TimeoutError as exc:
            what = f"model [{model_id}]" if model_id else "request"
            raise ModelInferenceError(f"{what}: ML node at [{self.base_url}] did not answer within "
                                      f"{self._timeout.total}s", status=504, error_type="timeout_exception") from exc
        except aiohttp.ClientError as exc:
            what = f"model [{model_id}]" if model_id else "request"
            raise ModelInferenceError(f"{what}: ML node at [{self.base_url}] unreachable: {exc}", status=503,
                                      error_type="connect_exception") from exc

    # -- ML Commons calls ------------------------------------------------------------------------------------------
    async def predict(self, model_id: str, algorithm: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", f"/_predict/{algorithm}/{model_id}", body, model_id=model_id)

    async def predict_model(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST models/<id>/_predict``: the predict route of a remote (connector) model."""
        return await self._request("POST", f"/models/{model_id}/_predict", body, model_id=model_id)

    async def get_model(self, model_id: str) -> dict[str, Any]:
        cached = self._models.get(model_id)
        if cached is not None:
            return cached
        doc = await self._request("GET", f"/models/{model_id}", None, model_id=model_id)
        self._models[model_id] = doc
        return doc

    async def text_embedding(self, model_id: str, texts: list[str], *, content_type: str | None = None
                             ) -> list[list[float]]:
        """Dense vectors. ``content_type`` ("query" | "passage") is sent, as neural-search does, only to asymmetric
        models (whose model_config declares a query_prefix or passage_prefix). Query vectors come from the query
        cache when it holds them."""
        if not texts:
            return []
        if content_type and content_type.lower() == "query":
            return await self.query_cache.through(model_id, f"dense:{content_type.upper()}", list(texts),
                                                  lambda missing: self._text_embedding(model_id, missing, content_type))
        return await self._text_embedding(model_id, texts, content_type)

    async def _text_embedding(self, model_id: str, texts: list[str], content_type: str | None
                              ) -> list[list[float]]:
        if len(parts := _parts(texts)) > 1:
            return [v for part in parts for v in await self._text_embedding(model_id, part, content_type)]
        body: dict[str, Any] = {"text_docs": list(texts), "return_number": True, "target_response": [DENSE_TARGET]}
        if content_type and await self._is_asymmetric(model_id):
            body["parameters"] = {"content_type": content_type.upper()}
        payload = await self.predict(model_id, "text_embedding", body)
        vectors = []
        for result in payload.get("inference_results", []):
            tensors = result.get("output", [])
            tensor = next((t for t in tensors if t.get("name") == DENSE_TARGET), None)
            if tensor is None:
                tensor = next((t for t in tensors if "data" in t), None)
            if tensor is None:
                raise ModelInferenceError(f"model [{model_id}]: predict output holds no [{DENSE_TARGET}] tensor")
            vectors.append([float(x) for x in tensor["data"]])
        _check_count(model_id, texts, vectors)
        return vectors

    async def query_sparse_encoding(self, model_id: str, texts: list[str]) -> list[dict[str, float]]:
        """``sparse_encoding`` for query texts: their weights come from the query cache when it holds them (the
        predict call, for the texts it lacks, is ``sparse_encoding``'s)."""
        if not texts:
            return []
        return await self.query_cache.through(model_id, "sparse", list(texts),
                                              lambda missing: self.sparse_encoding(model_id, missing))

    async def sparse_encoding(self, model_id: str, texts: list[str]) -> list[dict[str, float]]:
        """Token weights per text, from a SPARSE_ENCODING model or a SPARSE_TOKENIZE model (its own predict path)."""
        if not texts:
            return []
        if len(parts := _parts(texts)) > 1:
            return [m for part in parts for m in await self.sparse_encoding(model_id, part)]
        algorithm = await self._algorithm(model_id, default="sparse_encoding")
        payload = await self.predict(model_id, algorithm, {"text_docs": list(texts)})
        maps: list[dict[str, float]] = []
        for result in payload.get("inference_results", []):
            for tensor in result.get("output", []):
                for weights in (tensor.get("dataAsMap") or {}).get("response", []):
                    maps.append({str(k): float(v) for k, v in weights.items()})
        _check_count(model_id, texts, maps)
        return maps

    async def text_similarity(self, model_id: str, query: str, texts: list[str]) -> list[float]:
        """A cross-encoder's score of each (query, text) pair: one TEXT_SIMILARITY predict for all texts."""
        if not texts:
            return []
        if len(parts := _parts(texts)) > 1:
            return [x for part in parts for x in await self.text_similarity(model_id, query, part)]
        payload = await self.predict(model_id, "text_similarity", {"query_text": query, "text_docs": list(texts)})
        scores = []
        for result in payload.get("inference_results", []):
            tensor = next((t for t in result.get("output", []) if "data" in t), None)
            if tensor is None or not tensor["data"]:
                raise ModelInferenceError(f"model [{model_id}]: predict output holds no similarity score")
            scores.append(float(tensor["data"][0]))
        _check_count(model_id, texts, scores)
        return scores

    async def _is_asymmetric(self, model_id: str) -> bool:
        try:
            config = (await self.get_model(model_id)).get("model_config") or {}
        except ModelInferenceError:
            return False
        return is_asymmetric(config)

    async def _algorithm(self, model_id: str, *, default: str) -> str:
        try:
            doc = await self.get_model(model_id)
        except ModelInferenceError:
            return default
        name = doc.get("algorithm") or doc.get("function_name")
        return str(name).lower() if name else default

    async def resolve_model_id(self, id_or_name: str) -> str:
        """A model id as given, or the id of the registered model with that name (deployed and newest first).

        Cached per client; concurrent first calls may both ask the ML node (same answer, no lock across loops)."""
        if id_or_name in self._names:
            return self._names[id_or_name]
        resolved = None
        if _could_be_id(id_or_name):
            try:
                await self.get_model(id_or_name)
                resolved = id_or_name
            except ModelInferenceError as exc:
                if exc.status not in (400, 404, 405):
                    raise
        if resolved is None:
            resolved = await self._find_by_name(id_or_name)
        self._names[id_or_name] = resolved
        return resolved

    async def _find_by_name(self, name: str) -> str:
        body = {"query": {"term": {"name.keyword": name}}, "size": 100}
        try:
            payload = await self._request("POST", "/models/_search", body, model_id=None)
        except ModelInferenceError:
            payload = await self._request("POST", "/models/_search", {"query": {"match_all": {}}, "size": 1000},
                                          model_id=None)
        candidates = []
        for hit in payload.get("hits", {}).get("hits", []):
            src = hit.get("_source", {})
            if src.get("name") != name or "chunk_number" in src:
                continue
            deployed = src.get("model_state") == "DEPLOYED"
            candidates.append((deployed, src.get("last_deployed_time") or src.get("created_time") or 0,
                               hit.get("_id") or src.get("model_id")))
        if not candidates:
            raise ResourceNotFound(f"Failed to find model with id or name [{name}] on the ML node [{self.base_url}]")
        candidates.sort(key=lambda c: (c[0], c[1]), reverse=True)
        return str(candidates[0][2])


# One predict call carries at most this many texts and about this many bytes of them: well inside the ML node's
# request limits (max_predict_texts 4096, max_predict_body_bytes 32 MB), so a large batch is several calls, not a 4xx.
MAX_TEXTS_PER_CALL = 1024
MAX_TEXT_BYTES_PER_CALL = 8 * 1024 * 1024


def _parts(texts: list[str]) -> list[list[str]]:
    """``texts`` in consecutive groups within the per-call bounds (one group for any ordinary batch)."""
    parts: list[list[str]] = [[]]
    size = 0
    for text in texts:
        cost = len(text.encode("utf-8"))
        if parts[-1] and (len(parts[-1]) >= MAX_TEXTS_PER_CALL or size + cost > MAX_TEXT_BYTES_PER_CALL):
            parts.append([])
            size = 0
        parts[-1].append(text)
        size += cost
    return parts


def _could_be_id(text: str) -> bool:
    # ML Commons ids are URL-safe tokens; a name with "/" or spaces can only be a name
    return bool(text) and all(c.isalnum() or c in "-_." for c in text)


def _check_count(model_id: str, texts: list[str], results: list[Any]) -> None:
    if len(results) != len(texts):
        raise ModelInferenceError(f"model [{model_id}]: predict returned {len(results)} results for {len(texts)} texts")


def _error_from(payload: Any, status: int, model_id: str | None, url: str) -> ModelInferenceError:
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        reason, etype = str(error.get("reason", error)), str(error.get("type", "exception"))
    elif error is not None:
        reason, etype = str(error), "exception"
    else:
        reason, etype = str(payload)[:500], "exception"
    what = f"model [{model_id}]" if model_id else f"[{url}]"
    return ModelInferenceError(f"{what}: {reason}", status=status, error_type=etype)
