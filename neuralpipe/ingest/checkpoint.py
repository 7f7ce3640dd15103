"""The resume checkpoint: which input offsets are finished.

An offset is marked only once the target acknowledged the document (or it was dead-lettered
with a permanent error), and the file is replaced atomically, so after a crash or a kill the
file names a subset of what the index holds. A re-run skips those offsets; anything acknowledged
but not yet written to the file is sent again under the same stable id and simply overwrites
itself: no duplicates either way.

File format (JSON): ``{"version": 1, "input": ..., "index": ..., "done_count": N, "done": [[first, last], ...]}``
with inclusive ranges of 1-based line numbers. In memory the state is the same sorted, merged
ranges (plus the offsets marked since the last merge), so its size follows the number of gaps,
not the number of documents: a 10-million-line input that went well is one range.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

VERSION = 1


class CheckpointMismatch(Exception):
    """The checkpoint file belongs to another input or index."""


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


class Checkpoint:
    def __init__(self, path: Path | None, *, input_name: str, index: str,
                 input_path: Path | None = None) -> None:
        self.path = path
        self.input_name = input_name
        self.index = index
        self.input_path = input_path
        self._fingerprint: dict[str, Any] | None = None
        self._ranges: list[list[int]] = []
        self._starts: list[int] = []
        self._new: set[int] = set()
        self._dirty = False
        self._last_flush = 0.0

    @classmethod
    def open(cls, path: Path | None, *, input_name: str, index: str, restart: bool = False,
             input_path: Path | None = None) -> Checkpoint:
        """With ``input_path``, the file's fingerprint guards against resuming over a replaced input."""
        cp = cls(path, input_name=input_name, index=index, input_path=input_path)
        if path is None or not path.exists():
            return cp
        if restart:
            # forget the old state on disk at once: a kill before the first acknowledgement must not
            # let a later run trust offsets that the (new) index never received
            cp._dirty = True
            cp.flush()
            return cp
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if data.get("index") != index or data.get("input") != input_name:
            raise CheckpointMismatch(
                f"checkpoint [{path}] is for input [{data.get('input')}] and index [{data.get('index')}], "
                f"not [{input_name}] and [{index}]; pass --restart to start over or --checkpoint to use another file")
        old = data.get("fingerprint")
        if input_path is not None and old and not same_input(input_path, old):
            raise CheckpointMismatch(
                f"input [{input_name}] changed since checkpoint [{path}] was written (its first bytes differ or it "
                "shrank), so its line numbers no longer name the same documents; pass --restart to start over")
        cp._set_ranges(merge_ranges([[int(a), int(b)] for a, b in data.get("done", [])], ()))
        return cp

    def _set_ranges(self, ranges: list[list[int]]) -> None:
        self._ranges = ranges
        self._starts = [r[0] for r in ranges]

    def _merge(self) -> None:
        if self._new:
            self._set_ranges(merge_ranges(self._ranges, self._new))
            self._new.clear()

    def is_done(self, offset: int) -> bool:
        if offset in self._new:
            return True
        i = bisect.bisect_right(self._starts, offset) - 1
        return i >= 0 and offset <= self._ranges[i][1]

    def mark(self, offset: int) -> None:
        if not self.is_done(offset):
            self._new.add(offset)
            self._dirty = True
            if len(self._new) >= 100_000:  # keep the unmerged part small on huge inputs
                self._merge()

    @property
    def done_count(self) -> int:
        return sum(b - a + 1 for a, b in self._ranges) + len(self._new)

    @property
    def done_ranges(self) -> list[list[int]]:
        self._merge()
        return [list(r) for r in self._ranges]

    def flush(self, *, min_interval: float = 0.0) -> None:
        """Write the file atomically (temp file, fsync, rename) if anything changed."""
        if self.path is None or not self._dirty:
            return
        now = time.monotonic()
        if min_interval and now - self._last_flush < min_interval:
            return
        self._merge()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body: dict[str, Any] = {"version": VERSION, "input": self.input_name, "index": self.index}
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
