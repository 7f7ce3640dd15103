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
import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from mlnode import system_search
from mlnode.system_search import StoredDoc

KINDS = ("model_groups", "models", "tasks")
INDEX_NAMES = {"model_groups": ".plugins-ml-model-group", "models": ".plugins-ml-model", "tasks": ".plugins-ml-task"}
# the fields ML Commons maps as ``nested`` in those indices (common/src/main/resources/index-mappings)
NESTED_PATHS = {"model_groups": frozenset({"owner"}), "models": frozenset({"user"}), "tasks": frozenset({"user"})}


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
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, ensure_ascii=False, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write (a full disk, a bad value) leaves the old document alone
        raise


def _remove_temp_files(folder: Path) -> int:
    """Delete the ``.tmp`` files this store writes (documents, chunks) that a crash left in ``folder``'s tree."""
    removed = 0
    for path in folder.rglob("*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class Store:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.meta_dir = self.data_dir / "meta"
        self.models_dir = self.data_dir / "models"
        self.chunks_dir = self.data_dir / "chunks"
        self.tmp_dir = self.data_dir / "tmp"
        self._docs: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self._versions: dict[tuple[str, str], int] = {}
        self._seq_nos: dict[tuple[str, str], int] = {}  # each document's last write or delete: its _seq_no
        self._seq_no = -1  # the last write's; OpenSearch numbers an index's first write 0
        self.cluster_settings: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    # ---- loading ------------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Read every document from disk (blocking: call from a worker thread)."""
        for directory in (self.meta_dir, self.models_dir, self.chunks_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)  # staging left by a crash
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        _remove_temp_files(self.meta_dir)  # half-written documents and chunks of a crash (never read as data)
        _remove_temp_files(self.chunks_dir)
        for kind in KINDS:
            folder = self.meta_dir / kind
            folder.mkdir(parents=True, exist_ok=True)
            for path in sorted(folder.glob("*.json")):
                doc = json.loads(path.read_text(encoding="utf-8"))
                self._docs[kind][path.stem] = doc
                self._versions[(kind, path.stem)] = 1
                self._seq_no += 1
                self._seq_nos[(kind, path.stem)] = self._seq_no
        settings_path = self.meta_dir / "cluster_settings.json"
        if settings_path.exists():
            self.cluster_settings = json.loads(settings_path.read_text(encoding="utf-8"))

    # ---- documents ----------------------------------------------------------------------------------------------

    def get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        doc = self._docs[kind].get(doc_id)
        return dict(doc) if doc is not None else None

    async def refresh_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        """The document as the store of record has it now: here the cache is that store (a shared registry,
        ``mlnode.registry.RegistryStore``, reads it again)."""
        return self.get(kind, doc_id)

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
        self._seq_nos[(kind, doc_id)] = self._seq_no
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
            self._seq_nos[(kind, doc_id)] = self._seq_no
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
            "_seq_no": self._seq_nos.get((kind, doc_id), self._seq_no),
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

    def search(self, kind: str, body: Any) -> dict[str, Any]:
        """``_search`` over one kind, as over its ML Commons system index (see ``mlnode.system_search``)."""
        docs = (
            StoredDoc(doc_id, doc, self.version(kind, doc_id), self._seq_nos[(kind, doc_id)])
            for doc_id, doc in self._docs[kind].items()
        )
        return system_search.search(INDEX_NAMES[kind], docs, body, NESTED_PATHS[kind])
