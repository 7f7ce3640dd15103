"""The data node's blocking core: indices, documents, search and pipelines over SQLite + memory.

Every public method blocks (SQLite, faiss, numpy) and is called from a worker thread by the
HTTP layer. Writes are durable before they are acknowledged and applied to memory only after
their transaction commits, so a failed write changes nothing.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import logging
import shutil
import sqlite3
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opensearch_contract.errors import (
    IllegalArgument,
    IndexNotFound,
    MapperParsingError,
    OpenSearchError,
    ParsingError,
    ResourceAlreadyExists,
    ResourceNotFound,
    flood_stage,
)
from opensearch_contract.settings import (
    MAX_RESULT_WINDOW,
    check_index_settings,
    read_index_bool,
    setting_string,
)
from opensearch_contract.settings import flatten_settings as flatten_any
from opensearch_contract.settings import nest_settings as nest_any

from . import analysis
from .errors import ActionRequestValidation as ActionValidation
from .errors import DocumentMissing, InvalidIndexName, SearchPhaseError, VersionConflict, item_error
from .hits import SortSpec, inner_hits_of, parse_sort, sort_hits
from .index import POSITION_INCREMENT_GAP, Index
from .mapping import Mapping, ParsedDoc
from .query import Executor
from .segment import SegmentLoader
from .source import SourceDecoder, droppable_vectors, filter_source, parse_source_param
from .storage import DiskFull, Storage, dumps, is_disk_full, load_stored

log = logging.getLogger("neuralpipe.datanode")
VERSION = "3.1.0"
LUCENE_VERSION = "10.2.1"
CLUSTER_NAME = "neuralpipe"
NODE_NAME = "neuralpipe-data"
DEFAULT_TRACK_TOTAL_HITS = 10000
_BAD_INDEX_CHARS = set('\\/*?"<>| ,#:')


def new_id() -> str:
    return base64.urlsafe_b64encode(uuidlib.uuid4().bytes[:15]).decode().rstrip("=")


def validate_index_name(name: str) -> None:
    if not name:
        raise InvalidIndexName(f"Invalid index name [{name}], must not be empty")
    if name != name.lower():
        raise InvalidIndexName(f"Invalid index name [{name}], must be lowercase")
    if name[0] in "_-+":
        raise InvalidIndexName(f"Invalid index name [{name}], must not start with '_', '-', or '+'")
    bad = sorted(_BAD_INDEX_CHARS & set(name))
    if bad:
        raise InvalidIndexName(f"Invalid index name [{name}], must not contain the following characters "
                               f"[{' , '.join(sorted(_BAD_INDEX_CHARS))}]")
    if name in (".", "..") or len(name.encode()) > 255:
        raise InvalidIndexName(f"Invalid index name [{name}], must not be '.' or '..' or longer than 255 bytes")


def flatten_settings(settings: Any) -> dict[str, Any]:
    """Index settings as flat ``index.*`` keys, however nested or prefixed they were sent."""
    if not isinstance(settings, dict):
        raise IllegalArgument(f"settings must be an object, got [{settings}]")
    return {k if k.startswith("index.") else "index." + k: v for k, v in flatten_any(settings).items()}


def nest_settings(flat: dict[str, Any]) -> dict[str, Any]:
    """Settings as OpenSearch prints them: nested, every value a string."""
    return nest_any({k: setting_string(v) for k, v in flat.items()})


@dataclass
class WriteOp:
    """One document write, as a ``_bulk`` line pair or a single-document API call describes it."""

    action: str  # index | create | update | delete
    index: str
    id: str | None
    source: dict[str, Any] | None = None
    update: dict[str, Any] | None = None
    error: OpenSearchError | None = None   # set when the op already failed (bad line, pipeline)
    raw: str | None = None                 # the source exactly as sent, stored as is when unchanged
    extra: dict[str, Any] = field(default_factory=dict)


class DataNode:
    def __init__(self, data_dir: Path) -> None:
        """Opens the data dir: its pipelines and its indices' metadata; each index opens on first use."""
        self.data_dir = Path(data_dir)
        self.storage = Storage(self.data_dir)
        self.segments = SegmentLoader(self.storage, self.data_dir / "indices")
        self.indices: dict[str, Index] = {}
        self.pipelines = {"ingest": self.storage.pipelines("ingest"), "search": self.storage.pipelines("search")}
        for row in self.storage.indices():
            self.indices[row["name"]] = Index(row["name"], row["uuid"], row["settings"], row["mappings"],
                                              row["created_ms"], row["seq_no"], loader=self.segments)
        self.segments.keep_only({index.uuid for index in self.indices.values()})
        shutil.rmtree(self.data_dir / "graphs", ignore_errors=True)  # graph snapshots of earlier versions

    def close(self) -> None:
        """Clean shutdown: save the segments of the indices used since the start, so the next start reads them."""
        with self.storage.write_lock:
            self.segments.save_open(list(self.indices.values()))
        self.storage.close()

    # --- indices ---------------------------------------------------------------------------
    def index(self, name: str) -> Index:
        index = self.indices.get(name)
        if index is None:
            raise IndexNotFound(name)
        return index

    def resolve(self, expression: str | None) -> list[Index]:
        if not expression or expression in ("_all", "*"):
            return [self.indices[n] for n in sorted(self.indices)]
        out: list[Index] = []
        for part in expression.split(","):
            if "*" in part:
                out += [self.indices[n] for n in sorted(self.indices) if fnmatch.fnmatchcase(n, part)]
            else:
                out.append(self.index(part))
        return out

    def create_index(self, name: str, body: dict[str, Any] | None) -> dict[str, Any]:
        body = body or {}
        validate_index_name(name)
        unknown = set(body) - {"settings", "mappings", "aliases"}
        if unknown:
            raise ParsingError(f"unknown key [{sorted(unknown)[0]}] for create index: valid keys are "
                               f"[settings, mappings, aliases]")
        with self.storage.transaction() as db:
            index = self._create(db, name, body.get("settings") or {}, body.get("mappings") or {})
        self.indices[name] = index
        return {"acknowledged": True, "shards_acknowledged": True, "index": name}

    def _create(self, db: Any, name: str, settings: dict[str, Any], mappings: dict[str, Any]) -> Index:
        if name in self.indices:
            existing = self.indices[name]
            raise ResourceAlreadyExists(f"index [{name}/{existing.uuid}] already exists",
                                        extra={"index_uuid": existing.uuid, "index": name})
        flat = {k: v for k, v in check_index_settings(flatten_settings(settings)).items() if v is not None}
        custom = sorted(k for k in flat if k.startswith("index.analysis."))
        if custom:
            raise IllegalArgument(f"custom analysis settings are not supported by this data node, got [{custom[0]}]: "
                                  f"map text fields to one of its analyzers [{', '.join(analysis.ANALYZERS)}]")
        flat.setdefault("index.number_of_shards", "1")
        flat.setdefault("index.number_of_replicas", "1")
        if not isinstance(mappings, dict):
            raise MapperParsingError(f"Failed to parse mapping: Expected map for property [mappings] but got "
                                     f"[{type(mappings).__name__}]")
        if "_doc" in mappings and isinstance(mappings["_doc"], dict):
            mappings = mappings["_doc"]
        Mapping(mappings, knn_enabled=read_index_bool(flat, "index.knn")).check_depth()  # raises what is invalid
        created = int(time.time() * 1000)
        index_uuid = new_id()
        index = Index(name, index_uuid, flat, mappings, created)
        db.execute("INSERT INTO indices (name, uuid, settings, mappings, created_ms, seq_no) VALUES (?,?,?,?,?,?)",
                   (name, index_uuid, dumps(flat), dumps(index.mapping.to_body()), created, -1))
        return index

    def delete_index(self, name: str) -> dict[str, Any]:
        targets = self.resolve(name)
        with self.storage.transaction() as db:
            for index in targets:
                db.execute("DELETE FROM docs WHERE idx=?", (index.name,))
                db.execute("DELETE FROM indices WHERE name=?", (index.name,))
        for index in targets:
            self.indices.pop(index.name, None)
        self.segments.forget({index.uuid for index in targets})
        return {"acknowledged": True}

    def describe(self, index: Index) -> dict[str, Any]:
        settings = dict(index.settings)
        settings.update({"index.uuid": index.uuid, "index.creation_date": str(index.created_ms),
                         "index.provided_name": index.name, "index.version.created": "137217827"})
        return {"aliases": {}, "mappings": index.mapping.to_body(), "settings": nest_settings(settings)}

    def get_index(self, expression: str) -> dict[str, Any]:
        return {index.name: self.describe(index) for index in self.resolve(expression)}

    def get_mapping(self, expression: str | None) -> dict[str, Any]:
        return {index.name: {"mappings": index.mapping.to_body()} for index in self.resolve(expression)}

    def analyze(self, index_name: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """``_analyze``: the tokens of ``text`` (a string or an array) by a named analyzer or a field's (the index
        analyzer of a text field, the keyword analyzer for other mapped fields, standard for an unmapped one).
        Positions and offsets continue across the texts as OpenSearch's TransportAnalyzeAction counts them."""
        custom = sorted({"tokenizer", "filter", "char_filter", "normalizer"} & set(body))
        if custom:
            raise IllegalArgument(f"[{custom[0]}] is not supported by this data node's _analyze: name one of its "
                                  f"analyzers [{', '.join(analysis.ANALYZERS)}] or a field")
        texts = body.get("text")
        if texts is None or texts == []:
            raise ActionValidation("Validation Failed: 1: text is missing;")
        analyzer, gap = self._analyze_with(index_name, body)
        out: list[dict[str, Any]] = []
        position, offset = 0, 0
        for text in texts if isinstance(texts, list) else [texts]:
            text = str(text)
            tokens, span = analyzer.run(text)
            out += [{**t.to_body(), "position": position + t.position, "start_offset": offset + t.start,
                     "end_offset": offset + t.end} for t in tokens]
            position += span + gap
            offset += len(text) + 1
        return {"tokens": out}

    def _analyze_with(self, index_name: str | None, body: dict[str, Any]) -> tuple[analysis.Analyzer, int]:
        """The analyzer ``_analyze`` runs, and the position gap between its texts (100 for a text field's)."""
        name = body.get("analyzer")
        if name is not None:
            if index_name:
                self.index(index_name)
            if not isinstance(name, str) or name not in analysis.ANALYZERS:
                scope = "" if index_name else "global "
                raise IllegalArgument(f"failed to find {scope}analyzer [{name}]")
            return analysis.get(name), 0
        if body.get("field") is None:
            return analysis.get("standard"), 0
        if not index_name:
            raise IllegalArgument("analysis based on a specific field requires an index")
        spec = self.index(index_name).mapping.fields.get(str(body["field"]))
        if spec is None:
            return analysis.get("standard"), 0
        if spec.type != "text":
            return analysis.get("keyword"), 0
        return analysis.get(spec.analyzer), POSITION_INCREMENT_GAP

    def get_settings(self, expression: str | None) -> dict[str, Any]:
        return {index.name: {"settings": self.describe(index)["settings"]} for index in self.resolve(expression)}

    def put_mapping(self, expression: str, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise MapperParsingError("Failed to parse mapping: body must be an object")
        targets = self.resolve(expression)
        merged = {index.name: index.mapping.merged(body) for index in targets}
        for mapping in merged.values():
            mapping.check_depth()
        with self.storage.transaction() as db:
            for index in targets:
                db.execute("UPDATE indices SET mappings=? WHERE name=?", (dumps(merged[index.name].to_body()),
                                                                         index.name))
        for index in targets:
            with index.lock:
                index.mapping = merged[index.name]
        return {"acknowledged": True}

    DYNAMIC_SETTINGS = ("index.default_pipeline", "index.search.default_pipeline", "index.number_of_replicas",
                        "index.refresh_interval", "index.knn.algo_param.ef_search", "index.final_pipeline",
                        "index.max_result_window", "index.neural_search.semantic_ingest_batch_size")

    def put_settings(self, expression: str, body: dict[str, Any]) -> dict[str, Any]:
        flat = check_index_settings(flatten_settings(body.get("settings", body) if isinstance(body, dict) else body))
        static = sorted(k for k in flat if k not in self.DYNAMIC_SETTINGS)
        if static:
            raise IllegalArgument(f"Can't update non dynamic settings [[{', '.join(static)}]] for open indices; "
                                  f"this data node can update [{', '.join(self.DYNAMIC_SETTINGS)}]")
        targets = self.resolve(expression)
        with self.storage.transaction() as db:
            for index in targets:
                updated = {**index.settings, **{k: v for k, v in flat.items() if v is not None}}
                for key in [k for k, v in flat.items() if v is None]:  # null resets a setting
                    updated.pop(key, None)
                db.execute("UPDATE indices SET settings=? WHERE name=?", (dumps(updated), index.name))
        for index in targets:
            index.settings = {**index.settings, **{k: v for k, v in flat.items() if v is not None}}
            for key in [k for k, v in flat.items() if v is None]:
                index.settings.pop(key, None)
        return {"acknowledged": True}

    def refresh(self, expression: str | None) -> dict[str, Any]:
        targets = self.resolve(expression)
        for index in targets:
            index.refresh()
        n = len(targets)
        return {"_shards": {"total": 2 * n, "successful": n, "failed": 0}}

    # --- writes -------------------------------------------------------------------------
    def write(self, ops: list[WriteOp]) -> list[dict[str, Any]]:
        """Apply document writes in one durable transaction; one result (or error) per op, in order."""
        # the write lock spans commit and memory update, so concurrent writes reach memory in commit order
        with self.storage.write_lock:
            return self._write(ops)

    def _write(self, ops: list[WriteOp]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        pending: list[tuple[Index, str, ParsedDoc | None]] = []
        created: dict[str, Index] = {}
        before = {name: (ix.seq_no, ix.mapping) for name, ix in self.indices.items()}
        for name in {op.index for op in ops} & set(self.indices):
            # open before the commit: an index first opened after it would find its segment one write behind
            self.indices[name].ensure_open()
        try:
            with self.storage.transaction() as db:
                for op in ops:
                    items.append(self._write_isolated(db, op, pending, created))
                touched = {ix.name: ix for ix, _, _ in pending} | created
                for ix in touched.values():
                    db.execute("UPDATE indices SET seq_no=?, mappings=? WHERE name=?",
                               (ix.seq_no, dumps(ix.mapping.to_body()), ix.name))
        except BaseException as exc:
            for name, (seq_no, mapping) in before.items():
                if name in self.indices:
                    self.indices[name].seq_no, self.indices[name].mapping = seq_no, mapping
            for name in created:
                self.indices.pop(name, None)
            if isinstance(exc, DiskFull):  # nothing was written: every item fails as a flood-stage block does
                log.warning("disk full: a write of %d documents was refused and rolled back (%s)", len(ops), exc)
                return [self._failed(op, flood_stage([op.index] if op.index else [])) for op in ops]
            raise
        by_index: dict[int, tuple[Index, list[tuple[str, ParsedDoc | None]]]] = {}
        for ix, doc_id, parsed in pending:  # each index's writes in commit order (indices do not share memory)
            by_index.setdefault(id(ix), (ix, []))[1].append((doc_id, parsed))
        for ix, writes in by_index.values():
            with ix.lock:
                ix.apply(writes)
        return items

    def _write_isolated(self, db: Any, op: WriteOp, pending: list[tuple[Index, str, ParsedDoc | None]],
                        created: dict[str, Index]) -> dict[str, Any]:
        """One op inside a savepoint: a failed op (an error item, or an unexpected exception from its document) is
        undone in SQLite and in memory, and the other ops of the request go on."""
        mark = len(pending)
        existing = self.indices.get(op.index)
        state = (existing.seq_no, existing.mapping) if existing is not None else None
        # an index/create into an existing index writes one row as its very last step (_put): when it fails, SQLite
        # wrote nothing, so a savepoint (two more statements per document) would guard nothing
        savepoint = not (existing is not None and op.action in ("index", "create"))
        if savepoint:
            db.execute("SAVEPOINT item")
        try:
            result = self._write_one(db, op, pending, created)
        except (sqlite3.Error, OSError) as exc:
            if is_disk_full(exc):
                raise  # the whole request fails (and rolls back): see _write
            result = self._unexpected(op, exc)
        except Exception as exc:  # noqa: BLE001  (one document must not fail the others)
            result = self._unexpected(op, exc)
        if "error" not in result:
            if savepoint:
                db.execute("RELEASE item")
            return result
        if savepoint:
            db.execute("ROLLBACK TO item")
            db.execute("RELEASE item")
        del pending[mark:]
        if existing is not None and state is not None:
            existing.seq_no, existing.mapping = state
        elif op.index in created:  # created by this op alone
            created.pop(op.index)
            self.indices.pop(op.index, None)
        return result

    def _unexpected(self, op: WriteOp, exc: Exception) -> dict[str, Any]:
        log.warning("index [%s] doc [%s]: the write failed", op.index, op.id, exc_info=exc)
        return self._failed(op, MapperParsingError(f"failed to parse: the document could not be indexed "
                                                   f"({type(exc).__name__})"))

    def _failed(self, op: WriteOp, exc: OpenSearchError) -> dict[str, Any]:
        """The result item of an op that failed with ``exc``."""
        index = self.indices.get(op.index)
        err = item_error(exc)
        if index is not None and exc.error_type not in ("index_not_found_exception", "cluster_block_exception"):
            err.setdefault("index", op.index)
            err.setdefault("shard", "0")
            err.setdefault("index_uuid", index.uuid)
        return {"_index": op.index, "_id": op.id, "status": exc.status, "error": err}

    def _write_one(self, db: Any, op: WriteOp, pending: list[tuple[Index, str, ParsedDoc | None]],
                   created: dict[str, Index]) -> dict[str, Any]:
        action = op.action
        try:
            if op.error is not None:
                raise op.error
            index = self.indices.get(op.index)
            if index is None:
                if action == "delete" or (action == "update" and not (op.update or {}).get("doc_as_upsert")
                                          and "upsert" not in (op.update or {})):
                    raise IndexNotFound(op.index)
                validate_index_name(op.index)
                index = self._create(db, op.index, {}, {})
                self.indices[op.index] = index
                created[op.index] = index
            if op.id is not None:
                if not isinstance(op.id, str):
                    op.id = str(op.id)
                if len(op.id.encode()) > 512:
                    raise ActionValidation(f"Validation Failed: 1: id [{op.id}] is too long, must be no longer "
                                           f"than 512 bytes but was: {len(op.id.encode())};")
                if not op.id:
                    raise ActionValidation("Validation Failed: 1: if _id is specified it must not be empty;")
            row = None
            if op.id is not None:
                # only an update reads the stored source: an index or create of a document that exists (a
                # re-ingest) would read, and never use, a whole stored document and its vectors
                columns = "version, source, seq_no" if action == "update" else "version, NULL, seq_no"
                row = db.execute(f"SELECT {columns} FROM docs WHERE idx=? AND id=?", (index.name, op.id)).fetchone()
            if "if_seq_no" in op.extra:
                want = _int_param(op.extra["if_seq_no"], "if_seq_no")
                term = _int_param(op.extra.get("if_primary_term", 1), "if_primary_term")
                if row is None or row[2] != want or term != 1:
                    current = (f"current document has seqNo [{row[2]}] and primary term [1]" if row is not None
                               else "but no document was found")
                    raise VersionConflict(f"[{op.id}]: version conflict, required seqNo [{want}], primary term "
                                          f"[{term}]. {current}")
            if action in ("index", "create"):
                return self._put(db, index, op, row, pending)
            if action == "update":
                return self._update(db, index, op, row, pending)
            if action == "delete":
                if op.id is None:
                    raise ActionValidation("Validation Failed: 1: id is missing;")
                index.seq_no += 1
                if row is None:
                    return self._result(index, op.id, 1, "not_found", 404)
                db.execute("DELETE FROM docs WHERE idx=? AND id=?", (index.name, op.id))
                pending.append((index, op.id, None))
                return self._result(index, op.id, row[0] + 1, "deleted", 200)
            raise IllegalArgument(f"Malformed action/metadata line: unknown action [{action}], expected one of "
                                  f"[create, delete, index, update]")
        except OpenSearchError as exc:
            return self._failed(op, exc)

    def _parse(self, index: Index, source: Any, doc_id: str) -> ParsedDoc:
        if not isinstance(source, dict):
            raise MapperParsingError("failed to parse, document is empty" if not source else
                                     f"failed to parse: the document must be a JSON object, got [{source}]")
        parsed = index.mapping.parse(source, doc_id)
        if parsed.dynamic_update:
            index.mapping = index.mapping.merged(parsed.dynamic_update)
        return parsed

    def _put(self, db: Any, index: Index, op: WriteOp, row: Any,
             pending: list[tuple[Index, str, ParsedDoc | None]]) -> dict[str, Any]:
        doc_id = op.id if op.id is not None else new_id()
        if op.action == "create" and row is not None:
            raise VersionConflict(f"[{doc_id}]: version conflict, document already exists (current version "
                                  f"[{row[0]}])")
        parsed = self._parse(index, op.source, doc_id)
        index.seq_no += 1
        version = 1 if row is None else row[0] + 1
        result = self._result(index, doc_id, version, "created" if row is None else "updated",
                              201 if row is None else 200)
        # the op's only SQL write, and its last step (see _write_isolated: no savepoint needed around it)
        db.execute("INSERT OR REPLACE INTO docs (idx, id, version, seq_no, source) VALUES (?,?,?,?,?)",
                   (index.name, doc_id, version, index.seq_no, op.raw if op.raw is not None else dumps(op.source)))
        pending.append((index, doc_id, parsed))
        return result

    def _update(self, db: Any, index: Index, op: WriteOp, row: Any,
                pending: list[tuple[Index, str, ParsedDoc | None]]) -> dict[str, Any]:
        body = op.update or {}
        if op.id is None:
            raise ActionValidation("Validation Failed: 1: id is missing;")
        if "script" in body:
            raise IllegalArgument("[update] scripts are not supported by this data node: send a partial [doc]")
        unknown = set(body) - {"doc", "doc_as_upsert", "upsert", "detect_noop", "_source", "scripted_upsert"}
        if unknown:
            raise ParsingError(f"[UpdateRequest] unknown field [{sorted(unknown)[0]}]")
        if "doc" not in body and "upsert" not in body:
            raise ActionValidation("Validation Failed: 1: script or doc is missing;")
        for key in ("doc", "upsert"):
            if key in body and not isinstance(body[key], dict):
                raise ParsingError(f"[UpdateRequest] failed to parse field [{key}]: expected an object, got "
                                   f"[{body[key]}]")
        if row is None:
            if body.get("doc_as_upsert"):
                source = body.get("doc") or {}
            elif "upsert" in body:
                source = body["upsert"]
            else:
                raise DocumentMissing(f"[{op.id}]: document missing")
            put = WriteOp("index", index.name, op.id, source=source)
            return self._put(db, index, put, None, pending)
        current = load_stored(row[1])
        merged = _deep_merge(copy.deepcopy(current), body.get("doc") or {})
        if merged == current and body.get("detect_noop", True):
            seq = db.execute("SELECT seq_no FROM docs WHERE idx=? AND id=?", (index.name, op.id)).fetchone()[0]
            out = self._result(index, op.id, row[0], "noop", 200, seq_no=seq)
            out["_shards"] = {"total": 0, "successful": 0, "failed": 0}
            return out
        put = WriteOp("index", index.name, op.id, source=merged)
        return self._put(db, index, put, row, pending)

    def _result(self, index: Index, doc_id: str, version: int, result: str, status: int,
                seq_no: int | None = None) -> dict[str, Any]:
        return {"_index": index.name, "_id": doc_id, "_version": version, "result": result,
                "_shards": index.shards_header(), "_seq_no": index.seq_no if seq_no is None else seq_no,
                "_primary_term": 1, "status": status}

    # --- reads ----------------------------------------------------------------------------
    def get(self, index_name: str, doc_id: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        index = self.index(index_name)
        params = params or {}
        found = self.storage.sources(index.name, [doc_id]).get(doc_id)
        if found is None:
            return {"_index": index.name, "_id": doc_id, "found": False}
        version, seq_no, source = found
        out: dict[str, Any] = {"_index": index.name, "_id": doc_id, "_version": version, "_seq_no": seq_no,
                               "_primary_term": 1, "found": True}
        fetch, inc, exc = parse_source_param(params.get("_source"), params.get("_source_includes"),
                                             params.get("_source_excludes"))
        if fetch:
            out["_source"] = filter_source(source, inc, exc)
        return out

    def mget(self, default_index: str | None, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        if not isinstance(body, dict) or ("docs" not in body and "ids" not in body):
            raise ActionValidation("Validation Failed: 1: no documents to get;")
        if not isinstance(body.get("docs", []), list) or not isinstance(body.get("ids", []), list):
            raise ActionValidation("Validation Failed: 1: [docs] and [ids] must be arrays;")
        specs = body.get("docs") or [{"_id": i} for i in body.get("ids", [])]
        if not all(isinstance(spec, dict) for spec in specs):
            raise ActionValidation("Validation Failed: 1: each of [docs] must be an object with an [_id];")
        docs = []
        for spec in specs:
            name = spec.get("_index", default_index)
            doc_id = str(spec.get("_id"))
            if name is not None and not isinstance(name, str):
                raise ActionValidation(f"Validation Failed: 1: [_index] of each of [docs] must be a string, got "
                                       f"[{name}];")
            if isinstance(spec.get("_id"), (dict, list)):
                raise ActionValidation(f"Validation Failed: 1: [_id] of each of [docs] must be a string, got "
                                       f"[{spec['_id']}];")
            if name is None:
                docs.append({"_index": None, "_id": doc_id, "error": item_error(
                    ActionValidation("Validation Failed: 1: index is missing for doc 0;"))})
                continue
            try:
                sub: dict[str, Any] = dict(params)
                if "_source" in spec:
                    sub["_source"] = spec["_source"] if not isinstance(spec["_source"], (list, dict)) else None
                got = self.get(name, doc_id, sub)
                if got.get("found") and isinstance(spec.get("_source"), (list, dict)):
                    _, inc, exc = parse_source_param(spec["_source"])
                    got["_source"] = filter_source(got["_source"], inc, exc)
                docs.append(got)
            except OpenSearchError as exc:
                docs.append({"_index": name, "_id": doc_id, "error": {**item_error(exc), "root_cause": [
                    {"type": exc.error_type, "reason": exc.reason}]}})
        return {"docs": docs}

    def lookup(self, index_name: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stored sources by id (what ``skip_existing`` compares against); {} for a missing index."""
        if index_name not in self.indices:
            return {}
        return {doc_id: src for doc_id, (_, _, src) in self.storage.sources(index_name, ids).items()}

    # --- search ---------------------------------------------------------------------------
    def count(self, expression: str | None, body: dict[str, Any] | None) -> dict[str, Any]:
        body = body or {}
        query = body.get("query", {"match_all": {}})
        total = 0
        targets = self.resolve(expression)
        for index in targets:
            found = self._run_sparse(index, query)
            total += int(found[0].size) if found is not None else int(self._run_query(index, query)[0].sum())
        n = len(targets)
        return {"count": total, "_shards": {"total": n, "successful": n, "skipped": 0, "failed": 0}}

    def _run_query(self, index: Index, query: Any, inner: dict[str, Any] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        try:
            with index.lock:
                executor = Executor(index)
                result = executor.run(query)
                if inner is not None and executor.inner_hits:
                    paths = {path for path, _, _, _ in executor.inner_hits.values()}
                    inner[index.name] = (executor.inner_hits, {p: {k: list(v) for k, v in s.children.items()}
                                                               for p, s in index.nested.items() if p in paths})
                return result
        except IllegalArgument as exc:  # parsed, but failed on the shard: reported as a cluster does
            raise SearchPhaseError(index.name, index.uuid, exc) from exc

    def _run_sparse(self, index: Index, query: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """(slots, scores) of a query of match / term / rank_feature clauses (alone or as a bool's should
        clauses), from their postings alone; None for any other query (see ``Executor.sparse_hits``)."""
        try:
            with index.lock:
                return Executor(index).sparse_hits(query)
        except IllegalArgument as exc:  # as _run_query
            raise SearchPhaseError(index.name, index.uuid, exc) from exc

    def _run_top_level_knn(self, index: Index, query: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """(slots, scores) of a query that is one root-level knn clause, without arrays over every document; None
        for any other query (see ``Executor.top_level_knn``)."""
        if not isinstance(query, dict) or "knn" not in query:
            return None
        try:
            with index.lock:
                return Executor(index).top_level_knn(query)
        except IllegalArgument as exc:  # as _run_query
            raise SearchPhaseError(index.name, index.uuid, exc) from exc

    def matching_ids(self, index_name: str, query: Any) -> list[str]:
        index = self.index(index_name)
        mask, _ = self._run_query(index, query)
        return [index.slot_id[slot] for slot in np.flatnonzero(mask).tolist()]

    def search(self, expression: str | None, body: dict[str, Any] | None,
               params: dict[str, str] | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        request = parse_search(body, params or {})
        targets = self.resolve(expression)
        window = min((index.max_result_window for index in targets), default=MAX_RESULT_WINDOW)
        if request.size + request.start > window:
            raise IllegalArgument(f"Result window is too large, from + size must be less than or equal to: "
                                  f"[{window}] but was [{request.size + request.start}]. See the scroll api for a "
                                  f"more efficient way to request large data sets. This limit can be set by changing "
                                  f"the [index.max_result_window] index level setting.")
        matches = self._execute(targets, request)
        hits_body = {**_hits_header(request, matches), "hits": self._render_hits(targets, request, matches)}
        n = len(targets)
        return {"took": int((time.perf_counter() - started) * 1000), "timed_out": False,
                "_shards": {"total": n, "successful": n, "skipped": 0, "failed": 0}, "hits": hits_body}

    def _execute(self, targets: list[Index], request: SearchRequest) -> Matches:
        """Every matching (index, slot, score) of the targets, above ``min_score``, and the hit order."""
        inner_hits: dict[str, Any] = {}
        per_index: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for n, index in enumerate(targets):
            # the hot paths of neural search: cost by k (knn) or by the postings read (sparse), not by the index
            found = self._run_top_level_knn(index, request.query) or self._run_sparse(index, request.query)
            if found is not None:
                slots, sc = found[0], found[1].astype(np.float32)
            else:
                mask, scores = self._run_query(index, request.query, inner_hits)
                slots = np.flatnonzero(mask)
                sc = scores[slots].astype(np.float32)
            if request.min_score is not None:
                keep = sc >= np.float32(request.min_score)
                slots, sc = slots[keep], sc[keep]
            per_index.append((np.full(slots.size, n), slots, sc))
        if len(per_index) == 1:
            all_idx, all_slot, all_score = per_index[0]
        else:
            all_idx = np.concatenate([p[0] for p in per_index]) if per_index else np.empty(0, dtype=np.int64)
            all_slot = np.concatenate([p[1] for p in per_index]) if per_index else np.empty(0, dtype=np.int64)
            all_score = np.concatenate([p[2] for p in per_index]) if per_index else np.empty(0, dtype=np.float32)
        sort_values: list[list[Any]] | None = None
        if request.sort is None:
            order = _score_order(all_idx, all_slot, all_score, request.start + request.size)
        else:
            order, sort_values = sort_hits(request.sort, targets, all_idx, all_slot, all_score)
        return Matches(all_idx, all_slot, all_score, order, sort_values, inner_hits)

    def _render_hits(self, targets: list[Index], request: SearchRequest, matches: Matches) -> list[dict[str, Any]]:
        """The page's hits, with what the request asked to see of each (source, version, sort values, ...)."""
        page = matches.order[request.start:request.start + request.size].tolist()
        inner_hits = matches.inner_hits
        fetch, inc, exc = request.fetch, request.includes, request.excludes
        by_index: dict[int, list[str]] = {}
        for i in page:
            n = int(matches.idx[i])
            by_index.setdefault(n, []).append(targets[n].slot_id[int(matches.slot[i])])
        need_rows = fetch or request.with_version or request.with_seq or bool(inner_hits)
        prefiltered = fetch and bool(inc or exc) and not inner_hits
        stored = {n: self.storage.sources(targets[n].name, ids,
                                          self._source_decoder(targets[n], fetch, inc, exc, bool(inner_hits)))
                  if need_rows else {} for n, ids in by_index.items()}
        hits = []
        for i in page:
            n, slot = int(matches.idx[i]), int(matches.slot[i])
            index = targets[n]
            doc_id = index.slot_id[slot]
            hit: dict[str, Any] = {"_index": index.name, "_id": doc_id,
                                   "_score": float(matches.score[i]) if request.scored else None}
            row = stored[n].get(doc_id)
            if row is not None:
                if request.with_version:
                    hit["_version"] = row[0]
                if request.with_seq:
                    hit["_seq_no"], hit["_primary_term"] = row[1], 1
                if fetch:
                    hit["_source"] = row[2] if prefiltered else filter_source(row[2], inc, exc)
            if matches.sort_values is not None:
                hit["sort"] = matches.sort_values[i]
            if index.name in inner_hits and row is not None:
                hit["inner_hits"] = inner_hits_of(index, inner_hits[index.name], slot, doc_id, row[2])
            hits.append(hit)
        return hits

    @staticmethod
    def _source_decoder(index: Index, fetch: bool, inc: list[str], exc: list[str], whole: bool
                        ) -> Callable[[str], Any] | None:
        """How a search reads its hits' stored sources: not at all (no ``_source`` asked), in full (unfiltered, or
        inner hits need the whole document), or filtered while decoding, skipping the vectors the filter drops."""
        if not fetch and not whole:
            return None
        if whole or not (inc or exc):
            return load_stored
        vectors = [path for path, spec in index.mapping.fields.items() if spec.type == "knn_vector"]
        return SourceDecoder(inc, exc, droppable_vectors(vectors, inc, exc)).decode

    # --- pipelines ------------------------------------------------------------------------
    def put_pipeline(self, kind: str, pipeline_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self.storage.put_pipeline(kind, pipeline_id, body)
        self.pipelines[kind][pipeline_id] = body
        return {"acknowledged": True}

    def get_pipeline(self, kind: str, pipeline_id: str | None) -> dict[str, Any]:
        if not pipeline_id or pipeline_id in ("*", "_all"):
            return dict(self.pipelines[kind])
        out = {pid: body for pid, body in self.pipelines[kind].items()
               if any(fnmatch.fnmatchcase(pid, p) for p in pipeline_id.split(","))}
        if not out:
            raise ResourceNotFound(f"pipeline [{pipeline_id}] is missing" if kind == "ingest" else
                                   f"Pipeline {pipeline_id} not found")
        return out

    def delete_pipeline(self, kind: str, pipeline_id: str) -> dict[str, Any]:
        if pipeline_id not in self.pipelines[kind]:
            raise ResourceNotFound(f"pipeline [{pipeline_id}] is missing")
        self.storage.delete_pipeline(kind, pipeline_id)
        del self.pipelines[kind][pipeline_id]
        return {"acknowledged": True}


SEARCH_KEYS = {"query", "size", "from", "_source", "track_total_hits", "min_score", "version", "seq_no_primary_term",
               "explain", "timeout", "ext", "sort", "track_scores", "stored_fields", "search_pipeline", "profile"}
UNSUPPORTED_SEARCH_KEYS = {"aggs", "aggregations", "suggest", "highlight", "collapse", "search_after", "rescore"}


@dataclass
class SearchRequest:
    """A ``_search`` body and its URL parameters, validated."""

    query: Any
    size: int
    start: int
    sort: SortSpec | None
    min_score: float | None
    track_total_hits: bool | int
    fetch: bool
    includes: list[str]
    excludes: list[str]
    with_version: bool
    with_seq: bool
    scored: bool  # hits carry their score (score order, a _score sort, or track_scores)


@dataclass
class Matches:
    """Every hit of a search over its target indices: parallel arrays, and the order they are shown in."""

    idx: np.ndarray     # position of the hit's index among the targets
    slot: np.ndarray
    score: np.ndarray   # float32
    order: np.ndarray
    sort_values: list[list[Any]] | None
    inner_hits: dict[str, Any]


def parse_search(body: dict[str, Any] | None, params: dict[str, str]) -> SearchRequest:
    body = body or {}
    unknown = set(body) - SEARCH_KEYS
    if unknown & UNSUPPORTED_SEARCH_KEYS:
        raise IllegalArgument(f"[{sorted(unknown)[0]}] is not supported by this data node: it answers queries, "
                              f"paging, _source filtering and total hits")
    if unknown:
        raise ParsingError(f"Unknown key for a START_OBJECT in [{sorted(unknown)[0]}].")
    size = _int_param(params.get("size", body.get("size", 10)), "size")
    start = _int_param(params.get("from", body.get("from", 0)), "from")
    for name, value in (("size", size), ("from", start)):
        if value < 0:
            raise IllegalArgument(f"[{name}] parameter cannot be negative, found [{value}]")
        if value > 2**31 - 1:  # a Java int in OpenSearch
            raise IllegalArgument(f"Failed to parse int parameter [{name}] with value [{value}]")
    sort = parse_sort(body.get("sort"), params.get("sort"))
    min_score = _float_param(body["min_score"], "min_score") if body.get("min_score") is not None else None
    tth = _track_total_hits(params.get("track_total_hits", body.get("track_total_hits", DEFAULT_TRACK_TOTAL_HITS)))
    if not isinstance(body.get("_source", True), (bool, str, list, dict)):
        raise ParsingError(f"[_source] must be a boolean, a string, an array or an object, got [{body['_source']}]")
    fetch, inc, exc = parse_source_param(params.get("_source", body.get("_source")),
                                         params.get("_source_includes"), params.get("_source_excludes"))
    scored = sort is None or any(fld == "_score" for fld, _, _ in sort) or bool(body.get("track_scores"))
    return SearchRequest(
        query=body.get("query", {"match_all": {}}), size=size, start=start, sort=sort, min_score=min_score,
        track_total_hits=tth, fetch=fetch, includes=inc, excludes=exc,
        with_version=bool(body.get("version")) or str(params.get("version", "")).lower() == "true",
        with_seq=bool(body.get("seq_no_primary_term")), scored=scored)


def _track_total_hits(value: Any) -> bool | int:
    if isinstance(value, str):
        lowered = value.lower()
        return True if lowered == "true" else False if lowered == "false" else _int_param(value, "track_total_hits")
    if not isinstance(value, (bool, int)):
        raise IllegalArgument(f"[track_total_hits] must be a boolean or an integer, got [{value}]")
    return value


def _score_order(idx: np.ndarray, slot: np.ndarray, score: np.ndarray, need: int) -> np.ndarray:
    """The positions of the ``need`` best hits (all of them when fewer) by score descending, ties by index then
    slot (doc order): a partition first, so only the hits scoring at least the ``need``-th best score are sorted
    (every one tied with it included, so the cut is exact)."""
    negative = -score.astype(np.float64)
    if 0 < need < negative.size:
        bound = np.partition(negative, need - 1)[need - 1]
        candidates = np.flatnonzero(negative <= bound)
        return candidates[np.lexsort((slot[candidates], idx[candidates], negative[candidates]))][:need]
    if need == 0:  # no page (and no max_score)
        return np.empty(0, dtype=np.int64)
    return np.lexsort((slot, idx, negative))


def _hits_header(request: SearchRequest, matches: Matches) -> dict[str, Any]:
    """``hits.total`` (as ``track_total_hits`` asks) and ``hits.max_score``."""
    out: dict[str, Any] = {}
    total = int(matches.score.size)
    tth = request.track_total_hits
    if tth is True:
        out["total"] = {"value": total, "relation": "eq"}
    elif tth is not False:
        limit = int(tth)
        out["total"] = {"value": total, "relation": "eq"} if total <= limit else {"value": limit, "relation": "gte"}
    if total and request.scored and request.size > 0:  # score order puts the best first
        out["max_score"] = float(matches.score[matches.order[0]] if request.sort is None else matches.score.max())
    else:
        out["max_score"] = None
    return out


def _float_param(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise IllegalArgument(f"[{name}] must be a number, got [{value}]") from None


def _int_param(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise IllegalArgument(f"Failed to parse int parameter [{name}] with value [{value}]") from None


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base
