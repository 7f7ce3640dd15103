"""Postings of one scope's text, keyword, feature and value fields: compact numpy arrays, saved in the segment.

A text, keyword or feature field is a list of immutable parts (``Postings``: a term dictionary and, per term, its
slots in order with their frequencies or weights, CSR-style; for text fields also every position, term by term and
slot by slot): the saved base, then one part per batch of documents written since (a ``_bulk`` request's documents
are indexed together, one numpy pass per field). Parts merge as they accumulate (see ``_Parts``) and into one before
the segment is saved. A removed slot stays in its part, masked out by the field's per-slot arrays (length -1, or
``has`` False) until a merge drops it; every statistic BM25 reads (docFreq, docCount, sumTotalTermFreq) counts live
slots only, as Lucene's do after a merge expunges deletes. Value fields keep a base and a dict tail.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from itertools import chain, repeat
from typing import Any

import numpy as np

from . import similarity

MERGE_RATIO = 2.0         # text, keyword, feature fields: the two newest parts merge while the older holds at most
#                           this many times the newer's entries (above 1, or slowly shrinking batches pile up parts)
RELEASE_AFTER = 1_000_000  # ... and a merge this big hands its freed heap back (malloc_trim)
MERGE_MIN = 50_000        # value fields: tail entries below which a tail is never merged
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
                 pos_ptr: np.ndarray | None = None, positions: np.ndarray | None = None,
                 ids: dict[str, int] | None = None) -> None:
        self.terms = terms
        self._ids = ids  # term -> id, when the builder has it already
        self._forward: tuple[np.ndarray, np.ndarray] | None = None  # (slots, term ids) by slot, built on first use
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


def _kept(part: Postings, live: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None,
                                                          np.ndarray | None]:
    """(slots, data, entries per term, positions, positions per term) of ``part``'s entries whose slot is ``live``
    (every entry when ``live`` is None)."""
    slots, data = np.asarray(part.slots), np.asarray(part.data)
    positions = None if part.positions is None else np.asarray(part.positions)
    pos_per_term = None if part.pos_ptr is None else np.diff(part.pos_ptr)
    if live is None or not part.size:
        return slots, data, np.diff(part.ptr), positions, pos_per_term
    keep = live[slots]
    if keep.all():
        return slots, data, np.diff(part.ptr), positions, pos_per_term
    kept_tids = part.term_ids()[keep]
    per_term = np.bincount(kept_tids, minlength=len(part.ptr) - 1).astype(np.int64)
    if positions is not None:
        positions = positions[np.repeat(keep, data.astype(np.int64))]
        pos_per_term = np.bincount(kept_tids, weights=data[keep], minlength=len(part.ptr) - 1).astype(np.int64)
    return slots[keep], data[keep], per_term, positions, pos_per_term


def concat(parts: list[Postings], live: np.ndarray | None, dtype: Any, positions: bool) -> Postings:
    """One postings of ``parts`` (whose slots ascend part after part: a later part holds later slots only), their
    entries whose slot is ``live`` (None: all): per term, each part's entries in part order, so slots stay
    ascending without a sort. The term dictionary is the first part's, then each later part's new terms in its
    order (every term kept, even one whose entries all died), so terms stay in the order they were first written.
    The first part's term list and dictionary are extended in place and shared with the result (the first part is
    replaced by it); if anything fails, they are cut back first."""
    terms, ids = parts[0].terms, parts[0].ids
    known = len(terms)
    try:
        return _concat(parts, terms, ids, live, dtype, positions)
    except BaseException:
        for term in terms[known:]:
            del ids[term]
        del terms[known:]
        raise


def _concat(parts: list[Postings], terms: list[str], ids: dict[str, int], live: np.ndarray | None, dtype: Any,
            positions: bool) -> Postings:
    maps = [np.arange(len(terms), dtype=np.int64)]
    for part in parts[1:]:  # each part's term ids in the merged dictionary, new terms appended (C loops only)
        found = np.fromiter(map(ids.get, part.terms, repeat(-1)), dtype=np.int64, count=len(part.terms))
        missing = np.flatnonzero(found < 0)
        if missing.size:
            new_terms = list(map(part.terms.__getitem__, missing.tolist()))  # distinct: a part names a term once
            found[missing] = np.arange(len(terms), len(terms) + len(new_terms))
            ids.update(zip(new_terms, range(len(terms), len(terms) + len(new_terms))))
            terms.extend(new_terms)
        maps.append(found)
    n_terms = len(terms)
    kept = [_kept(part, live) for part in parts]
    counts = np.zeros(n_terms, dtype=np.int64)
    pos_counts = np.zeros(n_terms, dtype=np.int64)
    for mapping, (_, _, per_term, _, pos_per_term) in zip(maps, kept):
        counts[mapping] += per_term  # a part names each term once: no repeated index
        if pos_per_term is not None:
            pos_counts[mapping] += pos_per_term
    ptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    out_slots = np.empty(int(ptr[-1]), dtype=np.int32)
    out_data = np.empty(int(ptr[-1]), dtype=dtype)
    filled = ptr[:-1].copy()  # per term: where the next part's entries go
    pos_ptr = out_pos = pos_filled = None
    if positions:
        pos_ptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(pos_counts, out=pos_ptr[1:])
        out_pos = np.empty(int(pos_ptr[-1]), dtype=np.int32)
        pos_filled = pos_ptr[:-1].copy()
    for mapping, (slots, data, per_term, part_pos, pos_per_term) in zip(maps, kept):
        # a part's entries of one term are a run, and land as a run: shift each run by where its term goes
        dest = np.repeat(filled[mapping] - (np.cumsum(per_term) - per_term), per_term) + np.arange(slots.size)
        out_slots[dest] = slots
        out_data[dest] = data
        filled[mapping] += per_term
        if positions:
            assert out_pos is not None and pos_filled is not None and part_pos is not None
            assert pos_per_term is not None
            starts = np.cumsum(pos_per_term) - pos_per_term
            out_pos[np.repeat(pos_filled[mapping] - starts, pos_per_term) + np.arange(part_pos.size)] = part_pos
            pos_filled[mapping] += pos_per_term
    return Postings(terms, ptr, out_slots, out_data, pos_ptr, out_pos, ids=ids)


def batch(slots: np.ndarray, tokens: list[str], token_doc: np.ndarray, data: np.ndarray | None,
          positions: np.ndarray | None, dtype: Any) -> Postings:
    """The postings of a batch of new documents, in one pass: ``tokens`` are all their terms, document after
    document, ``token_doc`` the document (an index into ``slots``, ascending) of each; with ``data`` (weights),
    each token is one entry of that weight (a document names a token once); else a document's repeats of a term
    are one entry whose frequency is their number, and ``positions`` (text fields) their positions."""
    terms = list(dict.fromkeys(tokens))  # in the order they first appear
    ids = dict(zip(terms, range(len(terms))))
    tids = np.fromiter(map(ids.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    # by term; within a term by document, then position (a stable sort: numpy's radix sort for 16-bit keys)
    order = np.argsort(tids.astype(np.uint16) if len(terms) <= 1 << 16 else tids, kind="stable")
    s_tids, s_docs = tids[order], token_doc[order]
    if data is not None:
        entry_tids, entry_docs, entry_data = s_tids, s_docs, data[order].astype(dtype)
    else:
        new = np.ones(s_tids.size, dtype=np.bool_)
        new[1:] = (s_tids[1:] != s_tids[:-1]) | (s_docs[1:] != s_docs[:-1])
        firsts = np.flatnonzero(new)
        entry_tids, entry_docs = s_tids[firsts], s_docs[firsts]
        entry_data = np.diff(np.append(firsts, s_tids.size)).astype(dtype)
    ptr = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(entry_tids, minlength=len(terms)), out=ptr[1:])
    entry_slots = slots[entry_docs].astype(np.int32)
    if positions is None:
        return Postings(terms, ptr, entry_slots, entry_data, ids=ids)
    pos_ptr = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(s_tids, minlength=len(terms)), out=pos_ptr[1:])
    return Postings(terms, ptr, entry_slots, entry_data, pos_ptr, positions[order].astype(np.int32),
                    ids=ids)


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


class _Parts:
    """A field's postings as immutable parts in slot order (a later part holds later slots only): the saved or last
    fully merged base first, then one part per batch of new documents. After each batch the two newest parts merge
    while the older holds at most ``MERGE_RATIO`` (> 1) times the newer's entries: each part then holds more than
    that many times the next one's entries, so a field keeps O(log n) parts whatever the batch sizes, and each entry
    is copied O(log n) times (a merge concatenates per term, without sorting). Removed slots stay in the parts,
    masked out by the field's per-slot arrays, until a merge drops them."""

    dtype: Any = np.int32
    positions = False

    def __init__(self) -> None:
        self.parts: list[Postings] = []
        self.dead = 0  # removed slots whose entries a part may still hold (all dropped by the next full merge)

    def live(self) -> np.ndarray:
        """Per slot: does it (still) hold this field."""
        raise NotImplementedError

    def live_at(self, slots: np.ndarray) -> np.ndarray:
        """``live()[slots]``, without a pass over every slot."""
        raise NotImplementedError

    @property
    def base(self) -> Postings:
        """The field as one postings (merged first): what the segment saves."""
        self.merge()
        return self.parts[0] if self.parts else Postings.empty(self.dtype, positions=self.positions)

    def _append(self, part: Postings) -> None:
        parts = [*self.parts, part]
        while len(parts) >= 2 and parts[-2].size <= MERGE_RATIO * parts[-1].size:
            parts[-2:] = [concat(parts[-2:], self.live() if self.dead else None, self.dtype, self.positions)]
            if parts[-1].size >= RELEASE_AFTER:
                release_memory()
        self.parts = parts  # one assignment: a reader outside the index lock (a sort) sees the old list or this one

    def merge(self) -> None:
        """Merge every part into one and drop removed slots from it (scores do not change)."""
        if len(self.parts) > 1 or (self.parts and self.dead):
            self.parts = [concat(self.parts, self.live(), self.dtype, self.positions)]
            release_memory()
        self.dead = 0

    def _spans(self, term: str) -> list[tuple[Postings, int, int, int]]:
        """(part, term id, first entry, end entry) of each part holding ``term``."""
        out = []
        for part in self.parts:
            tid = part.ids.get(term)
            if tid is not None:
                lo, hi = int(part.ptr[tid]), int(part.ptr[tid + 1])
                if hi > lo:
                    out.append((part, tid, lo, hi))
        return out

    def _entries(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """The live slots holding ``term`` (ascending) and their data."""
        spans = self._spans(term)
        if not spans:
            return EMPTY_SLOTS, np.empty(0, dtype=self.dtype)
        if len(spans) == 1:
            part, _, lo, hi = spans[0]
            slots, data = part.slots[lo:hi], part.data[lo:hi]
        else:
            slots = np.concatenate([part.slots[lo:hi] for part, _, lo, hi in spans])
            data = np.concatenate([part.data[lo:hi] for part, _, lo, hi in spans])
        if self.dead:
            keep = self.live_at(slots)
            slots, data = slots[keep], data[keep]
        return slots, data

    def terms(self) -> Iterator[str]:
        """Every term with at least one entry (maybe removed), in the order they were first written."""
        if len(self.parts) == 1:
            yield from self.parts[0].terms
            return
        seen: set[str] = set()
        for part in self.parts:
            for term in part.terms:
                if term not in seen:
                    seen.add(term)
                    yield term


class TermField(_Parts):
    """Postings for a text field (analysed tokens with positions, BM25 with norms) or a keyword field (exact values,
    no norms: Lucene reads norm 1 and counts each distinct value once)."""

    def __init__(self, *, norms: bool) -> None:
        super().__init__()
        self.norms = norms
        self.positions = norms
        self.norm_bytes = np.zeros(0, dtype=np.uint8)
        self.length = np.full(0, -1, dtype=np.int32)  # per slot: length (keyword: distinct values); -1 none/removed
        self.doc_count = 0
        self.sum_ttf = 0

    @classmethod
    def restored(cls, norms: bool, base: Postings, norm_bytes: np.ndarray, length: np.ndarray) -> TermField:
        field = cls(norms=norms)
        field.parts = [base]
        field.norm_bytes, field.length = norm_bytes, length
        live = length[length >= 0]
        field.doc_count, field.sum_ttf = int(live.size), int(live.sum(dtype=np.int64))
        return field

    def live(self) -> np.ndarray:
        return self.length >= 0

    def live_at(self, slots: np.ndarray) -> np.ndarray:
        return self.length[slots] >= 0

    def add(self, slot: int, tokens: list[str], positions: list[int] | None = None) -> None:
        """Index ``tokens`` at ``slot`` (a new one); ``positions`` (text fields) are their positions, for phrases."""
        self.add_many([slot], [tokens], None if positions is None else [positions])

    def add_many(self, slots: list[int], tokens: list[list[str]], positions: list[list[int]] | None = None) -> None:
        """Index the ``tokens`` of each of ``slots`` (new ones, ascending, after every slot already indexed), in one
        pass; ``positions`` (text fields) are their positions (default: 0, 1, 2 ...)."""
        if not slots:
            return
        at = np.asarray(slots, dtype=np.int64)
        if not self.norms:  # a keyword field holds each distinct value of a document once
            tokens = [list(dict.fromkeys(values)) for values in tokens]
        counts = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        flat = list(chain.from_iterable(tokens))
        token_doc = np.repeat(np.arange(len(tokens), dtype=np.int64), counts)
        where = None
        if self.norms:
            where = (np.fromiter(chain.from_iterable(positions), dtype=np.int64, count=len(flat))
                     if positions is not None else np.arange(len(flat), dtype=np.int64) - np.repeat(
                         np.cumsum(counts) - counts, counts))
        ones = None if self.norms else np.ones(len(flat), dtype=np.int32)
        part = batch(at, flat, token_doc, ones, where, np.int32)
        top = int(at[-1])
        self.norm_bytes = fit(self.norm_bytes, top, 0)
        self.length = fit(self.length, top, -1)
        self.norm_bytes[at] = [similarity.int_to_byte4(n) for n in counts.tolist()] if self.norms else 1
        self.length[at] = counts
        self.doc_count += len(slots)
        self.sum_ttf += int(counts.sum())
        if part.terms:
            self._append(part)

    def remove(self, slot: int) -> None:
        if slot >= self.length.shape[0] or self.length[slot] < 0:
            return
        self.doc_count -= 1
        self.sum_ttf -= int(self.length[slot])
        self.length[slot] = -1
        self.dead += 1

    def slots_with_field(self) -> np.ndarray:
        return np.flatnonzero(self.length >= 0)

    def slot_values(self, slot: int) -> list[str]:
        """The terms of one slot (a keyword field's values), for sorting."""
        if slot >= self.length.shape[0] or self.length[slot] < 0:
            return []
        for part in self.parts:  # a document's entries are all in one part
            if part._forward is None:
                order = np.argsort(part.slots, kind="stable")
                part._forward = np.asarray(part.slots)[order], part.term_ids()[order]
            slots, tids = part._forward
            lo, hi = np.searchsorted(slots, [slot, slot + 1])
            if hi > lo:
                return [part.terms[t] for t in tids[lo:hi].tolist()]
        return []

    def posting(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """The live slots holding ``term`` (ascending) and its frequency in each."""
        return self._entries(term)

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
        keys = [np.empty(0, dtype=np.int64)]
        for part, tid, lo, hi in self._spans(term):  # parts in slot order: the keys ascend
            assert part.pos_ptr is not None and part.positions is not None
            slots = np.asarray(part.slots[lo:hi], dtype=np.int64)
            freqs = np.asarray(part.data[lo:hi], dtype=np.int64)
            at = np.searchsorted(candidates, slots)
            hit = (at < candidates.size) & (candidates[np.minimum(at, candidates.size - 1)] == slots)
            starts = int(part.pos_ptr[tid]) + np.concatenate([[0], np.cumsum(freqs)[:-1]])
            pos = np.asarray(part.positions)[ragged(starts[hit], freqs[hit])].astype(np.int64)
            keys.append((np.repeat(slots[hit], freqs[hit]) << 32) | pos)
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



class FeatureField(_Parts):
    """A ``rank_features`` (or ``rank_feature``, token "") field: per token, its slots and decoded weights."""

    dtype = np.float32

    def __init__(self) -> None:
        super().__init__()
        self.has = np.zeros(0, dtype=np.bool_)

    @classmethod
    def restored(cls, base: Postings, has: np.ndarray) -> FeatureField:
        field = cls()
        field.parts, field.has = [base], has
        return field

    def live(self) -> np.ndarray:
        return self.has

    def live_at(self, slots: np.ndarray) -> np.ndarray:
        return self.has[slots]

    def add(self, slot: int, features: dict[str, float]) -> None:
        self.add_many([slot], [features])

    def add_many(self, slots: list[int], features: list[dict[str, float]]) -> None:
        """Index the ``features`` (token -> weight) of each of ``slots`` (new ones, ascending, after every slot
        already indexed), in one pass."""
        if not slots:
            return
        at = np.asarray(slots, dtype=np.int64)
        counts = np.fromiter(map(len, features), dtype=np.int64, count=len(features))
        flat = list(chain.from_iterable(features))
        weights = np.fromiter(chain.from_iterable(f.values() for f in features), dtype=np.float32, count=len(flat))
        part = batch(at, flat, np.repeat(np.arange(len(features), dtype=np.int64), counts),
                        similarity.decode_feature(weights), None, np.float32)
        self.has = fit(self.has, int(at[-1]), False)
        self.has[at] = True
        if part.terms:
            self._append(part)

    def remove(self, slot: int) -> None:
        if slot < self.has.shape[0] and self.has[slot]:
            self.has[slot] = False
            self.dead += 1

    def slots_with_field(self) -> np.ndarray:
        return np.flatnonzero(self.has)

    def values(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """The live slots holding ``token`` (ascending) and their decoded weights."""
        return self._entries(token)


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

