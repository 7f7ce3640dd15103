"""In-memory per-field indexes of one scope (the root documents, or the objects of one nested path).

Slots are positions in the scope, assigned in write order; a removed slot stays dead. None of these
structures needs to be durable: SQLite holds the documents, and ``segment`` saves every field only to open
them faster, checked against SQLite. Text, keyword, value and feature fields are in ``postings``.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from opensearch_contract.knn import scores_from_raw

from .mapping import VectorSpec

# An HNSW graph as faiss hands it out (IndexHNSWFlat, or the Index read_index returns). faiss's bundled .pyi types
# read_index as a bare Index without the hnsw / storage attributes, so the graph is typed loosely here.
HNSWGraph = Any


class Grow:
    """A numpy array that grows along axis 0 by doubling."""

    def __init__(self, dtype: Any, width: int | None = None, fill: Any = 0) -> None:
        self.width = width
        self.fill = fill
        shape = (16, width) if width else (16,)
        self.data = np.full(shape, fill, dtype=dtype)
        self.n = 0

    @classmethod
    def of(cls, data: np.ndarray, fill: Any = 0) -> Grow:
        """A Grow holding ``data`` (which may be read-only, e.g. mapped from a file: it is copied before it grows)."""
        grow = cls(data.dtype, data.shape[1] if data.ndim == 2 else None, fill)
        grow.data, grow.n = data, data.shape[0]
        return grow

    def append(self, value: Any) -> int:
        if self.n == self.data.shape[0]:
            extra = np.full((max(16, self.n), *self.data.shape[1:]), self.fill, dtype=self.data.dtype)
            self.data = np.concatenate([self.data, extra])
        self.data[self.n] = value
        self.n += 1
        return self.n - 1

    def view(self) -> np.ndarray:
        return self.data[: self.n]


class Vectors:
    """A vector field's vectors in entry order: a read-only ``head`` (the entries an HNSW graph holds, read from the
    graph's own storage; or vectors mapped from a segment file) and a growing tail of the entries written since.

    faiss's IndexHNSWFlat keeps a copy of every vector it holds; a second copy here (in a buffer that grows by
    doubling) held the field's vectors up to three times. ``owner`` keeps the faiss object whose storage ``head``
    views alive for as long as the view is in use; after the graph changes, ``over_graph`` takes a new view (an
    ``add`` may move faiss's storage). Callers hold the index lock."""

    def __init__(self, dimension: int, head: np.ndarray | None = None, owner: Any = None) -> None:
        self.dimension = dimension
        self.head = head if head is not None else np.empty((0, dimension), dtype=np.float32)
        self.owner = owner
        self.tail = Grow(np.float32, width=dimension)

    @classmethod
    def over_graph(cls, graph: HNSWGraph) -> Vectors:
        """The vectors ``graph`` holds, read in place from its flat storage."""
        storage: Any = faiss.downcast_index(graph.storage)  # an IndexFlat (faiss's .pyi types it as a bare Index)
        n, d = int(graph.ntotal), int(graph.d)
        head = (faiss.rev_swig_ptr(storage.get_xb(), n * d).reshape(n, d) if n
                else np.empty((0, d), dtype=np.float32))
        head.flags.writeable = False  # faiss's memory (or a mapped file): numpy must refuse a write, not crash
        return cls(d, head, graph)

    @property
    def n(self) -> int:
        return self.head.shape[0] + self.tail.n

    def append(self, vec: np.ndarray) -> int:
        return self.head.shape[0] + self.tail.append(vec)

    def view(self) -> np.ndarray:
        """Every vector (a copy when both parts hold some)."""
        if not self.tail.n:
            return self.head
        if not self.head.shape[0]:
            return self.tail.view()
        return np.concatenate([self.head, self.tail.view()])

    def since(self, start: int) -> np.ndarray:
        """Entries ``start`` .. n-1, contiguous."""
        h = self.head.shape[0]
        if start >= h:
            return self.tail.data[start - h:self.tail.n]
        return np.ascontiguousarray(self.view()[start:])

    def take(self, entries: np.ndarray) -> np.ndarray:
        h = self.head.shape[0]
        if not self.tail.n:
            return self.head[entries]
        if not h:
            return self.tail.data[entries]
        out = np.empty((entries.shape[0], self.dimension), dtype=np.float32)
        in_head = entries < h
        out[in_head] = self.head[entries[in_head]]
        out[~in_head] = self.tail.data[entries[~in_head] - h]
        return out


# the text, keyword, value and feature fields live in ``postings`` (imported here, below ``Grow``, which they do not
# need, so that ``from .fields import TermField`` keeps working)
from .postings import FeatureField, TermField, ValueField  # noqa: E402

__all__ = ["FeatureField", "Grow", "HNSWGraph", "TermField", "ValueField", "VectorField", "Vectors"]


class VectorField:
    """One ``knn_vector`` field: vectors in entry order, a faiss HNSW graph over them (built lazily,
    in batches, on the first search after writes), and a live mask so dead entries never surface."""

    REBUILD_DEAD_FRACTION = 0.5

    def __init__(self, spec: VectorSpec) -> None:
        self.spec = spec
        self.vectors = Vectors(spec.dimension)
        self.owner = Grow(np.int64, fill=-1)
        self.live = Grow(np.bool_, fill=False)
        self.slot_entry: dict[int, int] = {}
        self.graph: HNSWGraph | None = None
        self.in_graph = 0
        self.dead = 0
        self._plain_params: dict[int, Any] = {}  # faiss.SearchParametersHNSW per ef_search
        self.mapped: HNSWGraph | None = None  # a graph read with its vectors mapped from a file (read-only)

    @classmethod
    def restored(cls, spec: VectorSpec, vectors: np.ndarray, owner: np.ndarray, live: np.ndarray,
                 graph: HNSWGraph | None) -> VectorField:
        """A field as ``segment`` saved it: ``vectors`` (read-only, maybe mapped), each entry's slot and liveness,
        and the HNSW graph over every entry (None for exact search)."""
        field = cls(spec)
        field.vectors = Vectors.over_graph(graph) if graph is not None else Vectors(spec.dimension, vectors)
        field.owner, field.live = Grow.of(owner, fill=-1), Grow.of(live, fill=False)
        field.slot_entry = dict(zip(owner[live].tolist(), np.flatnonzero(live).tolist()))
        field.dead = int(live.size - len(field.slot_entry))
        if graph is not None:
            field.graph, field.in_graph, field.mapped = graph, graph.ntotal, graph
        return field

    @property
    def metric_l2(self) -> bool:
        return self.spec.space_type == "l2"

    def prepare(self, vec: np.ndarray) -> np.ndarray:
        vec = np.asarray(vec, dtype=np.float32)
        if self.spec.space_type == "cosinesimil":
            norm = np.sqrt(vec.dot(vec))  # what np.linalg.norm computes, without its dispatch
            vec = vec / norm if norm else vec
        return vec

    def add(self, slot: int, vec: np.ndarray) -> None:
        entry = self.vectors.append(self.prepare(vec))
        self.owner.append(slot)
        self.live.append(True)
        self.slot_entry[slot] = entry

    def remove(self, slot: int) -> None:
        entry = self.slot_entry.pop(slot, None)
        if entry is not None:
            self.live.data[entry] = False
            self.dead += 1

    def slots_with_field(self) -> np.ndarray:
        return np.fromiter(self.slot_entry.keys(), dtype=np.int64, count=len(self.slot_entry))

    # --- graph maintenance ----------------------------------------------------------------
    def _compact_if_needed(self) -> None:
        if not self._compaction_due():
            return
        keep = np.flatnonzero(self.live.view())
        vectors, owners = self.vectors.view()[keep].copy(), self.owner.view()[keep].copy()
        self.vectors, self.owner, self.live = Vectors(self.spec.dimension), Grow(np.int64, fill=-1), \
            Grow(np.bool_, fill=False)
        self.slot_entry.clear()
        for vec, slot in zip(vectors, owners.tolist()):
            self.slot_entry[slot] = self.vectors.append(vec)
            self.owner.append(slot)
            self.live.append(True)
        self.graph, self.in_graph, self.dead, self.mapped = None, 0, 0, None

    def graph_current(self) -> bool:
        """Whether a search finds the HNSW graph as it stands: nothing to add to it, no compaction due (so
        ``refresh`` would return at once)."""
        return (self.spec.method == "hnsw" and self.graph is not None and self.in_graph == self.vectors.n
                and not self._compaction_due())

    def _compaction_due(self) -> bool:
        n = self.vectors.n
        return n >= 64 and self.dead >= self.REBUILD_DEAD_FRACTION * n

    def refresh(self) -> None:
        """Bring the HNSW graph up to date with every written vector (blocking; call off the loop)."""
        if self.spec.method != "hnsw":
            return
        self._compact_if_needed()
        graph = self.graph
        if graph is None:
            metric = faiss.METRIC_L2 if self.metric_l2 else faiss.METRIC_INNER_PRODUCT
            graph = self.graph = faiss.IndexHNSWFlat(self.spec.dimension, self.spec.m, metric)
            graph.hnsw.efConstruction = self.spec.ef_construction
            self.in_graph = 0
        if self.in_graph < self.vectors.n:
            if self.mapped is not None and graph is self.mapped:  # faiss aborts on adding to a mapped graph: copy
                graph = self.graph = faiss.deserialize_index(faiss.serialize_index(graph))
            graph.add(np.ascontiguousarray(self.vectors.since(self.in_graph)))
            self.in_graph = self.vectors.n
            self.vectors = Vectors.over_graph(graph)  # the graph holds them all now: one copy, not two

    # --- search ---------------------------------------------------------------------------
    def _raw_exact(self, query: np.ndarray, entries: np.ndarray) -> np.ndarray:
        vecs = self.vectors.take(entries)
        if self.metric_l2:
            diff = vecs - query[None, :]
            return np.einsum("ij,ij->i", diff, diff).astype(np.float32)
        return (vecs @ query).astype(np.float32)

    def _order(self, raw: np.ndarray) -> np.ndarray:
        return np.argsort(raw, kind="stable") if self.metric_l2 else np.argsort(-raw, kind="stable")

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None, ef_search: int | None,
               group: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` slots (distinct ``group`` values when given) and their k-NN scores.

        ``allowed`` is an optional boolean mask over the scope's slots (a filter); removed entries never match."""
        query = self.prepare(query)
        n = self.vectors.n
        live: np.ndarray | None = None
        n_live = n - self.dead
        if allowed is not None or self.dead:
            live = self.live.view().copy()
            if allowed is not None:
                owners = self.owner.view()
                ok = np.zeros(n, dtype=np.bool_)
                inside = owners < allowed.shape[0]
                ok[inside] = allowed[owners[inside]]
                live &= ok
            n_live = int(np.count_nonzero(live))
        if n_live == 0 or k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if self.spec.method == "hnsw" and n_live > k:
            self.refresh()
            want = k
            while True:
                entries, raw = self._graph_search(query, want, live, ef_search)
                hits = self._dedup(entries, raw, group, k)
                if len(hits[0]) >= k or want >= n_live:
                    break
                want = min(n_live, want * 4)
            if len(hits[0]) >= k or len(hits[0]) >= self._distinct(
                    np.flatnonzero(live) if live is not None else np.arange(n), group):
                return hits[0], scores_from_raw(self.spec.space_type, hits[1])
        candidates = np.flatnonzero(live) if live is not None else np.arange(n)
        raw = self._raw_exact(query, candidates)
        order = self._order(raw)
        slots, raws = self._dedup(candidates[order], raw[order], group, k)
        return slots, scores_from_raw(self.spec.space_type, raws)

    def _distinct(self, entries: np.ndarray, group: np.ndarray | None) -> int:
        if group is None:
            return int(entries.size)
        return int(np.unique(group[self.owner.data[entries]]).size)

    def _graph_search(self, query: np.ndarray, k: int, live: np.ndarray | None,
                      ef_search: int | None) -> tuple[np.ndarray, np.ndarray]:
        assert self.graph is not None
        # a candidate list longer than the graph finds nothing more: cap it there, so a huge ef_search costs what a
        # full visit of the graph costs instead of allocating for the number asked
        ef = max(min(ef_search or self.spec.ef_search, self.graph.ntotal), k)
        bitmap = None
        if live is not None and not live.all():
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's .pyi
            params.efSearch = ef
            bitmap = np.packbits(live, bitorder="little")
            selector = faiss.IDSelectorBitmap(live.shape[0], faiss.swig_ptr(bitmap))
            params.sel = selector
        else:  # unfiltered: one read-only parameter object per ef_search, shared by concurrent searches
            params = self._plain_params.get(ef)
            if params is None:
                params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's .pyi
                params.efSearch = ef
                if len(self._plain_params) < 64:  # requests choose ef_search: keep the cache bounded
                    self._plain_params[ef] = params
        dist, ids = self.graph.search(query[None, :], k, params=params)
        del bitmap
        if ids.shape[1] and ids[0, -1] >= 0:  # faiss pads a short answer with -1 at the end
            return ids[0].astype(np.int64), dist[0]
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), dist[0][keep]

    def _dedup(self, entries: np.ndarray, raw: np.ndarray, group: np.ndarray | None,
               k: int) -> tuple[np.ndarray, np.ndarray]:
        slots = self.owner.data[entries]
        if group is None:
            return slots[:k], raw[:k]
        seen: set[int] = set()
        keep = []
        for i, slot in enumerate(slots.tolist()):
            g = int(group[slot])
            if g not in seen:
                seen.add(g)
                keep.append(i)
                if len(keep) == k:
                    break
        idx = np.asarray(keep, dtype=np.int64)
        return slots[idx], raw[idx]

    def radial(self, query: np.ndarray, min_score: float, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Every allowed slot whose score is at least ``min_score`` (exact)."""
        query = self.prepare(query)
        live = self.live.view().copy()
        if allowed is not None:
            owners = self.owner.view()
            live &= allowed[np.minimum(owners, allowed.shape[0] - 1)] & (owners < allowed.shape[0])
        candidates = np.flatnonzero(live)
        scores = scores_from_raw(self.spec.space_type, self._raw_exact(query, candidates))
        keep = scores >= np.float32(min_score)
        return self.owner.data[candidates[keep]], scores[keep]
