"""Postings of one scope's text, keyword, feature and value fields: compact numpy arrays, saved in the segment.

Each field is an immutable base (``Postings``: a term dictionary and, per term, its slots in order with their
frequencies or weights, CSR-style; for text fields also every position, term by term and slot by slot) plus a small
mutable tail of the documents written since, in dicts. The tail is merged into a new base when it grows past a
fraction of the base, and before the segment is saved. A removed slot stays in the base, masked out by the field's
per-slot arrays (length -1, or ``has`` False) until the next merge drops it; every statistic BM25 reads (docFreq,
docCount, sumTotalTermFreq) counts live slots only, as Lucene's do after a merge expunges deletes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any

import numpy as np

from . import similarity

MERGE_MIN = 50_000        # tail entries below which a tail is never merged
MERGE_FRACTION = 0.25     # ... nor while it holds fewer entries than this fraction of the base
MERGE_MAX = 250_000       # ... but always past this many (dicts cost ~100 bytes an entry, the base 8 to 12)
EMPTY_SLOTS = np.empty(0, dtype=np.int64)
try:  # a merge's temporaries raise glibc's heap, which it keeps unless asked: malloc_trim hands it back
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: nothing to trim
    _LIBC = None
EMPTY_SCORES = np.empty(0, dtype=np.float32)


def ragged(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The indices ``starts[i] .. starts[i] + counts[i] - 1`` for every i, concatenated."""
    counts = counts.astype(np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(counts)
    return np.repeat(starts.astype(np.int64) - (ends - counts), counts) + np.arange(total, dtype=np.int64)


class Postings:
    """An immutable CSR over terms: term ``t``'s entries are ``slots[ptr[t]:ptr[t+1]]`` (ascending) with ``data``
    (frequencies or weights); with positions, its positions are ``positions[pos_ptr[t]:pos_ptr[t+1]]``, entry by
    entry (``data`` of them each). The arrays may be mapped read-only from the segment's files."""

    def __init__(self, terms: list[str], ptr: np.ndarray, slots: np.ndarray, data: np.ndarray,
                 pos_ptr: np.ndarray | None = None, positions: np.ndarray | None = None) -> None:
        self.terms = terms
        self._ids: dict[str, int] | None = None
        self.ptr, self.slots, self.data = ptr, slots, data
        self.pos_ptr, self.positions = pos_ptr, positions

    @classmethod
    def empty(cls, dtype: Any, positions: bool) -> Postings:
        zero = np.zeros(1, dtype=np.int64)
        return cls([], zero, np.empty(0, dtype=np.int32), np.empty(0, dtype=dtype),
                   zero if positions else None, np.empty(0, dtype=np.int32) if positions else None)

    @property
    def ids(self) -> dict[str, int]:
        if self._ids is None:
            self._ids = dict(zip(self.terms, range(len(self.terms))))
        return self._ids

    @property
    def size(self) -> int:
        return int(self.slots.shape[0])

    def entries(self, term: str) -> tuple[int, int, int]:
        """(term id, first entry, end entry) of ``term``; (-1, 0, 0) when absent."""
        tid = self.ids.get(term, -1)
        if tid < 0:
            return -1, 0, 0
        return tid, int(self.ptr[tid]), int(self.ptr[tid + 1])

    def term_ids(self) -> np.ndarray:
        """The term id of every entry."""
        return np.repeat(np.arange(len(self.ptr) - 1, dtype=np.int64), np.diff(self.ptr))

    def check(self, scope_size: int) -> None:
        """Raise ValueError unless the arrays are consistent (a damaged segment must rebuild, not mislead)."""
        n_terms = len(self.terms)
        if self.ptr.shape != (n_terms + 1,) or int(self.ptr[0]) != 0 or int(self.ptr[-1]) != self.size \
                or self.data.shape != self.slots.shape or np.any(np.diff(self.ptr) < 0):
            raise ValueError("postings arrays disagree")
        if self.size and not (0 <= int(self.slots.min()) and int(self.slots.max()) < scope_size):
            raise ValueError("posting slots out of range")
        if self.pos_ptr is not None:
            assert self.positions is not None
            if self.pos_ptr.shape != self.ptr.shape or int(self.pos_ptr[-1]) != self.positions.shape[0] \
                    or int(self.data.sum(dtype=np.int64)) != self.positions.shape[0]:
                raise ValueError("position arrays disagree")


def merged(base: Postings, live: np.ndarray, tail: dict[str, dict[int, Any]], dtype: Any,
           positions: bool) -> Postings:
    """A new base: ``base``'s entries whose slot is ``live`` plus the ``tail`` ({term: {slot: value}}, where a
    value is a list of positions, whose length is the frequency, or a weight), sorted by term then slot."""
    terms = list(base.terms)
    ids = dict(base.ids)
    keep = live[base.slots] if base.size else np.zeros(0, dtype=np.bool_)
    tids = [base.term_ids()[keep]]
    slots = [np.asarray(base.slots)[keep].astype(np.int64)]
    data = [np.asarray(base.data)[keep]]
    pos: list[np.ndarray] = []
    if positions:
        assert base.pos_ptr is not None and base.positions is not None
        freqs = np.asarray(base.data, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(freqs)[:-1]]) if freqs.size else freqs
        pos.append(np.asarray(base.positions)[ragged(starts[keep], freqs[keep])])
    # the tail, flattened by C loops (a tail holds up to MERGE_MAX entries)
    tail_tids = []
    for term in tail:
        tid = ids.get(term)
        if tid is None:
            tid = ids[term] = len(terms)
            terms.append(term)
        tail_tids.append(tid)
    counts = np.fromiter(map(len, tail.values()), dtype=np.int64, count=len(tail))
    total = int(counts.sum())
    t_slots = np.fromiter(chain.from_iterable(tail.values()), dtype=np.int64, count=total)
    values = list(chain.from_iterable(p.values() for p in tail.values()))
    lists = bool(values) and isinstance(values[0], list)  # positions (their number is the frequency), or weights
    t_data = np.fromiter(map(len, values), dtype=dtype, count=total) if lists else np.asarray(values, dtype=dtype)
    t_keep = live[t_slots]
    tids.append(np.repeat(np.asarray(tail_tids, dtype=np.int64), counts)[t_keep])
    slots.append(t_slots[t_keep])
    data.append(t_data[t_keep])
    if positions:
        t_pos = np.fromiter(chain.from_iterable(values), dtype=np.int32) if lists else np.empty(0, dtype=np.int32)
        pos.append(t_pos[np.repeat(t_keep, t_data.astype(np.int64))] if t_pos.size else t_pos)
    all_tids, all_slots, all_data = np.concatenate(tids), np.concatenate(slots), np.concatenate(data).astype(dtype)
    order = np.lexsort((all_slots, all_tids))
    all_tids, all_slots, all_data = all_tids[order], all_slots[order], all_data[order]
    ptr = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(all_tids, minlength=len(terms)), out=ptr[1:])
    if not positions:
        return Postings(terms, ptr, all_slots.astype(np.int32), all_data)
    flat = np.concatenate(pos)
    freqs = np.concatenate(data).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(freqs)[:-1]]) if freqs.size else freqs
    reordered = flat[ragged(starts[order], freqs[order])].astype(np.int32)
    pos_ptr = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(all_tids, weights=all_data, minlength=len(terms)).astype(np.int64), out=pos_ptr[1:])
    return Postings(terms, ptr, all_slots.astype(np.int32), all_data, pos_ptr, reordered)


def release_memory() -> None:
    """Return the heap memory freed after a merge to the system (the arrays of 100k documents' merge raise the
    resident size by about as much as the postings take)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def merge_due(tail_entries: int, base_entries: int) -> bool:
    return tail_entries > max(MERGE_MIN, min(MERGE_MAX, MERGE_FRACTION * base_entries))


def fit(array: np.ndarray, slot: int, fill: Any) -> np.ndarray:
    """``array`` (per slot), grown by doubling when needed so that ``slot`` is inside it, new room ``fill``ed."""
    if slot < array.shape[0]:
        return array
    out = np.full(max(slot + 1, 2 * array.shape[0], 16), fill, dtype=array.dtype)
    out[: array.shape[0]] = array
    return out


class TermField:
    """Postings for a text field (analysed tokens with positions, BM25 with norms) or a keyword field (exact values,
    no norms: Lucene reads norm 1 and counts each distinct value once)."""

    def __init__(self, *, norms: bool) -> None:
        self.norms = norms
        self.base = Postings.empty(np.int32, positions=norms)
        self.tail: dict[str, dict[int, list[int]]] = {}  # term -> slot -> positions (keyword: [0])
        self.tail_slots: dict[int, list[str]] = {}        # slot -> its terms, for the tail's slots
        self._tail_arrays: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}  # term -> its tail as arrays, by size
        self.tail_entries = 0
        self._forward: tuple[np.ndarray, np.ndarray] | None = None  # the base by slot, built on first sort
        self.base_dead = 0      # removed slots still in the base
        self.norm_bytes = np.zeros(0, dtype=np.uint8)
        self.length = np.full(0, -1, dtype=np.int32)  # per slot: length (keyword: distinct values); -1 none/removed
        self.doc_count = 0
        self.sum_ttf = 0

    @classmethod
    def restored(cls, norms: bool, base: Postings, norm_bytes: np.ndarray, length: np.ndarray) -> TermField:
        field = cls(norms=norms)
        field.base = base
        field.norm_bytes, field.length = norm_bytes, length
        live = length[length >= 0]
        field.doc_count, field.sum_ttf = int(live.size), int(live.sum(dtype=np.int64))
        return field

    def add(self, slot: int, tokens: list[str], positions: list[int] | None = None) -> None:
        """Index ``tokens`` at ``slot`` (a new one); ``positions`` (text fields) are their positions, for phrases."""
        self.norm_bytes = fit(self.norm_bytes, slot, 0)
        self.length = fit(self.length, slot, -1)
        if self.norms:
            length = len(tokens)
            by_term: dict[str, list[int]] = {}
            for token, pos in zip(tokens, positions if positions is not None else range(length)):
                by_term.setdefault(token, []).append(pos)
        else:
            by_term = dict.fromkeys(tokens, [0])
            length = len(by_term)
        self.norm_bytes[slot] = similarity.int_to_byte4(length) if self.norms else 1
        self.length[slot] = length
        tail = self.tail
        for term, where in by_term.items():
            tail.setdefault(term, {})[slot] = where
        self.tail_slots[slot] = list(by_term)
        self.tail_entries += len(by_term)
        self.doc_count += 1
        self.sum_ttf += length
        if merge_due(self.tail_entries, self.base.size):
            self.merge()

    def remove(self, slot: int) -> None:
        if slot >= self.length.shape[0] or self.length[slot] < 0:
            return
        self.doc_count -= 1
        self.sum_ttf -= int(self.length[slot])
        self.length[slot] = -1
        self.base_dead += 1  # (a tail slot counted too: it only makes the base filter its entries)

    def merge(self) -> None:
        """Fold the tail into a new base and drop removed slots from it (scores do not change)."""
        if not self.tail and not self.base_dead:
            return
        live = self.length >= 0
        self.base = merged(self.base, live, self.tail, np.int32, positions=self.norms)
        self.tail, self.tail_slots, self.tail_entries, self.base_dead, self._forward = {}, {}, 0, 0, None
        self._tail_arrays = {}
        release_memory()

    def slots_with_field(self) -> np.ndarray:
        return np.flatnonzero(self.length >= 0)

    def terms(self) -> Iterator[str]:
        """Every term with at least one entry (maybe removed)."""
        yield from self.base.terms
        yield from (t for t in self.tail if t not in self.base.ids)

    def slot_values(self, slot: int) -> list[str]:
        """The terms of one slot (a keyword field's values), for sorting."""
        if slot >= self.length.shape[0] or self.length[slot] < 0:
            return []
        if slot in self.tail_slots:
            return list(self.tail_slots[slot])
        if self._forward is None:
            order = np.argsort(self.base.slots, kind="stable")
            self._forward = np.asarray(self.base.slots)[order], self.base.term_ids()[order]
        slots, tids = self._forward
        lo, hi = np.searchsorted(slots, [slot, slot + 1])
        return [self.base.terms[t] for t in tids[lo:hi].tolist()]

    def posting(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """The live slots holding ``term`` (ascending) and its frequency in each."""
        _, lo, hi = self.base.entries(term)
        slots, freqs = self.base.slots[lo:hi], self.base.data[lo:hi]
        if self.base_dead and hi > lo:
            keep = self.length[slots] >= 0
            slots, freqs = slots[keep], freqs[keep]
        extra = self.tail.get(term)
        if extra:
            # a term's tail only grows until the next merge (a removal masks its slot), so its arrays stay valid
            # while its size is the same: a query re-reads them instead of converting the dict every time
            cached = self._tail_arrays.get(term)
            if cached is None or cached[0] != len(extra):
                cached = (len(extra), np.fromiter(extra.keys(), dtype=np.int64, count=len(extra)),
                          np.fromiter(map(len, extra.values()), dtype=np.int32, count=len(extra)))
                self._tail_arrays[term] = cached
            _, t_slots, t_freqs = cached
            keep = self.length[t_slots] >= 0
            slots = np.concatenate([slots, t_slots[keep]])
            freqs = np.concatenate([freqs, t_freqs[keep]])
        return slots, freqs

    def score(self, term: str, boost: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Slots containing ``term`` and their BM25 scores (Lucene BM25Similarity)."""
        slots, freqs = self.posting(term)
        if not slots.size:
            return EMPTY_SLOTS, EMPTY_SCORES
        weight = float(np.float32(boost) * np.float32(similarity.idf(slots.size, self.doc_count)))
        avgdl = similarity.avg_length(self.sum_ttf, self.doc_count)
        return slots, similarity.bm25(freqs, self.norm_bytes[slots], weight=weight, avgdl=avgdl)

    def _position_keys(self, term: str, candidates: np.ndarray) -> np.ndarray:
        """``slot << 32 | position`` of every occurrence of ``term`` in the ``candidates`` slots, ascending."""
        base = self.base
        tid, lo, hi = base.entries(term)
        keys = [np.empty(0, dtype=np.int64)]
        if hi > lo:
            assert base.pos_ptr is not None and base.positions is not None
            slots = np.asarray(base.slots[lo:hi], dtype=np.int64)
            freqs = np.asarray(base.data[lo:hi], dtype=np.int64)
            at = np.searchsorted(candidates, slots)
            hit = (at < candidates.size) & (candidates[np.minimum(at, candidates.size - 1)] == slots)
            starts = int(base.pos_ptr[tid]) + np.concatenate([[0], np.cumsum(freqs)[:-1]])
            pos = np.asarray(base.positions)[ragged(starts[hit], freqs[hit])].astype(np.int64)
            keys.append((np.repeat(slots[hit], freqs[hit]) << 32) | pos)
        extra = self.tail.get(term)
        if extra:
            t_slots = np.fromiter(extra.keys(), dtype=np.int64, count=len(extra))
            wanted = t_slots[np.isin(t_slots, candidates)].tolist()
            keys.append(np.asarray([(slot << 32) | p for slot in wanted for p in extra[slot]], dtype=np.int64))
        return np.concatenate(keys)

    def score_phrase(self, terms: list[str], boost: float = 1.0,
                     positions: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Slots holding ``terms`` at ``positions`` relative to each other (default consecutive; a gap left by a
        stop word matches any position) and their BM25 phrase scores: Lucene's PhraseQuery, whose frequency is the
        number of occurrences and whose idf is the sum of the terms' idfs."""
        offsets = list(range(len(terms))) if positions is None else [p - positions[0] for p in positions]
        postings = [self.posting(t)[0] for t in terms]
        if any(not p.size for p in postings):
            return EMPTY_SLOTS, EMPTY_SCORES
        candidates = postings[0].astype(np.int64)
        for p in postings[1:]:
            candidates = np.intersect1d(candidates, p, assume_unique=True)
        if not candidates.size:
            return EMPTY_SLOTS, EMPTY_SCORES
        starts = self._position_keys(terms[0], candidates)
        ok = np.ones(starts.size, dtype=np.bool_)
        for term, offset in zip(terms[1:], offsets[1:]):
            keys = self._position_keys(term, candidates)
            want = starts + offset
            at = np.minimum(np.searchsorted(keys, want), max(keys.size - 1, 0))
            ok &= keys[at] == want if keys.size else False
        slots, freqs = np.unique(starts[ok] >> 32, return_counts=True)
        if not slots.size:
            return EMPTY_SLOTS, EMPTY_SCORES
        idf = float(np.float32(sum(similarity.idf(p.size, self.doc_count) for p in postings)))
        weight = float(np.float32(boost) * np.float32(idf))
        avgdl = similarity.avg_length(self.sum_ttf, self.doc_count)
        return slots, similarity.bm25(freqs, self.norm_bytes[slots], weight=weight, avgdl=avgdl)


class FeatureField:
    """A ``rank_features`` (or ``rank_feature``, token "") field: per token, its slots and decoded weights."""

    def __init__(self) -> None:
        self.base = Postings.empty(np.float32, positions=False)
        self.tail: dict[str, dict[int, float]] = {}
        self._tail_arrays: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}  # token -> its tail as arrays, by size
        self.tail_entries = 0
        self.base_dead = 0
        self.has = np.zeros(0, dtype=np.bool_)

    @classmethod
    def restored(cls, base: Postings, has: np.ndarray) -> FeatureField:
        field = cls()
        field.base, field.has = base, has
        return field

    def add(self, slot: int, features: dict[str, float]) -> None:
        decoded = similarity.decode_feature(np.fromiter(features.values(), dtype=np.float32, count=len(features)))
        tail = self.tail
        for token, value in zip(features, decoded.tolist()):
            tail.setdefault(token, {})[slot] = value
        self.tail_entries += len(features)
        self.has = fit(self.has, slot, False)
        self.has[slot] = True
        if merge_due(self.tail_entries, self.base.size):
            self.merge()

    def remove(self, slot: int) -> None:
        if slot < self.has.shape[0] and self.has[slot]:
            self.has[slot] = False
            self.base_dead += 1

    def merge(self) -> None:
        if not self.tail and not self.base_dead:
            return
        self.base = merged(self.base, self.has, self.tail, np.float32, positions=False)
        self.tail, self.tail_entries, self.base_dead, self._tail_arrays = {}, 0, 0, {}
        release_memory()

    def slots_with_field(self) -> np.ndarray:
        return np.flatnonzero(self.has)

    def values(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """The live slots holding ``token`` (ascending) and their decoded weights."""
        _, lo, hi = self.base.entries(token)
        slots, values = self.base.slots[lo:hi], self.base.data[lo:hi]
        if self.base_dead and hi > lo:
            keep = self.has[slots]
            slots, values = slots[keep], values[keep]
        extra = self.tail.get(token)
        if extra:
            cached = self._tail_arrays.get(token)  # valid while the token's tail keeps its size (see TermField)
            if cached is None or cached[0] != len(extra):
                cached = (len(extra), np.fromiter(extra.keys(), dtype=np.int64, count=len(extra)),
                          np.fromiter(extra.values(), dtype=np.float32, count=len(extra)))
                self._tail_arrays[token] = cached
            _, t_slots, t_values = cached
            keep = self.has[t_slots]
            slots = np.concatenate([slots, t_slots[keep]])
            values = np.concatenate([values, t_values[keep]])
        return slots, values


class ValueField:
    """Numeric, boolean and date values per slot, for term, terms, range and sort: a base of values ordered by
    slot (``owner`` names each value's slot) and a tail of later slots."""

    def __init__(self) -> None:
        self.owner = np.empty(0, dtype=np.int32)
        self.vals: np.ndarray = np.empty(0, dtype=np.float64)
        self.tail: dict[int, list[Any]] = {}
        self.base_dead = 0
        self.has = np.zeros(0, dtype=np.bool_)

    @classmethod
    def restored(cls, owner: np.ndarray, vals: np.ndarray, has: np.ndarray) -> ValueField:
        field = cls()
        field.owner, field.vals, field.has = owner, vals, has
        return field

    def add(self, slot: int, values: list[Any]) -> None:
        self.tail[slot] = values
        self.has = fit(self.has, slot, False)
        self.has[slot] = True
        if merge_due(4 * len(self.tail), self.owner.size):
            self.merge()

    def remove(self, slot: int) -> None:
        if slot < self.has.shape[0] and self.has[slot]:
            self.has[slot] = False
            self.tail.pop(slot, None)
            self.base_dead += 1

    def merge(self) -> None:
        if not self.tail and not self.base_dead:
            return
        keep = self.has[self.owner] if self.owner.size else np.zeros(0, dtype=np.bool_)
        slots = list(self.tail)
        counts = [len(self.tail[s]) for s in slots]
        values = [v for s in slots for v in self.tail[s]]
        added = np.asarray(values) if values else np.empty(0, dtype=self.vals.dtype)
        base_vals = np.asarray(self.vals)[keep]
        vals = np.concatenate([base_vals, added]) if base_vals.size else added
        if vals.dtype.kind not in "biuf":  # e.g. integers past 64 bits: they stay in the tail (and are not saved)
            return
        self.owner = np.concatenate([np.asarray(self.owner)[keep],
                                     np.repeat(np.asarray(slots, dtype=np.int32), counts)]).astype(np.int32)
        self.vals, self.tail, self.base_dead = vals, {}, 0
        release_memory()

    def slots_with_field(self) -> np.ndarray:
        return np.flatnonzero(self.has)

    def get(self, slot: int, default: list[Any] | None = None) -> list[Any]:
        """The values of ``slot`` (Python numbers and booleans); ``default`` (or []) when none."""
        if slot >= self.has.shape[0] or not self.has[slot]:
            return [] if default is None else default
        if slot in self.tail:
            return list(self.tail[slot])
        lo, hi = np.searchsorted(self.owner, [slot, slot + 1])
        return np.asarray(self.vals[lo:hi]).tolist()

    @property
    def values(self) -> ValueField:
        """``values.get(slot, default)``: what sorting reads."""
        return self

    def slots_where(self, conditions: list[tuple[Callable[[Any, Any], Any], Any]]) -> np.ndarray:
        """Live slots with a value meeting every ``(operator, bound)`` (``operator.ge`` for gte, ...)."""
        mask = np.ones(self.owner.size, dtype=np.bool_)
        for op, bound in conditions:
            mask &= np.asarray(op(self.vals, bound), dtype=np.bool_)
        slots = np.unique(np.asarray(self.owner)[mask]).astype(np.int64)
        if self.base_dead and slots.size:
            slots = slots[self.has[slots]]
        extra = [slot for slot, vals in self.tail.items() if any(all(op(v, b) for op, b in conditions) for v in vals)]
        return np.concatenate([slots, np.asarray(extra, dtype=np.int64)]) if extra else slots

