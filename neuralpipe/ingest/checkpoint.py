"""The resume checkpoint: which input records are finished.

A record is marked only once the target acknowledged the document (or it was dead-lettered
with a permanent error), and the file is replaced atomically, so after a crash or a kill the
file names a subset of what the index holds. A re-run skips those records; anything acknowledged
but not yet written to the file is sent again under the same stable id and simply overwrites
itself: no duplicates either way.

A checkpoint only skips a record it has seen. It is keyed one of two ways:

- ``line`` (a file): 1-based line numbers, guarded by a fingerprint of the file's first bytes (an input that was
  replaced is refused; one that was appended to keeps its head and resumes). In memory and on disk, sorted merged
  ranges, so the size follows the number of gaps: a 10-million-line input that went well is one range.
- ``record`` (stdin, which has no file to fingerprint): a digest of each record's id and content, so a different
  stream into the same index skips nothing it did not send before. Digests are appended to ``<name>.seen`` beside the
  JSON file (one hex digest a line), never rewritten.

The file also records how document ids were made (``ids``, from :func:`readers.open_input`): a re-run that would
make them differently would index every record a second time, so it is refused, even with ``restart``, unless the
index is new.

File format (JSON): ``{"version": 2, "input", "index", "ids", "keyed_by", "fingerprint"?, "done_count": N,
"done": [[first, last], ...]}``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuralpipe.ingest.readers import DEFAULT_IDS, Item, Record, describe_ids, id_field_option

VERSION = 2
KEYED_BY = ("line", "record")


class CheckpointMismatch(Exception):
    """The checkpoint file belongs to another input or index."""


def record_digest(item: Item) -> bytes:
    """The identity of a record: its id and content (or, for a line that did not parse, its text and reason)."""
    if isinstance(item, Record):
        what: Any = ["record", item.id, item.source]
    else:
        what = ["unparsed", item.raw, item.reason]
    canonical = json.dumps(what, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).digest()[:16]


def merge_ranges(ranges: list[list[int]], offsets: Iterable[int]) -> list[list[int]]:
    """Sorted, disjoint, merged inclusive ranges covering ``ranges`` and ``offsets``."""
    items = sorted([[a, b] for a, b in ranges] + [[o, o] for o in offsets])
    merged: list[list[int]] = []
    for first, last in items:
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return merged


def file_fingerprint(path: Path, head_bytes: int = 65536) -> dict[str, Any]:
    """Size and a hash of the first bytes: an input that was appended to keeps its head, a replaced one does not."""
    with open(path, "rb") as f:
        head = f.read(head_bytes)
    return {"size": path.stat().st_size, "head_len": len(head), "head_sha256": hashlib.sha256(head).hexdigest()}


def same_input(path: Path, old: dict[str, Any]) -> bool:
    """Does ``path`` still start with the bytes the fingerprint ``old`` saw (and is it no shorter)?"""
    now = file_fingerprint(path, int(old.get("head_len", 65536)))
    return now["head_sha256"] == old.get("head_sha256") and now["size"] >= int(old.get("size", 0))


@dataclass
class Checkpoint:
    path: Path | None
    input_name: str = field(kw_only=True)
    index: str = field(kw_only=True)
    input_path: Path | None = field(default=None, kw_only=True)
    ids: str = field(default=DEFAULT_IDS, kw_only=True)
    keyed_by: str = field(default="line", kw_only=True)
    _fingerprint: dict[str, Any] | None = field(default=None, init=False)
    _ranges: list[list[int]] = field(default_factory=list, init=False)
    _starts: list[int] = field(default_factory=list, init=False)
    _new: set[int] = field(default_factory=set, init=False)
    _seen: set[bytes] = field(default_factory=set, init=False)
    _new_seen: list[bytes] = field(default_factory=list, init=False)
    _inflight: dict[int, bytes] = field(default_factory=dict, init=False)
    _truncate_seen: bool = field(default=False, init=False)
    _dirty: bool = field(default=False, init=False)
    _last_flush: float = field(default=0.0, init=False)

    @classmethod
    def open(cls, path: Path | None, *, input_name: str, index: str, restart: bool = False, new_index: bool = False,
             input_path: Path | None = None, ids: str = DEFAULT_IDS, keyed_by: str = "line") -> Checkpoint:
        """``restart``: forget what was done, but keep making ids the recorded way (the index holds those).
        ``new_index``: the index was just created, so nothing in it can be duplicated: start over freely.
        With ``input_path``, the file's fingerprint guards against resuming over a replaced input."""
        cp = cls(path, input_name=input_name, index=index, input_path=input_path, ids=ids, keyed_by=keyed_by)
        if path is None or not path.exists():
            cp._truncate_seen = True  # digests left without their checkpoint file name nothing this index holds
            return cp
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        same = data.get("index") == index and data.get("input") == input_name
        if same and not new_index:
            cp._check_ids(data.get("ids"), restart)
        if restart or new_index:
            # forget the old state on disk at once: a kill before the first acknowledgement must not
            # let a later run trust records that the (new) index never received
            cp._dirty = cp._truncate_seen = True
            cp.flush()
            return cp
        if not same:
            raise CheckpointMismatch(
                f"checkpoint [{path}] is for input [{data.get('input')}] and index [{data.get('index')}], "
                f"not [{input_name}] and [{index}]; pass --restart to start over or --checkpoint to use another file")
        if data.get("keyed_by", "line") != keyed_by:
            raise CheckpointMismatch(f"checkpoint [{path}] is keyed by {data.get('keyed_by')}, not {keyed_by}; "
                                     "pass --restart to start over")
        old = data.get("fingerprint")
        if input_path is not None and old and not same_input(input_path, old):
            raise CheckpointMismatch(
                f"input [{input_name}] changed since checkpoint [{path}] was written (its first bytes differ or it "
                "shrank), so its line numbers no longer name the same documents; pass --restart to start over")
        cp._set_ranges(merge_ranges([[int(a), int(b)] for a, b in data.get("done", [])], ()))
        if keyed_by == "record":
            cp._seen = cp._read_seen()
        return cp

    def _check_ids(self, recorded: str | None, restart: bool) -> None:
        if recorded is None:  # written before checkpoints recorded it (version 1)
            if not restart:
                raise CheckpointMismatch(
                    f"checkpoint [{self.path}] was written by an older neuralpipe and does not record how document "
                    "ids were made; pass --restart to send every record again")
            return
        if recorded != self.ids:
            raise CheckpointMismatch(
                f"index [{self.index}] holds the records of [{self.input_name}] with ids from "
                f"{describe_ids(recorded)} (checkpoint [{self.path}]), but this run makes ids from "
                f"{describe_ids(self.ids)}, which would index every record twice; pass --id-field "
                f"{id_field_option(recorded)} to keep the old ids, or ingest into a new index")

    @property
    def seen_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.stem + ".seen")

    def _read_seen(self) -> set[bytes]:
        seen: set[bytes] = set()
        if self.seen_path is None or not self.seen_path.exists():
            return seen
        with open(self.seen_path, encoding="ascii", errors="replace") as f:
            for line in f:
                text = line.strip()
                if len(text) == 32:  # a torn last line (killed mid-write) is not a record seen
                    try:
                        seen.add(bytes.fromhex(text))
                    except ValueError:
                        continue
        return seen

    def track(self, items: Iterable[Item]) -> Iterator[Item]:
        """Pass the input's items through; a record-keyed checkpoint learns each line's record identity here
        (without it, it never skips anything)."""
        if self.keyed_by == "line":
            yield from items
            return
        for item in items:
            self._inflight[item.offset] = record_digest(item)
            yield item

    def _set_ranges(self, ranges: list[list[int]]) -> None:
        self._ranges = ranges
        self._starts = [r[0] for r in ranges]

    def _merge(self) -> None:
        if self._new:
            self._set_ranges(merge_ranges(self._ranges, self._new))
            self._new.clear()

    def is_done(self, offset: int) -> bool:
        if self.keyed_by == "record":
            digest = self._inflight.get(offset)
            if digest is not None and digest in self._seen:
                del self._inflight[offset]
                return True
            return False
        if offset in self._new:
            return True
        i = bisect.bisect_right(self._starts, offset) - 1
        return i >= 0 and offset <= self._ranges[i][1]

    def mark(self, offset: int) -> None:
        if self.keyed_by == "record":
            digest = self._inflight.pop(offset, None)
            if digest is not None and digest not in self._seen:
                self._seen.add(digest)
                self._new_seen.append(digest)
                self._dirty = True
            return
        if not self.is_done(offset):
            self._new.add(offset)
            self._dirty = True
            if len(self._new) >= 100_000:  # keep the unmerged part small on huge inputs
                self._merge()

    @property
    def done_count(self) -> int:
        if self.keyed_by == "record":
            return len(self._seen)
        return sum(b - a + 1 for a, b in self._ranges) + len(self._new)

    @property
    def done_ranges(self) -> list[list[int]]:
        self._merge()
        return [list(r) for r in self._ranges]

    def flush(self, *, min_interval: float = 0.0) -> None:
        """Write the file atomically (temp file, fsync, rename) if anything changed; append new record digests."""
        if self.path is None or not self._dirty:
            return
        now = time.monotonic()
        if min_interval and now - self._last_flush < min_interval:
            return
        self._merge()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._flush_seen(self.path.with_name(self.path.stem + ".seen"))
        body: dict[str, Any] = {"version": VERSION, "input": self.input_name, "index": self.index, "ids": self.ids,
                                "keyed_by": self.keyed_by}
        if self.input_path is not None:
            if self._fingerprint is None:  # taken once: the input as this run read it
                self._fingerprint = file_fingerprint(self.input_path)
            body["fingerprint"] = self._fingerprint
        body.update({"done_count": self.done_count, "done": self._ranges})
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._dirty = False
        self._last_flush = now

    def _flush_seen(self, seen_path: Path) -> None:
        if self._truncate_seen:
            seen_path.unlink(missing_ok=True)
            self._truncate_seen = False
        if not self._new_seen:
            return
        with open(seen_path, "a", encoding="ascii") as f:
            f.write("".join(d.hex() + "\n" for d in self._new_seen))
            f.flush()
            os.fsync(f.fileno())
        self._new_seen.clear()
