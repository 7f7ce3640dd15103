"""The resume checkpoint: which input offsets are finished.

An offset is marked only once the target acknowledged the document (or it was dead-lettered
with a permanent error), and the file is replaced atomically, so after a crash or a kill the
file names a subset of what the index holds. A re-run skips those offsets; anything acknowledged
but not yet written to the file is sent again under the same stable id and simply overwrites
itself: no duplicates either way.

File format (JSON): ``{"version": 1, "input": ..., "index": ..., "done": [[first, last], ...]}``
with inclusive ranges of 1-based line numbers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

VERSION = 1


class CheckpointMismatch(Exception):
    """The checkpoint file belongs to another input or index."""


def _to_ranges(offsets: Iterable[int]) -> list[list[int]]:
    ranges: list[list[int]] = []
    for o in sorted(offsets):
        if ranges and o == ranges[-1][1] + 1:
            ranges[-1][1] = o
        elif not ranges or o > ranges[-1][1]:
            ranges.append([o, o])
    return ranges


def _from_ranges(ranges: Iterable[Iterable[int]]) -> set[int]:
    done: set[int] = set()
    for first, last in ranges:
        done.update(range(int(first), int(last) + 1))
    return done


class Checkpoint:
    def __init__(self, path: Path | None, *, input_name: str, index: str) -> None:
        self.path = path
        self.input_name = input_name
        self.index = index
        self.done: set[int] = set()
        self._dirty = False
        self._last_flush = 0.0

    @classmethod
    def open(cls, path: Path | None, *, input_name: str, index: str, restart: bool = False) -> "Checkpoint":
        cp = cls(path, input_name=input_name, index=index)
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
        cp.done = _from_ranges(data.get("done", []))
        return cp

    def is_done(self, offset: int) -> bool:
        return offset in self.done

    def mark(self, offset: int) -> None:
        if offset not in self.done:
            self.done.add(offset)
            self._dirty = True

    def flush(self, *, min_interval: float = 0.0) -> None:
        """Write the file atomically (temp file, fsync, rename) if anything changed."""
        if self.path is None or not self._dirty:
            return
        now = time.monotonic()
        if min_interval and now - self._last_flush < min_interval:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"version": VERSION, "input": self.input_name, "index": self.index,
                "done_count": len(self.done), "done": _to_ranges(self.done)}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._dirty = False
        self._last_flush = now
