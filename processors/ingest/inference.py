"""The shared inference base of text_embedding and sparse_encoding: walk ``field_map`` over each document, batch the
texts (``batch_size`` documents per predict call, texts sorted by length, order restored), write results back.

field_map semantics (neural-search's): a key is a source field (``a.b`` walks objects); a string value names the
output field next to the source field; a map value descends into an object (or into each object of a list).
A string source gives one result; a list of strings gives a list of ``{<list_key>: result}`` objects (a nested
field); blank strings and missing fields are skipped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from opensearch_contract.errors import IllegalArgument
from processors.config import ConfigReader
from processors.document import IngestDocument
from processors.ingest.base import CommonOptions, IngestProcessor, RunContext
from processors.mlclient import MLClient

Path = tuple[Any, ...]
MAX_CONCURRENT_BATCHES = 8


@dataclass
class Slot:
    """One text to infer: where it came from and where its result goes (absolute paths into _source)."""

    text: str
    source_path: Path
    target_path: Path
    list_index: int | None = None  # position inside a list input (result wrapped as {list_key: result})


def _split_key(key: str, target: Any) -> tuple[str, Any]:
    if "." in key:
        head, rest = key.split(".", 1)
        return head, {rest: target}
    return key, target


def _target_path(parent: Path, target: str) -> Path:
    return parent + tuple(target.split("."))


def collect_slots(field_map: dict[str, Any], node: Any, parent: Path, out: list[Slot],
                  list_outputs: list[tuple[Path, int]]) -> None:
    if not isinstance(node, dict):
        return
    for raw_key, raw_target in field_map.items():
        key, target = _split_key(raw_key, raw_target)
        value = node.get(key)
        path = parent + (key,)
        if value is None:
            continue
        if isinstance(target, dict):
            if isinstance(value, dict):
                collect_slots(target, value, path, out, list_outputs)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        collect_slots(target, item, path + (i,), out, list_outputs)
            else:
                raise IllegalArgument(f"map type field [{key}] is neither string nor nested type, cannot process it")
            continue
        tpath = _target_path(parent, str(target))
        if isinstance(value, str):
            if value.strip():
                out.append(Slot(value, path, tpath))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if item is None:
                    raise IllegalArgument(f"list type field [{key}] has null, cannot process it")
                if isinstance(item, list):
                    raise IllegalArgument(f"list type field [{key}] is nested list type, cannot process it")
                if not isinstance(item, str):
                    raise IllegalArgument(f"list type field [{key}] has non string value, cannot process it")
                if not item.strip():
                    raise IllegalArgument(f"list type field [{key}] has empty string, cannot process it")
                out.append(Slot(item, path + (i,), tpath, list_index=i))
            list_outputs.append((tpath, len(value)))
        elif isinstance(value, dict):
            raise IllegalArgument(f"map type field [{key}] is an object: map its fields with a nested field_map")
        else:
            out.append(Slot(str(value), path, tpath))


def get_path(source: Any, path: Path) -> Any:
    node = source
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return None
        elif not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def set_path(source: dict[str, Any], path: Path, value: Any) -> None:
    node: Any = source
    for part in path[:-1]:
        if isinstance(part, int):
            node = node[part]
            continue
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


class InferenceProcessor(IngestProcessor):
    LIST_KEY: ClassVar[str] = ""

    def __init__(self, options: CommonOptions, model_id: str, field_map: dict[str, Any], batch_size: int,
                 skip_existing: bool) -> None:
        self.options = options
        self.model_ref = model_id
        self.model_id = model_id
        self.field_map = field_map
        self.batch_size = batch_size
        self.skip_existing = skip_existing
        self._resolved = False

    @classmethod
    def read_common(cls, r: ConfigReader) -> dict[str, Any]:
        model_id = r.string("model_id")
        field_map = r.map("field_map")
        batch_size = r.integer("batch_size", 1)
        skip_existing = r.boolean("skip_existing", False)
        if not model_id.strip():
            raise r.illegal("model_id is null or empty, cannot process it", "model_id")
        if not field_map or any(not str(k).strip() or v is None or not str(v).strip() for k, v in field_map.items()):
            raise r.illegal("Unable to create the processor as field_map has invalid key or value", "field_map")
        if batch_size is None or batch_size <= 0:
            raise r.error("batch_size", "batch size must be a positive integer")
        return {"model_id": model_id, "field_map": field_map, "batch_size": batch_size,
                "skip_existing": skip_existing}

    def model_refs(self) -> list[str]:
        return [self.model_ref]

    async def prepare(self, ml: MLClient) -> None:
        if not self._resolved:
            self.model_id = await ml.resolve_model_id(self.model_ref)
            self._resolved = True

    async def infer(self, ml: MLClient, texts: list[str]) -> list[Any]:
        raise NotImplementedError

    async def execute(self, docs: list[IngestDocument], ctx: RunContext) -> list[Exception | None]:
        if ctx.ml is None:
            err = IllegalArgument(f"processor [{self.TYPE}] needs an ML node to run model [{self.model_ref}], and "
                                  f"none is configured")
            return [err] * len(docs)
        await self.prepare(ctx.ml)
        errors: list[Exception | None] = [None] * len(docs)
        per_doc: list[list[Slot]] = []
        lists: list[list[tuple[Path, int]]] = []
        for i, doc in enumerate(docs):
            slots: list[Slot] = []
            list_outputs: list[tuple[Path, int]] = []
            try:
                collect_slots(self.field_map, doc.source, (), slots, list_outputs)
            except Exception as exc:  # a bad document fails alone
                errors[i] = exc
                slots, list_outputs = [], []
            per_doc.append(slots)
            lists.append(list_outputs)
        if self.skip_existing and ctx.lookup is not None:
            await self._reuse_existing(docs, per_doc, ctx)
        sem = asyncio.Semaphore(MAX_CONCURRENT_BATCHES)

        async def run_batch(indices: list[int]) -> None:
            texts = [s.text for i in indices for s in per_doc[i]]
            if not texts:
                return
            order = sorted(range(len(texts)), key=lambda k: len(texts[k]))
            async with sem:
                try:
                    sorted_results = await self.infer(ctx.ml, [texts[k] for k in order])
                except Exception as exc:
                    for i in indices:
                        errors[i] = exc
                    return
            results: list[Any] = [None] * len(texts)
            for pos, k in enumerate(order):
                results[k] = sorted_results[pos]
            cursor = 0
            for i in indices:
                self._write(docs[i].source, per_doc[i], lists[i], results[cursor:cursor + len(per_doc[i])])
                cursor += len(per_doc[i])

        live = [i for i in range(len(docs)) if errors[i] is None]
        batches = [live[k:k + self.batch_size] for k in range(0, len(live), self.batch_size)]
        await asyncio.gather(*(run_batch(b) for b in batches))
        return errors

    def _write(self, source: dict[str, Any], slots: list[Slot], list_outputs: list[tuple[Path, int]],
               results: list[Any]) -> None:
        for tpath, n in list_outputs:
            existing = get_path(source, tpath)
            if not (isinstance(existing, list) and len(existing) == n):
                set_path(source, tpath, [None] * n)
        for slot, result in zip(slots, results):
            if slot.list_index is None:
                set_path(source, slot.target_path, result)
            else:
                get_path(source, slot.target_path)[slot.list_index] = {self.LIST_KEY: result}

    async def _reuse_existing(self, docs: list[IngestDocument], per_doc: list[list[Slot]], ctx: RunContext) -> None:
        """skip_existing: where the stored document has the same text at the same path and a result at the target,
        copy that result instead of inferring again (neural-search's TextEmbeddingInferenceFilter)."""
        by_index: dict[str, list[str]] = {}
        for doc, slots in zip(docs, per_doc):
            if doc.id is not None and slots:
                by_index.setdefault(doc.index, []).append(doc.id)
        stored: dict[tuple[str, str], dict[str, Any]] = {}
        for index, ids in by_index.items():
            found = await ctx.lookup(index, ids)  # type: ignore[misc]
            for doc_id, src in (found or {}).items():
                if src:
                    stored[(index, str(doc_id))] = src
        for d, (doc, slots) in enumerate(zip(docs, per_doc)):
            old = stored.get((doc.index, str(doc.id)))
            if old is None:
                continue
            keep: list[Slot] = []
            for slot in slots:
                if slot.list_index is None:
                    prev = get_path(old, slot.target_path)
                    if prev is not None and get_path(old, slot.source_path) == slot.text:
                        set_path(doc.source, slot.target_path, prev)
                        continue
                else:
                    # lists are reused whole: same list of texts and one stored result per element
                    src_list = get_path(old, slot.source_path[:-1])
                    prev_list = get_path(old, slot.target_path)
                    new_list = get_path(doc.source, slot.source_path[:-1])
                    if src_list == new_list and isinstance(prev_list, list) and len(prev_list) == len(new_list):
                        set_path(doc.source, slot.target_path, prev_list)
                        continue
                keep.append(slot)
            per_doc[d] = keep
