"""SQLite, the data node's source of truth: indices, documents and pipelines.

WAL journal with ``synchronous=FULL``: a commit returns only after the WAL is fsynced, so every
write the node has acknowledged survives ``kill -9`` and power loss. One connection per thread.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opensearch_contract.body import loads, scrub_surrogates

_SCHEMA = """
CREATE TABLE IF NOT EXISTS indices (
    name TEXT PRIMARY KEY, uuid TEXT NOT NULL, settings TEXT NOT NULL, mappings TEXT NOT NULL,
    created_ms INTEGER NOT NULL, seq_no INTEGER NOT NULL DEFAULT -1);
CREATE TABLE IF NOT EXISTS docs (
    idx TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, seq_no INTEGER NOT NULL,
    source TEXT NOT NULL, PRIMARY KEY (idx, id));
CREATE INDEX IF NOT EXISTS docs_by_seq ON docs (idx, seq_no);
CREATE TABLE IF NOT EXISTS pipelines (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (kind, id));
"""


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def load_stored(raw: str) -> Any:
    """A stored JSON text, decoded. Documents are checked before they are stored, but a data dir written by an older
    version may hold a lone surrogate escape (``"\\ud800"``): such strings read with U+FFFD in its place, so the
    document stays readable and writable instead of failing every request that touches it."""
    value = loads(raw)
    if _SURROGATE_ESCAPE.search(raw):
        value = scrub_surrogates(value)
    return value


SCHEMA_VERSION = 1


class DataDirInUse(RuntimeError):
    pass


class DiskFull(RuntimeError):
    """A write failed for want of disk space; the transaction was rolled back, nothing of it is stored."""


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


class Storage:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        # one data node per data dir: a second one would serve a stale in-memory view of the same SQLite file
        self._lock_file = open(data_dir / "datanode.lock", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip() or "another process"
            self._lock_file.close()
            raise DataDirInUse(f"data dir [{data_dir}] is in use by another data node ({holder})") from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"pid {os.getpid()}")
        self._lock_file.flush()
        self.path = data_dir / "datanode.sqlite3"
        self._local = threading.local()
        self.write_lock = threading.RLock()
        with self.write_lock:
            db = self.conn()
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"data dir [{data_dir}] was written by a newer data node (schema {version}, "
                                   f"this one reads {SCHEMA_VERSION})")
            if version < SCHEMA_VERSION:  # a new data dir (a write, so an fsync: not paid at every start)
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def conn(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable write (committed and fsynced on exit, rolled back on error)."""
        with self.write_lock:
            db = self.conn()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:  # SQLite may have rolled back already (e.g. after SQLITE_FULL)
                        db.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as exc:
                if is_disk_full(exc):
                    raise DiskFull(str(exc)) from exc
                raise

    # --- indices ---------------------------------------------------------------------------
    def indices(self) -> list[dict[str, Any]]:
        rows = self.conn().execute("SELECT name, uuid, settings, mappings, created_ms, seq_no FROM indices")
        return [{"name": r[0], "uuid": r[1], "settings": json.loads(r[2]), "mappings": json.loads(r[3]),
                 "created_ms": r[4], "seq_no": r[5]} for r in rows]

    def generation(self, index: str) -> tuple[int, int]:
        """(seq_no, document count) of ``index`` as committed: any committed document write changes its seq_no."""
        db = self.conn()
        row = db.execute("SELECT seq_no FROM indices WHERE name=?", (index,)).fetchone()
        count = db.execute("SELECT COUNT(*) FROM docs WHERE idx=?", (index,)).fetchone()[0]
        return (row[0] if row else -1), count

    def docs(self, index: str, decode: Callable[[str], Any] = load_stored) -> Iterator[tuple[str, Any]]:
        """(id, decoded source) of every document of ``index``, in write order."""
        rows = self.conn().execute("SELECT id, source FROM docs WHERE idx=? ORDER BY seq_no", (index,))
        for doc_id, source in rows:
            yield doc_id, decode(source)

    def sources(self, index: str, ids: Iterable[str], decode: Callable[[str], Any] | None = load_stored
                ) -> dict[str, tuple[int, int, Any]]:
        """id -> (version, seq_no, decoded source) of the stored ``ids``; ``decode=None`` skips the sources
        (None in their place) when only versions are needed."""
        ids = list(ids)
        out: dict[str, tuple[int, int, Any]] = {}
        db = self.conn()
        columns = "id, version, seq_no" + (", source" if decode is not None else "")
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in db.execute(f"SELECT {columns} FROM docs WHERE idx=? AND id IN ({marks})", (index, *chunk)):
                out[row[0]] = (row[1], row[2], decode(row[3]) if decode is not None else None)
        return out

    # --- pipelines -------------------------------------------------------------------------
    def pipelines(self, kind: str) -> dict[str, dict[str, Any]]:
        rows = self.conn().execute("SELECT id, body FROM pipelines WHERE kind=?", (kind,))
        return {r[0]: json.loads(r[1]) for r in rows}

    def put_pipeline(self, kind: str, pipeline_id: str, body: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO pipelines (kind, id, body) VALUES (?, ?, ?)",
                       (kind, pipeline_id, dumps(body)))

    def delete_pipeline(self, kind: str, pipeline_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM pipelines WHERE kind=? AND id=?", (kind, pipeline_id))

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
        if not self._lock_file.closed:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
