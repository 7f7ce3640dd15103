"""The document an ingest pipeline works on: its target index, its id and its ``_source``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_ABSENT = object()


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

    def has(self, path: str) -> bool:
        return self.get(path, _ABSENT) is not _ABSENT

    def set(self, path: str, value: Any) -> None:
        parts = path.split(".")
        node = self.source
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value

    def remove(self, path: str) -> Any:
        parts = path.split(".")
        parent = self.get(".".join(parts[:-1])) if len(parts) > 1 else self.source
        if isinstance(parent, dict):
            return parent.pop(parts[-1], None)
        return None
