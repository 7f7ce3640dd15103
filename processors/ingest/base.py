"""What every ingest processor shares: the common options and the batch execution contract."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from processors.condition import Condition
from processors.document import IngestDocument
from processors.mlclient import MLClient

# lookup(index, ids) -> {id: stored _source}; serves skip_existing
Lookup = Callable[[str, list[str]], Awaitable[dict[str, dict[str, Any]]]]


@dataclass
class CommonOptions:
    tag: str | None = None
    description: str | None = None
    ignore_failure: bool = False
    on_failure: list[IngestProcessor] = field(default_factory=list)
    condition: Condition | None = None
    raw_if: Any = None


@dataclass
class RunContext:
    ml: MLClient
    lookup: Lookup | None = None


class IngestProcessor:
    """Subclasses set ``TYPE`` and implement ``execute``: run on a batch of documents (mutated in place), returning
    one exception or None per document."""

    TYPE: ClassVar[str] = ""
    options: CommonOptions

    @property
    def tag(self) -> str | None:
        return self.options.tag

    async def execute(self, docs: list[IngestDocument], ctx: RunContext) -> list[Exception | None]:
        raise NotImplementedError

    async def prepare(self, ml: MLClient) -> None:
        """Resolve model names to ids (once, before the first run)."""

    def model_refs(self) -> list[str]:
        """Model ids or names this processor uses (for export and mapping)."""
        return []
