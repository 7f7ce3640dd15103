"""Parsing a ``_bulk`` body (NDJSON action/metadata lines, each index/create/update followed by its source)."""

from __future__ import annotations

import json
from typing import Any

from opensearch_contract.errors import IllegalArgument, MapperParsingError

from .errors import ActionRequestValidation as ActionValidation
from .node import WriteOp

ACTIONS = ("index", "create", "update", "delete")
META_KEYS = {"_index", "_id", "pipeline", "routing", "if_seq_no", "if_primary_term", "retry_on_conflict",
             "require_alias", "version", "version_type", "_source", "op_type", "dynamic_templates"}


def parse_bulk(raw: bytes, default_index: str | None) -> list[WriteOp]:
    lines = raw.decode("utf-8").split("\n")
    ops: list[WriteOp] = []
    i = 0
    missing_index = 0
    while i < len(lines):
        line = lines[i].strip()
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
        action_line = json.loads(line)
    except json.JSONDecodeError:
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


def _read_source(op: WriteOp, source_line: str) -> None:
    """The document (index, create) or update body (update) line of ``op``; bad JSON fails this op only."""
    try:
        payload = json.loads(source_line)
    except json.JSONDecodeError as exc:
        op.error = MapperParsingError(f"failed to parse: {exc.msg} at line {exc.lineno} column {exc.colno}")
        payload = None
    if op.action == "update":
        op.update = payload if isinstance(payload, dict) else {}
    else:
        op.source = payload
        if isinstance(payload, dict):
            op.raw = source_line.strip()
