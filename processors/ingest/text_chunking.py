"""``text_chunking``: split long text fields into passages (a list of strings) ahead of embedding.

Differences from neural-search: unknown parameters inside the algorithm object are rejected (neural-search ignores
them), and the tokens of ``fixed_token_length`` come from the regular-expression tokenizers in ``chunkers``.
"""

from __future__ import annotations

from typing import Any

from processors import chunkers
from processors.config import ConfigReader
from processors.document import IngestDocument
from processors.ingest.base import CommonOptions, IngestProcessor, RunContext


class TextChunkingProcessor(IngestProcessor):
    TYPE = "text_chunking"

    def __init__(self, options: CommonOptions, field_map: dict[str, Any], chunker: chunkers.Chunker,
                 max_chunk_limit: int, ignore_missing: bool) -> None:
        self.options = options
        self.field_map = field_map
        self.chunker = chunker
        self.max_chunk_limit = max_chunk_limit
        self.ignore_missing = ignore_missing

    @classmethod
    def from_config(cls, r: ConfigReader, options: CommonOptions) -> TextChunkingProcessor:
        field_map = r.map("field_map")
        algorithm = r.map("algorithm")
        ignore_missing = r.boolean("ignore_missing", False)
        if len(algorithm) > 1:
            raise r.illegal(f"Unable to create {cls.TYPE} processor as [algorithm] contains multiple algorithms",
                            "algorithm")
        name, params = next(iter(algorithm.items())) if algorithm else ("fixed_token_length", {})
        if not isinstance(params, dict):
            raise r.illegal(f"Unable to create {cls.TYPE} processor as parameters for [{name}] algorithm must be an "
                            f"object", "algorithm")
        chunker_cls = chunkers.CHUNKERS.get(name)
        if chunker_cls is None:
            raise r.illegal(f"Chunking algorithm [{name}] is not supported. Supported chunking algorithms are "
                            f"[{', '.join(chunkers.CHUNKERS)}]", "algorithm")
        unknown = sorted(set(params) - chunker_cls.PARAMS)
        if unknown:
            raise r.illegal(f"[{name}] algorithm doesn't support parameters {unknown}; supported: "
                            f"{sorted(chunker_cls.PARAMS)}", "algorithm")
        try:
            limit = chunkers.parse_max_chunk_limit(params)
            chunker = chunker_cls(params)
        except chunkers.ChunkerError as exc:
            raise r.illegal(str(exc), "algorithm") from None
        return cls(options, field_map, chunker, limit, ignore_missing)

    async def execute(self, docs: list[IngestDocument], ctx: RunContext) -> list[Exception | None]:
        errors: list[Exception | None] = []
        for doc in docs:
            try:
                state = {"limit": self.max_chunk_limit, "left": _count_strings(doc.source, self.field_map)}
                self._chunk_map(doc.source, self.field_map, state)
                errors.append(None)
            except Exception as exc:
                errors.append(exc)
        return errors

    def _chunk_map(self, node: dict[str, Any], field_map: dict[str, Any], state: dict[str, int]) -> None:
        for key, target in field_map.items():
            value = node.get(key)
            if isinstance(target, dict):
                items = value if isinstance(value, list) else [value]
                for item in items:
                    if isinstance(item, dict):
                        self._chunk_map(item, target, state)
                continue
            if value is None and self.ignore_missing:
                continue
            node[str(target)] = self._chunk_leaf(value, state)

    def _chunk_leaf(self, value: Any, state: dict[str, int]) -> list[str]:
        if isinstance(value, str):
            return self._chunk_string(value, state) if value.strip() else []
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            out: list[str] = []
            for text in value:
                out.extend(self._chunk_string(text, state))
            return out
        if value is None:
            return []
        raise chunkers.ChunkerError("field in field_map must be a string, a list of strings or an object")

    def _chunk_string(self, text: str, state: dict[str, int]) -> list[str]:
        if not text:
            return []
        chunks = self.chunker.chunk(text, state["limit"], state["left"])
        state["left"] -= 1
        if state["limit"] != chunkers.DISABLED_MAX_CHUNK_LIMIT:
            state["limit"] -= len(chunks)
        return chunks


def _count_strings(node: Any, field_map: dict[str, Any]) -> int:
    count = 0
    if not isinstance(node, dict):
        return 0
    for key, target in field_map.items():
        value = node.get(key)
        if isinstance(target, dict):
            for item in (value if isinstance(value, list) else [value]):
                count += _count_strings(item, target)
        elif isinstance(value, str):
            count += 1 if value else 0
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            count += sum(1 for v in value if v)
    return count
