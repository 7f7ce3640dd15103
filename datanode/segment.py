"""An index's segment on disk: what opening the index needs besides SQLite, so that opening it reads its vector
graphs from files instead of re-reading and re-indexing every document.

``<data dir>/indices/<index uuid>/`` holds
- ``meta.json``: the format, the generation (the index's ``seq_no`` in SQLite when saved), its document count in
  SQLite, its mapping, its nested paths and its vector fields;
- ``ids.json``: the document id of each root slot (renumbered at save: live documents only, in write order);
- ``nested-<n>.npy``: the root slot of each object of nested path n (live objects only, in write order);
- per vector field n: ``vec-<n>.faiss`` (HNSW: the faiss graph, which holds the vectors) or ``vec-<n>.npy`` (exact
  search: the vectors), ``vec-<n>.owner.npy`` (each entry's slot, -1 once dead) and ``vec-<n>.live.npy``;
- per text, keyword or feature field n (``postings.Postings``, its parts merged, live slots only):
  ``post-<n>.terms.json`` (the term dictionary), ``post-<n>.ptr.npy``, ``.slots.npy``, ``.data.npy`` (frequencies,
  or decoded weights), for text fields ``.pos_ptr.npy`` and ``.positions.npy``; per slot, ``.norms.npy`` and
  ``.length.npy`` (text and keyword) or ``.has.npy`` (features);
- per numeric, date or boolean field n: ``val-<n>.owner.npy``, ``val-<n>.vals.npy`` and ``val-<n>.has.npy``.

SQLite stays the truth. A segment is used only when its generation and document count equal SQLite's and its
mapping equals the index's; anything else (a crash after a commit and before the next save, a damaged or missing
file) rebuilds the index from SQLite, and the next clean close saves it again. Segments are saved at a clean close,
for each index opened since the start whose segment is not current: written to a temporary directory, fsynced, then
renamed into place. Graphs are read with their vectors mapped from the file (``faiss.IO_FLAG_MMAP_IFC``), postings
and values mapped with ``np.load(mmap_mode="r")`` (the per-slot arrays, which removals write, are read into memory):
opening a current segment reads no document from SQLite. A segment of an older format is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from opensearch_contract.errors import OpenSearchError

from .fields import FeatureField, Grow, HNSWGraph, TermField, ValueField, VectorField
from .index import Index, Scope
from .mapping import ParsedDoc
from .postings import Postings
from .storage import Storage, dumps

log = logging.getLogger("neuralpipe.datanode")
FORMAT = 2  # 2: postings and values saved too
REBUILD_BATCH = 1000  # documents re-indexed together when a segment is rebuilt from SQLite


class SegmentLoader:
    """Opens the indices of one data dir from their segments (``index.Loader``), and saves them at close."""

    def __init__(self, storage: Storage, root: Path) -> None:
        self.storage = storage
        self.root = root
        self._current: dict[str, tuple[int, int, str]] = {}  # index uuid -> key of its segment on disk, if current

    def _key(self, index: Index) -> tuple[int, int, str]:
        generation, count = self.storage.generation(index.name)
        return generation, count, dumps(index.mapping.to_body())

    def open(self, index: Index) -> None:
        key = self._key(index)
        try:
            if load(self.root / index.uuid, index, key):
                self._current[index.uuid] = key
                return
        except Exception:  # noqa: BLE001  (a damaged segment only costs a rebuild)
            log.warning("index [%s]: ignoring its damaged segment, rebuilding it from SQLite", index.name,
                        exc_info=True)
        log.info("index [%s]: segment missing or stale, rebuilding it from SQLite", index.name)
        self._current.pop(index.uuid, None)
        index.install(Scope(index, None), {}, [])
        batch: list[tuple[str, ParsedDoc | None]] = []
        for doc_id, source in self.storage.docs(index.name):
            try:
                batch.append((doc_id, index.mapping.parse(source, doc_id)))
            except OpenSearchError as exc:  # stored before a mapping change; keep it, but unsearchable
                log.warning("index [%s] doc [%s] could not be re-indexed: %s", index.name, doc_id, exc)
            if len(batch) == REBUILD_BATCH:
                index.apply(batch)
                batch = []
        index.apply(batch)

    def count(self, index: Index) -> int:
        return self.storage.generation(index.name)[1]

    def save_open(self, indices: list[Index]) -> None:
        """At a clean close (writes stopped): save the segment of every open index whose segment is not current."""
        for index in indices:
            if not index.is_open:
                continue
            key = self._key(index)
            if self._current.get(index.uuid) == key:
                continue
            try:
                save(self.root, index, key)
                self._current[index.uuid] = key
            except Exception:  # noqa: BLE001  (only an accelerator: the next start rebuilds from SQLite)
                log.warning("could not save the segment of index [%s]", index.name, exc_info=True)

    def forget(self, uuids: set[str]) -> None:
        """Remove the segments of deleted indices (with what an interrupted save of theirs left)."""
        for path in self._dirs():
            if path.name.lstrip(".").split(".")[0] in uuids:
                self._current.pop(path.name, None)
                shutil.rmtree(path, ignore_errors=True)

    def keep_only(self, uuids: set[str]) -> None:
        """At start: remove every directory that is not the segment of an index (deleted ones, interrupted saves)."""
        for path in self._dirs():
            if path.name not in uuids:
                shutil.rmtree(path, ignore_errors=True)

    def _dirs(self) -> list[Path]:
        return list(self.root.iterdir()) if self.root.is_dir() else []


# --- saving ---------------------------------------------------------------------------------------------------------
def _renumber(alive: np.ndarray) -> np.ndarray:
    """New slot of each old slot: live slots numbered in order, dead ones -1."""
    out = np.full(alive.size + 1, -1, dtype=np.int64)  # out[-1] = -1 for owners that are -1 already
    live = np.flatnonzero(alive)
    out[live] = np.arange(live.size)
    return out


def save(root: Path, index: Index, key: tuple[int, int, str]) -> None:
    target = root / index.uuid
    tmp = root / f".{index.uuid}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with index.lock:
        index.refresh()
        renumbered: dict[str | None, np.ndarray] = {None: _renumber(index.root.alive.view())}
        ids = [index.slot_id[slot] for slot in np.flatnonzero(index.root.alive.view()).tolist()]
        (tmp / "ids.json").write_text(json.dumps(ids))
        nested_paths = sorted(index.nested)
        for n, path in enumerate(nested_paths):
            scope = index.nested[path]
            parents = renumbered[None][scope.parent.view()]
            alive = scope.alive.view() & (parents >= 0)
            renumbered[path] = _renumber(alive)
            np.save(tmp / f"nested-{n}.npy", parents[alive])
        fields: list[dict[str, Any]] = []
        postings: list[dict[str, Any]] = []
        for path_key, scope in [(None, index.root), *((p, index.nested[p]) for p in nested_paths)]:
            for path, field in scope.vectors.items():
                fields.append(_save_field(tmp, len(fields), path_key, path, field, renumbered[path_key]))
            for group in (scope.terms, scope.features, scope.values):
                for path, posted in group.items():
                    postings.append(_save_postings(tmp, len(postings), path_key, path, posted,
                                                   renumbered[path_key]))
    meta = {"format": FORMAT, "generation": key[0], "count": key[1], "mapping": json.loads(key[2]),
            "nested": nested_paths, "fields": fields, "postings": postings}
    (tmp / "meta.json").write_text(json.dumps(meta))
    _fsync_dir(tmp)
    old = root / f".{index.uuid}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)  # a crash from here to the next rename leaves no segment: a rebuild
    os.replace(tmp, target)
    _fsync(root)
    shutil.rmtree(old, ignore_errors=True)


def _save_field(tmp: Path, n: int, scope_path: str | None, path: str, field: VectorField,
                renumbered: np.ndarray) -> dict[str, Any]:
    owner = renumbered[field.owner.view()]
    live = field.live.view() & (owner >= 0)
    owner = np.where(live, owner, -1)
    graph = field.graph is not None
    if field.graph is not None:
        faiss.write_index(field.graph, str(tmp / f"vec-{n}.faiss"))
    else:
        np.save(tmp / f"vec-{n}.npy", field.vectors.view())
    np.save(tmp / f"vec-{n}.owner.npy", owner)
    np.save(tmp / f"vec-{n}.live.npy", live)
    return {"scope": scope_path, "path": path, "graph": graph, "entries": int(owner.size)}


def _per_slot(array: np.ndarray, renumbered: np.ndarray, fill: Any) -> np.ndarray:
    """A per-slot array renumbered: the values of the live slots, in order (``fill`` past the array's end)."""
    live = np.flatnonzero(renumbered[:-1] >= 0)
    out = np.full(live.size, fill, dtype=array.dtype)
    inside = live < array.shape[0]
    out[inside] = array[live[inside]]
    return out


def _new_slots(slots: np.ndarray, renumbered: np.ndarray, path: str) -> np.ndarray:
    new = renumbered[np.minimum(np.asarray(slots, dtype=np.int64), renumbered.size - 1)]
    if new.size and int(new.min()) < 0:
        raise ValueError(f"field [{path}]: a merged posting names a removed slot")
    return new.astype(np.int32)


def _save_postings(tmp: Path, n: int, scope_path: str | None, path: str,
                   field: TermField | FeatureField | ValueField, renumbered: np.ndarray) -> dict[str, Any]:
    """Save one field's postings (its parts, or its value tail, merged first) with live slots renumbered."""
    field.merge()
    stem = tmp / f"post-{n}"
    if isinstance(field, ValueField):
        if field.tail:
            raise ValueError(f"field [{path}]: values that numpy cannot hold")
        stem = tmp / f"val-{n}"
        np.save(f"{stem}.owner.npy", _new_slots(field.owner, renumbered, path))
        np.save(f"{stem}.vals.npy", np.asarray(field.vals))
        np.save(f"{stem}.has.npy", _per_slot(field.has, renumbered, False))
        return {"scope": scope_path, "path": path, "kind": "value"}
    base = field.base
    Path(f"{stem}.terms.json").write_text(json.dumps(base.terms))
    np.save(f"{stem}.ptr.npy", np.asarray(base.ptr))
    np.save(f"{stem}.slots.npy", _new_slots(base.slots, renumbered, path))
    np.save(f"{stem}.data.npy", np.asarray(base.data))
    if isinstance(field, FeatureField):
        np.save(f"{stem}.has.npy", _per_slot(field.has, renumbered, False))
        return {"scope": scope_path, "path": path, "kind": "feature"}
    if field.norms:
        assert base.pos_ptr is not None and base.positions is not None
        np.save(f"{stem}.pos_ptr.npy", np.asarray(base.pos_ptr))
        np.save(f"{stem}.positions.npy", np.asarray(base.positions))
    np.save(f"{stem}.norms.npy", _per_slot(field.norm_bytes, renumbered, 0))
    np.save(f"{stem}.length.npy", _per_slot(field.length, renumbered, -1))
    return {"scope": scope_path, "path": path, "kind": "text" if field.norms else "keyword"}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    for path in directory.iterdir():
        _fsync(path)
    _fsync(directory)


# --- loading --------------------------------------------------------------------------------------------------------
def load(target: Path, index: Index, key: tuple[int, int, str]) -> bool:
    """Open ``index`` on its segment; False when there is none, or it is not the current one."""
    meta_path = target / "meta.json"
    if not meta_path.exists():
        return False
    meta = json.loads(meta_path.read_text())
    if (meta.get("format"), meta.get("generation"), meta.get("count")) != (FORMAT, key[0], key[1]) \
            or dumps(meta.get("mapping")) != key[2]:
        return False
    ids = json.loads((target / "ids.json").read_text())
    n = len(ids)
    root = Scope(index, None)
    root.alive, root.parent = Grow.of(np.ones(n, dtype=np.bool_), fill=False), Grow.of(np.full(n, -1), fill=-1)
    nested: dict[str, Scope] = {}
    for k, path in enumerate(meta["nested"]):
        parents = np.load(target / f"nested-{k}.npy")
        if parents.size and not (0 <= parents.min() and parents.max() < n):
            raise ValueError(f"nested path [{path}]: parent slots out of range")
        scope = Scope(index, path)
        scope.alive, scope.parent = Grow.of(np.ones(parents.size, dtype=np.bool_), fill=False), Grow.of(parents, -1)
        for child, parent in enumerate(parents.tolist()):
            scope.children.setdefault(parent, []).append(child)
        nested[path] = scope
    for k, field_meta in enumerate(meta["fields"]):
        scope = root if field_meta["scope"] is None else nested[field_meta["scope"]]
        scope.vectors[field_meta["path"]] = _load_field(target, k, index, field_meta, scope.size)
    for k, field_meta in enumerate(meta.get("postings", [])):
        scope = root if field_meta["scope"] is None else nested[field_meta["scope"]]
        _load_postings(target, k, index, field_meta, scope)
    index.install(root, nested, ids)
    return True


def _load_field(target: Path, n: int, index: Index, meta: dict[str, Any], scope_size: int) -> VectorField:
    spec = index.mapping.fields[meta["path"]].vector
    if spec is None or (spec.method == "hnsw") != meta["graph"]:
        raise ValueError(f"field [{meta['path']}] is not saved as its mapping says")
    owner = np.load(target / f"vec-{n}.owner.npy")
    live = np.load(target / f"vec-{n}.live.npy")
    if owner.dtype != np.int64 or live.dtype != np.bool_:
        raise ValueError(f"field [{meta['path']}]: entry files of the wrong type")
    graph: HNSWGraph | None = None
    if meta["graph"]:
        loaded: HNSWGraph = faiss.read_index(str(target / f"vec-{n}.faiss"), faiss.IO_FLAG_MMAP_IFC)
        storage: HNSWGraph = faiss.downcast_index(loaded.storage)
        vectors = (faiss.rev_swig_ptr(storage.get_xb(), loaded.ntotal * loaded.d).reshape(loaded.ntotal, loaded.d)
                   if loaded.ntotal else np.empty((0, loaded.d), dtype=np.float32))
        graph = loaded
        vectors.flags.writeable = False  # mapped read-only: numpy must refuse a write, not crash
    else:
        vectors = np.load(target / f"vec-{n}.npy", mmap_mode="r")
    if not (owner.shape == live.shape == (meta["entries"],) and vectors.shape == (meta["entries"], spec.dimension)):
        raise ValueError(f"field [{meta['path']}]: files disagree on its entries")
    slots = owner[live]
    if slots.size and not (0 <= slots.min() and slots.max() < scope_size):
        raise ValueError(f"field [{meta['path']}]: entry slots out of range")
    seen = np.zeros(scope_size, dtype=np.bool_)
    seen[slots] = True
    if int(np.count_nonzero(seen)) != slots.size:
        raise ValueError(f"field [{meta['path']}]: two live entries for one slot")
    return VectorField.restored(spec, vectors, owner, live, graph)


def _load_postings(target: Path, n: int, index: Index, meta: dict[str, Any], scope: Scope) -> None:
    """Install one saved text, keyword, feature or value field in ``scope``, its arrays mapped from the files."""
    kind, path = meta["kind"], meta["path"]
    spec = index.mapping.fields.get(path)
    expected = {"text": ("text",), "keyword": ("keyword",), "feature": ("rank_features", "rank_feature")}
    if spec is None or spec.type not in expected.get(kind, (spec.type,)) or \
            (kind == "value" and spec.type in ("text", "keyword", "rank_features", "rank_feature", "knn_vector")):
        raise ValueError(f"field [{path}] is not saved as its mapping says")
    size = scope.size

    def read(name: str, dtype: Any, length: int | None = None) -> np.ndarray:
        array = np.load(target / f"{name}.npy", mmap_mode="r")
        if array.ndim != 1 or (dtype is not None and array.dtype != dtype) or \
                (length is not None and array.shape[0] != length):
            raise ValueError(f"field [{path}]: file {name}.npy of the wrong type or size")
        return array

    if kind == "value":
        owner, has = read(f"val-{n}.owner", np.int32), np.array(read(f"val-{n}.has", np.bool_, size))
        vals = read(f"val-{n}.vals", None, owner.shape[0])
        if owner.size and not (0 <= int(owner.min()) and int(owner.max()) < size and np.all(np.diff(owner) >= 0)):
            raise ValueError(f"field [{path}]: value slots out of range")
        scope.values[path] = ValueField.restored(owner, vals, has)
        return
    stem = f"post-{n}"
    terms = json.loads((target / f"{stem}.terms.json").read_text())
    if not isinstance(terms, list):
        raise ValueError(f"field [{path}]: no term list")
    data_type = np.float32 if kind == "feature" else np.int32
    positions = kind == "text"
    base = Postings(terms, read(f"{stem}.ptr", np.int64), read(f"{stem}.slots", np.int32),
                    read(f"{stem}.data", data_type),
                    read(f"{stem}.pos_ptr", np.int64) if positions else None,
                    read(f"{stem}.positions", np.int32) if positions else None)
    base.check(size)
    if kind == "feature":
        scope.features[path] = FeatureField.restored(base, np.array(read(f"{stem}.has", np.bool_, size)))
        return
    norms, length = read(f"{stem}.norms", np.uint8, size), read(f"{stem}.length", np.int32, size)
    scope.terms[path] = TermField.restored(positions, base, np.array(norms), np.array(length))
