"""Parsing a ``_bulk`` body (NDJSON action/metadata lines, each index/create/update followed by its source)."""

from __future__ import annotations

from typing import Any

from opensearch_contract.body import parse_json
from opensearch_contract.errors import IllegalArgument, MapperParsingError, OpenSearchError, with_cause

from .errors import ActionRequestValidation as ActionValidation
from .node import WriteOp

ACTIONS = ("index", "create", "update", "delete")
META_KEYS = {"_index", "_id", "pipeline", "routing", "if_seq_no", "if_primary_term", "retry_on_conflict",
             "require_alias", "version", "version_type", "_source", "op_type", "dynamic_templates"}


def parse_bulk(raw: bytes, default_index: str | None) -> list[WriteOp]:
    """The write ops of a ``_bulk`` body. A bad action line fails the request (as OpenSearch's); a document line that
    is not JSON a node can store (bad UTF-8, a lone surrogate escape, a number out of range, nesting past the limit)
    fails its own item only, with a ``mapper_parsing_exception``."""
    lines = raw.split(b"\n")
    ops: list[WriteOp] = []
    i = 0
    missing_index = 0
    while i < len(lines):
        line = _text(lines[i], i + 1).strip()
        i += 1
        if not line:
            continue
        action, meta = _action_line(line, i)
        index = meta.get("_index", default_index)
        if index is None:
            missing_index += 1
        doc_id = meta.get("_id")
        op = WriteOp(action, index or "", None if doc_id is None else str(doc_id))
        for key in ("pipeline", "if_seq_no", "if_primary_term"):
            if key in meta:
                op.extra[key] = meta[key]
        if action != "delete":
            if i >= len(lines) or not lines[i].strip():
                raise IllegalArgument("Validation Failed: 1: no requests added;" if not ops else
                                      "The bulk request must be terminated by a newline [\\n]")
            _read_source(op, lines[i])
            i += 1
        ops.append(op)
    if missing_index:
        raise ActionValidation("Validation Failed: " + "".join(f"{n + 1}: index is missing;"
                                                               for n in range(missing_index)))
    if not ops:
        raise ActionValidation("Validation Failed: 1: no requests added;")
    return ops


def _action_line(line: str, number: int) -> tuple[str, dict[str, Any]]:
    """(action, metadata) of the action/metadata line ``number`` (1-based), checked as OpenSearch checks it."""
    try:
        action_line = parse_json(line)
    except OpenSearchError:
        raise IllegalArgument(f"Malformed action/metadata line [{number}], expected START_OBJECT or END_OBJECT but "
                              f"found [VALUE_STRING]") from None
    if not isinstance(action_line, dict) or len(action_line) != 1:
        raise IllegalArgument(f"Malformed action/metadata line [{number}], expected START_OBJECT or END_OBJECT but "
                              f"found [{type(action_line).__name__}]")
    action, meta = next(iter(action_line.items()))
    if action not in ACTIONS:
        raise IllegalArgument(f"Malformed action/metadata line [{number}], expected field [create], [delete], "
                              f"[index] or [update] but found [{action}]")
    if not isinstance(meta, dict):
        raise IllegalArgument(f"Malformed action/metadata line [{number}], expected START_OBJECT but found "
                              f"[{type(meta).__name__}]")
    unknown = set(meta) - META_KEYS
    if unknown:
        raise IllegalArgument(f"Action/metadata line [{number}] contains an unknown parameter [{sorted(unknown)[0]}]")
    index = meta.get("_index")
    if index is not None and not isinstance(index, str):
        raise IllegalArgument(f"Malformed action/metadata line [{number}]: [_index] must be a string, got [{index}]")
    if meta.get("_id") is not None and not isinstance(meta["_id"], (str, int)):
        raise IllegalArgument(f"Malformed action/metadata line [{number}]: [_id] must be a string, got "
                              f"[{meta['_id']}]")
    return action, meta


def _text(line: bytes, number: int) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IllegalArgument(f"Malformed action/metadata line [{number}]: not UTF-8 ({exc.reason})") from None


def _read_source(op: WriteOp, source_line: bytes) -> None:
    """The document (index, create) or update body (update) line of ``op``; a bad one fails this op only."""
    payload: Any = None
    try:
        payload = parse_json(source_line)
    except OpenSearchError as exc:
        op.error = with_cause(MapperParsingError("failed to parse"), exc)
    if op.action == "update":
        if op.error is None and not isinstance(payload, dict):
            op.error = MapperParsingError(f"failed to parse: the update body must be a JSON object, got "
                                          f"[{payload}]")
        op.update = payload if isinstance(payload, dict) else {}
    else:
        op.source = payload
        if isinstance(payload, dict):
            op.raw = source_line.decode("utf-8").strip()
