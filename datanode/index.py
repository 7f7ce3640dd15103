"""One index in memory: its mapping and settings, and the field indexes of its root documents and
of each nested path. Documents themselves live in SQLite (see ``storage``)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .analysis import analyze
from .fields import FeatureField, Grow, TermField, ValueField, VectorField
from .mapping import Entry, Mapping, ParsedDoc


class Scope:
    """The root documents of an index, or every object of one nested path (each with a parent)."""

    def __init__(self, index: "Index", nested_path: str | None) -> None:
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

    def add(self, entry: Entry, parent: int = -1) -> int:
        slot = self.alive.append(True)
        self.parent.append(parent)
        if parent >= 0:
            self.children.setdefault(parent, []).append(slot)
        fields = self.index.mapping.fields
        for path, texts in entry.texts.items():
            per_value = [analyze(text) for text in texts]
            tokens = [tok for value in per_value for tok in value]
            sequence: list[str | None] = []
            for value in per_value:  # a phrase never spans two values (position_increment_gap)
                if sequence:
                    sequence.append(None)
                sequence.extend(value)
            self.terms.setdefault(path, TermField(norms=True)).add(slot, tokens, sequence)
        for path, vals in entry.values.items():
            if fields[path].type == "keyword":
                self.terms.setdefault(path, TermField(norms=False)).add(slot, [str(v) for v in vals])
            else:
                self.values.setdefault(path, ValueField()).add(slot, vals)
        for path, vec in entry.vectors.items():
            spec = fields[path].vector
            assert spec is not None
            if path not in self.vectors:
                self.vectors[path] = VectorField(spec)
            self.vectors[path].add(slot, vec)
        for path, feats in entry.features.items():
            self.features.setdefault(path, FeatureField()).add(slot, feats)
        return slot

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
                 created_ms: int, seq_no: int = -1) -> None:
        self.name = name
        self.uuid = uuid
        self.settings = settings          # flat "index.*" keys
        self.created_ms = created_ms
        self.seq_no = seq_no
        self.mapping = Mapping(mappings, knn_enabled=self.knn_enabled)
        self.lock = threading.RLock()
        self.root = Scope(self, None)
        self.nested: dict[str, Scope] = {}
        self.slot_id: list[str] = []
        self.id_slot: dict[str, int] = {}

    @property
    def knn_enabled(self) -> bool:
        return str(self.settings.get("index.knn", "false")).lower() == "true"

    @property
    def replicas(self) -> int:
        return int(self.settings.get("index.number_of_replicas", 1))

    def shards_header(self) -> dict[str, int]:
        return {"total": self.replicas + 1, "successful": 1, "failed": 0}

    @property
    def doc_count(self) -> int:
        return len(self.id_slot)

    def nested_scope(self, path: str) -> Scope:
        if path not in self.nested:
            self.nested[path] = Scope(self, path)
        return self.nested[path]

    # --- memory updates (after the write is durable) ----------------------------------------
    def put(self, doc_id: str, parsed: ParsedDoc) -> None:
        self.drop(doc_id)
        slot = self.root.add(parsed.root)
        self.slot_id.append(doc_id)
        self.id_slot[doc_id] = slot
        for path, entries in parsed.nested.items():
            scope = self.nested_scope(path)
            for entry in entries:
                scope.add(entry, parent=slot)

    def drop(self, doc_id: str) -> None:
        slot = self.id_slot.pop(doc_id, None)
        if slot is None:
            return
        self.root.remove(slot)
        for scope in self.nested.values():
            scope.remove_children(slot)

    def refresh(self) -> None:
        """Bring every HNSW graph up to date (what a refresh makes searchable)."""
        with self.lock:
            for scope in (self.root, *self.nested.values()):
                for fld in scope.vectors.values():
                    fld.refresh()
