"""The document an ingest pipeline works on: its target index, its id and its ``_source``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class IngestDocument:
    """``source`` is mutated in place by processors. Paths are dotted (``book.title``) and walk nested objects."""

    index: str
    id: str | None
    source: dict[str, Any] = field(default_factory=dict)

    def get(self, path: str, default: Any = None) -> Any:
        node: Any = self.source
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node
