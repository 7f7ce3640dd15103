"""One index in memory: its mapping and settings, and the field indexes of its root documents and
of each nested path. Documents themselves live in SQLite (see ``storage``).

An index opens in steps, each on first use, so a request pays for what it touches (see ``segment``):
its metadata is read when the data node starts; its slots (document ids, nested objects) and every field (vector
graphs and postings, mapped from the segment's files) when a request first reaches it.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

from opensearch_contract.settings import read_index_bool, read_index_int

from . import analysis
from .fields import FeatureField, Grow, TermField, ValueField, VectorField
from .mapping import Entry, Mapping, ParsedDoc


class Loader(Protocol):
    """Where an index's slots and fields come from when it is first used (``segment.SegmentLoader``)."""

    def open(self, index: Index) -> None:
        """Give ``index`` its slots and every field (``Index.install``)."""

    def count(self, index: Index) -> int:
        """How many documents the index holds, without opening it."""


POSITION_INCREMENT_GAP = 100  # OpenSearch's default between the values of a text field


def positions(analyzer: analysis.Analyzer, texts: list[str]) -> tuple[list[str], list[int]]:
    """The terms of a text field's values and their positions: a removed stop word leaves a gap, and
    ``POSITION_INCREMENT_GAP`` positions separate two values, so a phrase never spans two values."""
    terms: list[str] = []
    where: list[int] = []
    base = 0
    for text in texts:
        kept, at, span = analyzer.index_terms(text)
        terms.extend(kept)
        where.extend(at if not base else [base + p for p in at])
        base += span + POSITION_INCREMENT_GAP
    return terms, where


class Scope:
    """The root documents of an index, or every object of one nested path (each with a parent)."""

    def __init__(self, index: Index, nested_path: str | None) -> None:
        self.index = index
        self.nested_path = nested_path
        self.alive = Grow(np.bool_, fill=False)
        self.parent = Grow(np.int64, fill=-1)
        self.terms: dict[str, TermField] = {}
        self.values: dict[str, ValueField] = {}
        self.vectors: dict[str, VectorField] = {}
        self.features: dict[str, FeatureField] = {}
        self.children: dict[int, list[int]] = {}

    @property
    def size(self) -> int:
        return self.alive.n

    def add_many(self, entries: list[Entry], parents: list[int]) -> list[int]:
        """Give each entry a new slot (``parents``: each one's parent slot, -1 at the root) and index its fields,
        each field in one pass over all the entries."""
        slots = []
        for parent in parents:
            slot = self.alive.append(True)
            self.parent.append(parent)
            if parent >= 0:
                self.children.setdefault(parent, []).append(slot)
            slots.append(slot)
        self.index_fields(slots, entries)
        fields = self.index.mapping.fields
        for slot, entry in zip(slots, entries):
            for path, vec in entry.vectors.items():
                spec = fields[path].vector
                assert spec is not None
                if path not in self.vectors:
                    self.vectors[path] = VectorField(spec)
                self.vectors[path].add(slot, vec)
        return slots

    def index_fields(self, slots: list[int], entries: list[Entry]) -> None:
        """Index the text, keyword, value and feature values of ``entries`` at ``slots`` (not their vectors)."""
        fields = self.index.mapping.fields
        texts: dict[str, tuple[list[int], list[list[str]], list[list[int]]]] = {}
        keywords: dict[str, tuple[list[int], list[list[str]]]] = {}
        features: dict[str, tuple[list[int], list[dict[str, float]]]] = {}
        for slot, entry in zip(slots, entries):
            for path, values in entry.texts.items():
                tokens, where = positions(analysis.get(fields[path].analyzer), values)
                at, token_lists, position_lists = texts.setdefault(path, ([], [], []))
                at.append(slot)
                token_lists.append(tokens)
                position_lists.append(where)
            for path, vals in entry.values.items():
                if fields[path].type == "keyword":
                    at, value_lists = keywords.setdefault(path, ([], []))
                    at.append(slot)
                    value_lists.append([str(v) for v in vals])
                else:
                    self.values.setdefault(path, ValueField()).add(slot, vals)
            for path, feats in entry.features.items():
                at, maps = features.setdefault(path, ([], []))
                at.append(slot)
                maps.append(feats)
        for path, (at, token_lists, position_lists) in texts.items():
            self.terms.setdefault(path, TermField(norms=True)).add_many(at, token_lists, position_lists)
        for path, (at, value_lists) in keywords.items():
            self.terms.setdefault(path, TermField(norms=False)).add_many(at, value_lists)
        for path, (at, maps) in features.items():
            self.features.setdefault(path, FeatureField()).add_many(at, maps)

    def remove(self, slot: int) -> None:
        self.alive.data[slot] = False
        for group in (self.terms, self.values, self.vectors, self.features):
            for fld in group.values():
                fld.remove(slot)

    def remove_children(self, parent: int) -> None:
        for slot in self.children.pop(parent, []):
            self.remove(slot)


class Index:
    def __init__(self, name: str, uuid: str, settings: dict[str, Any], mappings: dict[str, Any],
                 created_ms: int, seq_no: int = -1, loader: Loader | None = None) -> None:
        """A new, empty index; with a ``loader``, a stored one that opens on first use."""
        self.name = name
        self.uuid = uuid
        self.settings = settings          # flat "index.*" keys
        self.created_ms = created_ms
        self.seq_no = seq_no
        self.mapping = Mapping(mappings, knn_enabled=self.knn_enabled)
        self.lock = threading.RLock()
        self.loader = loader
        self._root: Scope | None = None
        self._nested: dict[str, Scope] = {}
        self._slot_id: list[str] = []
        self._id_slot: dict[str, int] = {}
        self._stored_count: int | None = None  # while not open: no write can change it (a write opens the index)
        if loader is None:
            self.install(Scope(self, None), {}, [])

    def install(self, root: Scope, nested: dict[str, Scope], slot_id: list[str]) -> None:
        """Open the index on these slots (all live) and their fields."""
        self._nested = nested
        self._slot_id = slot_id
        self._id_slot = dict(zip(slot_id, range(len(slot_id))))
        self._root = root

    @property
    def is_open(self) -> bool:
        return self._root is not None

    def ensure_open(self) -> None:
        if self._root is None:
            with self.lock:
                if self._root is None:
                    assert self.loader is not None
                    self.loader.open(self)

    @property
    def root(self) -> Scope:
        self.ensure_open()
        assert self._root is not None
        return self._root

    @property
    def nested(self) -> dict[str, Scope]:
        self.ensure_open()
        return self._nested

    @property
    def slot_id(self) -> list[str]:
        self.ensure_open()
        return self._slot_id

    @property
    def id_slot(self) -> dict[str, int]:
        self.ensure_open()
        return self._id_slot

    @property
    def knn_enabled(self) -> bool:
        return read_index_bool(self.settings, "index.knn")

    @property
    def replicas(self) -> int:
        return read_index_int(self.settings, "index.number_of_replicas")

    @property
    def shards(self) -> int:
        return read_index_int(self.settings, "index.number_of_shards")

    @property
    def max_result_window(self) -> int:
        return read_index_int(self.settings, "index.max_result_window")

    def shards_header(self) -> dict[str, int]:
        return {"total": self.replicas + 1, "successful": 1, "failed": 0}

    @property
    def doc_count(self) -> int:
        if self._root is None:
            assert self.loader is not None
            if self._stored_count is None:
                self._stored_count = self.loader.count(self)
            return self._stored_count
        return len(self._id_slot)

    def nested_scope(self, path: str) -> Scope:
        nested = self.nested
        if path not in nested:
            nested[path] = Scope(self, path)
        return nested[path]

    # --- memory updates (after the write is durable) ----------------------------------------
    def put(self, doc_id: str, parsed: ParsedDoc) -> None:
        """One document (``bench/datanode_postings.py`` builds its index this way); writes go through ``apply``."""
        self.apply([(doc_id, parsed)])

    def apply(self, writes: list[tuple[str, ParsedDoc | None]]) -> None:
        """Apply committed writes in order: (id, parsed document) puts it, replacing any document of that id;
        (id, None) removes it. Puts are indexed in batches, each field once per batch."""
        batch: dict[str, ParsedDoc] = {}
        for doc_id, parsed in writes:
            if doc_id in batch:  # written twice: the first one is indexed, then replaced
                self._put_many(batch)
                batch = {}
            self.drop(doc_id)
            if parsed is not None:
                batch[doc_id] = parsed
        self._put_many(batch)

    def _put_many(self, batch: dict[str, ParsedDoc]) -> None:
        if not batch:
            return
        slots = self.root.add_many([parsed.root for parsed in batch.values()], [-1] * len(batch))
        slot_id, id_slot = self.slot_id, self.id_slot
        nested: dict[str, tuple[list[Entry], list[int]]] = {}
        for (doc_id, parsed), slot in zip(batch.items(), slots):
            slot_id.append(doc_id)
            id_slot[doc_id] = slot
            for path, entries in parsed.nested.items():
                children, parents = nested.setdefault(path, ([], []))
                children.extend(entries)
                parents.extend([slot] * len(entries))
        for path, (children, parents) in nested.items():
            self.nested_scope(path).add_many(children, parents)

    def drop(self, doc_id: str) -> None:
        slot = self.id_slot.pop(doc_id, None)
        if slot is None:
            return
        self.root.remove(slot)
        for scope in self.nested.values():
            scope.remove_children(slot)

    def refresh(self) -> None:
        """Bring every HNSW graph up to date (what a refresh makes searchable); an index not yet open has nothing
        to bring up to date."""
        if self._root is None:
            return
        with self.lock:
            for scope in (self.root, *self.nested.values()):
                for fld in scope.vectors.values():
                    fld.refresh()
