"""The dead-letter file: one JSON line per document that did not make it into the index.

Each line says where the document came from (``line``), what it was (``id`` and ``document``,
or ``raw`` for a line that could not be parsed), at which stage it failed (``parse``,
``pipeline`` or ``bulk``), the OpenSearch-shaped ``error`` with ``status``, and whether a re-run
will try it again (``retryable``: 429 and 5xx; those offsets stay out of the checkpoint).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

STAGES = ("parse", "pipeline", "bulk")


def is_retryable(status: int | None) -> bool:
    return status is not None and (status == 429 or status >= 500)


@dataclass
class Failure:
    line: int
    stage: str
    reason: str
    error_type: str
    status: int | None = None
    id: str | None = None
    document: dict[str, Any] | None = None
    raw: str | None = None
    retryable: bool = field(default=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "stage": self.stage, "id": self.id,
                               "status": self.status, "retryable": self.retryable,
                               "error": {"type": self.error_type, "reason": self.reason}}
        if self.document is not None:
            out["document"] = self.document
        if self.raw is not None:
            out["raw"] = self.raw
        out["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return out


class DeadLetter:
    """Appends failures to a JSONL file (opened lazily: no failures, no file)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self.count = 0
        self.by_stage: dict[str, int] = {s: 0 for s in STAGES}

    def write(self, failure: Failure) -> None:
        self.count += 1
        self.by_stage[failure.stage] = self.by_stage.get(failure.stage, 0) + 1
        if self.path is None:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(json.dumps(failure.to_json(), ensure_ascii=False) + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
