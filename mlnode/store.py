"""Persistence of model groups, models, tasks and cluster settings in the data dir.

Layout (every JSON file is written to a temp file and renamed, so a crash never leaves half a document)::

    <data_dir>/meta/<kind>/<id>.json     kind: model_groups | models | tasks
    <data_dir>/meta/cluster_settings.json
    <data_dir>/models/<model_id>/        the validated, unpacked model zip
    <data_dir>/chunks/<model_id>/        chunked uploads in progress
    <data_dir>/tmp/                      staging; moved into place with one rename

All documents are kept in memory too; file writes run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

from mlnode.errors import IllegalArgument, ParsingError

KINDS = ("model_groups", "models", "tasks")
INDEX_NAMES = {"model_groups": ".plugins-ml-model-group", "models": ".plugins-ml-model", "tasks": ".plugins-ml-task"}


def new_id() -> str:
    """A 20-character URL-safe id, like OpenSearch's auto-generated document ids.

    Never starts with ``-``: such an id pasted after a command-line flag (``--model-id -x...``) would be read as a
    flag by argparse and most shells' tools.
    """
    while True:
        candidate = secrets.token_urlsafe(15)
        if not candidate.startswith("-"):
            return candidate


def now_ms() -> int:
    return int(time.time() * 1000)


def _atomic_write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Store:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.meta_dir = self.data_dir / "meta"
        self.models_dir = self.data_dir / "models"
        self.chunks_dir = self.data_dir / "chunks"
        self.tmp_dir = self.data_dir / "tmp"
        self._docs: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self._versions: dict[tuple[str, str], int] = {}
        self._seq_no = 0
        self.cluster_settings: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    # ---- loading ------------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Read every document from disk (blocking: call from a worker thread)."""
        for directory in (self.meta_dir, self.models_dir, self.chunks_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)  # staging left by a crash
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for kind in KINDS:
            folder = self.meta_dir / kind
            folder.mkdir(parents=True, exist_ok=True)
            for path in sorted(folder.glob("*.json")):
                doc = json.loads(path.read_text(encoding="utf-8"))
                self._docs[kind][path.stem] = doc
                self._versions[(kind, path.stem)] = 1
        settings_path = self.meta_dir / "cluster_settings.json"
        if settings_path.exists():
            self.cluster_settings = json.loads(settings_path.read_text(encoding="utf-8"))

    # ---- documents ----------------------------------------------------------------------------------------------

    def get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        doc = self._docs[kind].get(doc_id)
        return dict(doc) if doc is not None else None

    def all(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        return [(doc_id, dict(doc)) for doc_id, doc in self._docs[kind].items()]

    def version(self, kind: str, doc_id: str) -> int:
        return self._versions.get((kind, doc_id), 0)

    async def put(self, kind: str, doc_id: str, doc: dict[str, Any]) -> int:
        async with self._lock:
            return await self._write(kind, doc_id, doc)

    async def update(self, kind: str, doc_id: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the current document, atomically with respect to other writers."""
        async with self._lock:
            if doc_id not in self._docs[kind]:
                raise KeyError(f"{kind}/{doc_id} does not exist")
            doc = {**self._docs[kind][doc_id], **fields}
            await self._write(kind, doc_id, doc)
            return dict(doc)

    async def _write(self, kind: str, doc_id: str, doc: dict[str, Any]) -> int:
        await asyncio.to_thread(_atomic_write_json, self.meta_dir / kind / f"{doc_id}.json", doc)
        self._docs[kind][doc_id] = dict(doc)
        self._versions[(kind, doc_id)] = self._versions.get((kind, doc_id), 0) + 1
        self._seq_no += 1
        return self._versions[(kind, doc_id)]

    async def delete(self, kind: str, doc_id: str) -> bool:
        async with self._lock:
            if doc_id not in self._docs[kind]:
                return False
            path = self.meta_dir / kind / f"{doc_id}.json"
            await asyncio.to_thread(path.unlink, True)
            del self._docs[kind][doc_id]
            self._versions[(kind, doc_id)] = self._versions.get((kind, doc_id), 0) + 1
            self._seq_no += 1
            return True

    async def put_cluster_settings(self, values: dict[str, Any]) -> None:
        async with self._lock:
            await asyncio.to_thread(_atomic_write_json, self.meta_dir / "cluster_settings.json", values)
            self.cluster_settings = dict(values)

    def index_response(self, kind: str, doc_id: str, result: str) -> dict[str, Any]:
        """The body OpenSearch's index/delete APIs answer with, which ML Commons passes through."""
        return {
            "_index": INDEX_NAMES[kind],
            "_id": doc_id,
            "_version": self.version(kind, doc_id),
            "result": result,
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": self._seq_no,
            "_primary_term": 1,
        }

    # ---- model files --------------------------------------------------------------------------------------------

    def model_dir(self, model_id: str) -> Path:
        return self.models_dir / model_id

    def staging_dir(self) -> Path:
        path = self.tmp_dir / new_id()
        path.mkdir(parents=True)
        return path

    def commit_model_dir(self, staged: Path, model_id: str) -> Path:
        """Move a fully validated, unpacked model into place with one rename (blocking)."""
        target = self.model_dir(model_id)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
        return target

    def remove_model_files(self, model_id: str) -> None:
        shutil.rmtree(self.model_dir(model_id), ignore_errors=True)
        shutil.rmtree(self.chunks_dir / model_id, ignore_errors=True)

    # ---- search -------------------------------------------------------------------------------------------------

    def search(self, kind: str, body: dict[str, Any] | None, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
        """A small OpenSearch query subset over one kind, answered in OpenSearch's raw search-response shape."""
        body = body or {}
        if not isinstance(body, dict):
            raise ParsingError("request body must be a JSON object")
        query = body.get("query", {"match_all": {}})
        size = _int_param(body.get("size", 10), "size")
        start = _int_param(body.get("from", 0), "from")
        matched = [(doc_id, doc) for doc_id, doc in self._docs[kind].items() if _matches(doc_id, doc, query)]
        for spec in reversed(_sort_specs(body.get("sort"))):
            field, desc = spec
            matched.sort(key=lambda item: _sort_key(_lookup(item[1], field)), reverse=desc)
        hidden = set(exclude)
        source_filter = body.get("_source")
        hits = []
        for doc_id, doc in matched[start : start + size]:
            source = {k: v for k, v in doc.items() if k not in hidden}
            hits.append(
                {
                    "_index": INDEX_NAMES[kind],
                    "_id": doc_id,
                    "_version": self.version(kind, doc_id),
                    "_seq_no": 0,
                    "_primary_term": 1,
                    "_score": 1.0,
                    "_source": _filter_source(source, source_filter),
                }
            )
        return {
            "took": 0,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": len(matched), "relation": "eq"}, "max_score": 1.0 if hits else None, "hits": hits},
        }


# ---- query evaluation (module-private) ------------------------------------------------------------------------

_QUERY_TYPES = ("match_all", "match_none", "term", "terms", "match", "match_phrase", "ids", "exists", "bool", "range", "prefix", "wildcard")


def _int_param(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise IllegalArgument(f"[{name}] must be an integer, got [{value}]") from None
    if number < 0:
        raise IllegalArgument(f"[{name}] parameter cannot be negative, found [{number}]")
    return number


def _lookup(doc: dict[str, Any], field: str) -> Any:
    field = field.removesuffix(".keyword")
    if field in doc:
        return doc[field]
    value: Any = doc
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _values(doc: dict[str, Any], field: str) -> list[Any]:
    value = _lookup(doc, field)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _field_and_value(clause: Any, key: str, qtype: str) -> tuple[str, Any]:
    if not isinstance(clause, dict) or len(clause) != 1:
        raise ParsingError(f"[{qtype}] query malformed, no start_object after query name")
    field, spec = next(iter(clause.items()))
    if isinstance(spec, dict):
        if key not in spec:
            raise ParsingError(f"[{qtype}] query does not support [{next(iter(spec), '')}]")
        spec = spec[key]
    return field, spec


def _matches(doc_id: str, doc: dict[str, Any], query: Any) -> bool:
    if not isinstance(query, dict) or len(query) != 1:
        raise ParsingError("query malformed, must start with start_object and hold exactly one query")
    qtype, clause = next(iter(query.items()))
    if qtype == "match_all":
        return True
    if qtype == "match_none":
        return False
    if qtype == "term":
        field, value = _field_and_value(clause, "value", qtype)
        if field == "_id":
            return doc_id == value
        return any(v == value or (isinstance(v, str) and v == str(value)) for v in _values(doc, field))
    if qtype == "terms":
        if not isinstance(clause, dict) or len(clause) != 1:
            raise ParsingError("[terms] query malformed")
        field, wanted = next(iter(clause.items()))
        wanted = wanted if isinstance(wanted, list) else [wanted]
        if field == "_id":
            return doc_id in wanted
        return any(v in wanted for v in _values(doc, field))
    if qtype in ("match", "match_phrase"):
        field, value = _field_and_value(clause, "query", qtype)
        words = set(re.split(r"[^0-9a-z_]+", str(value).lower())) - {""}
        for v in _values(doc, field):
            text = str(v).lower()
            if qtype == "match_phrase" and str(value).lower() in text:
                return True
            if qtype == "match" and words & set(re.split(r"[^0-9a-z_]+", text)):
                return True
        return False
    if qtype == "prefix":
        field, value = _field_and_value(clause, "value", qtype)
        return any(str(v).startswith(str(value)) for v in _values(doc, field))
    if qtype == "wildcard":
        field, value = _field_and_value(clause, "value", qtype)
        return any(fnmatch.fnmatchcase(str(v), str(value)) for v in _values(doc, field))
    if qtype == "ids":
        return doc_id in (clause or {}).get("values", [])
    if qtype == "exists":
        return bool(_values(doc, (clause or {}).get("field", "")))
    if qtype == "range":
        if not isinstance(clause, dict) or len(clause) != 1:
            raise ParsingError("[range] query malformed")
        field, bounds = next(iter(clause.items()))
        values = [v for v in _values(doc, field) if isinstance(v, (int, float))]
        checks = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
        return any(all(checks[op](v, b) for op, b in bounds.items() if op in checks) for v in values)
    if qtype == "bool":
        clause = clause or {}

        def listify(x: Any) -> list[Any]:
            return x if isinstance(x, list) else [x]

        must = listify(clause.get("must", [])) + listify(clause.get("filter", []))
        should = listify(clause.get("should", []))
        must_not = listify(clause.get("must_not", []))
        if not all(_matches(doc_id, doc, q) for q in must):
            return False
        if any(_matches(doc_id, doc, q) for q in must_not):
            return False
        if should:
            minimum = clause.get("minimum_should_match", 0 if must else 1)
            return sum(_matches(doc_id, doc, q) for q in should) >= int(minimum)
        return True
    raise ParsingError(f"unknown query [{qtype}]; supported here: {', '.join(_QUERY_TYPES)}", error_type="parsing_exception")


def _sort_specs(sort: Any) -> list[tuple[str, bool]]:
    if sort is None:
        return []
    specs = []
    for item in sort if isinstance(sort, list) else [sort]:
        if isinstance(item, str):
            specs.append((item, False))
        elif isinstance(item, dict) and len(item) == 1:
            field, order = next(iter(item.items()))
            if isinstance(order, dict):
                order = order.get("order", "asc")
            specs.append((field, str(order).lower() == "desc"))
        else:
            raise ParsingError(f"malformed sort [{item}]")
    return specs


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (1, "")
    if isinstance(value, (int, float)):
        return (0, value)
    return (0, str(value))


def _filter_source(source: dict[str, Any], source_filter: Any) -> dict[str, Any]:
    if source_filter in (None, True):
        return source
    if source_filter is False:
        return {}
    includes: list[str] = []
    excludes: list[str] = []
    if isinstance(source_filter, str):
        includes = [source_filter]
    elif isinstance(source_filter, list):
        includes = list(source_filter)
    elif isinstance(source_filter, dict):
        includes = list(source_filter.get("includes", []))
        excludes = list(source_filter.get("excludes", []))
    out = {}
    for key, value in source.items():
        if includes and not any(fnmatch.fnmatchcase(key, p) for p in includes):
            continue
        if any(fnmatch.fnmatchcase(key, p) for p in excludes):
            continue
        out[key] = value
    return out
