"""Hit ordering and decoration for search responses: field sorts and nested ``inner_hits``."""

from __future__ import annotations

from typing import Any

import numpy as np

from opensearch_contract.errors import IllegalArgument, ParsingError

from .index import Index
from .source import filter_source, parse_source_param

SortSpec = list[tuple[str, bool, str]]  # (field, descending, missing: "_last" | "_first")


def parse_sort(body_sort: Any, url_sort: str | None) -> SortSpec | None:
    """OpenSearch's sort forms -> [(field, descending, missing)]; None for the default (score) order."""
    spec = body_sort
    if url_sort:
        spec = [{part.split(":")[0]: part.split(":")[1]} if ":" in part else part for part in url_sort.split(",")]
    if spec is None:
        return None
    out: SortSpec = []
    for item in spec if isinstance(spec, list) else [spec]:
        options: dict[str, Any]
        if isinstance(item, str):
            field, options = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            field, options = next(iter(item.items()))
            options = {"order": options} if isinstance(options, str) else options
        else:
            raise ParsingError(f"[sort] malformed sort element [{item}]")
        if not isinstance(options, dict):
            raise ParsingError(f"[sort] malformed options for [{field}]")
        order = str(options.get("order", "desc" if field == "_score" else "asc")).lower()
        if order not in ("asc", "desc"):
            raise IllegalArgument(f"[sort] unknown order [{order}] for [{field}]: valid values are [asc, desc]")
        missing = str(options.get("missing", "_last"))
        if missing not in ("_last", "_first"):
            raise IllegalArgument(f"[sort] missing value [{missing}] is not supported here: use [_last, _first]")
        out.append((field, order == "desc", missing))
    if out == [("_score", True, "_last")]:
        return None
    return out


def _sort_value(index: Index, field: str, slot: int, descending: bool) -> Any:
    if field == "_id":
        return index.slot_id[slot]
    if field == "_doc":
        return slot
    spec = index.mapping.fields.get(field)
    if spec is None:
        raise IllegalArgument(f"No mapping found for [{field}] in order to sort on")
    if spec.type == "text":
        raise IllegalArgument(f"Text fields are not optimised for operations that require per-document field data "
                              f"like aggregations and sorting, so these operations are disabled by default. "
                              f"Please use a keyword field instead. Alternatively, set fielddata=true on [{field}]")
    if spec.type == "keyword":
        terms = index.root.terms.get(field)
        values = terms.slot_values(slot) if terms else []
    else:
        vf = index.root.values.get(field)
        values = vf.values.get(slot, []) if vf else []
    if not values:
        return None
    value = max(values) if descending else min(values)
    return int(value) if isinstance(value, bool) else value


def sort_hits(sort: SortSpec, targets: list[Index], all_idx: np.ndarray, all_slot: np.ndarray,
              all_score: np.ndarray) -> tuple[np.ndarray, list[list[Any]]]:
    """The hit order for a field sort, and each hit's ``sort`` values (OpenSearch's tie-break: doc order)."""
    n = all_slot.size
    values: list[list[Any]] = [[] for _ in range(n)]
    for field, descending, _missing in sort:
        for i in range(n):
            if field == "_score":
                values[i].append(float(all_score[i]))
            else:
                values[i].append(_sort_value(targets[int(all_idx[i])], field, int(all_slot[i]), descending))

    class Key:
        __slots__ = ("i",)

        def __init__(self, i: int) -> None:
            self.i = i

        def __lt__(self, other: Key) -> bool:
            for k, (_, descending, missing) in enumerate(sort):
                a, b = values[self.i][k], values[other.i][k]
                if a == b:
                    continue
                if a is None or b is None:
                    return (a is None) == (missing == "_first")
                return a > b if descending else a < b
            return (int(all_idx[self.i]), int(all_slot[self.i])) < (int(all_idx[other.i]), int(all_slot[other.i]))

    order = sorted(range(n), key=Key)
    return np.asarray(order, dtype=np.int64), values


def inner_hits_of(index: Index, found: Any, slot: int, doc_id: str, source: dict[str, Any]) -> dict[str, Any]:
    """OpenSearch's ``inner_hits`` of one parent hit: its matching nested objects, best first, with offsets."""
    queries, children = found
    out: dict[str, Any] = {}
    for name, (path, options, cmask, cscores) in queries.items():
        kids = children.get(path, {}).get(slot, [])
        matched = [(float(cscores[c]), offset) for offset, c in enumerate(kids) if c < cmask.shape[0] and cmask[c]]
        matched.sort(key=lambda t: (-t[0], t[1]))
        start, size = int(options.get("from", 0)), int(options.get("size", 3))
        objects: Any = source
        for part in path.split("."):
            objects = objects.get(part) if isinstance(objects, dict) else None
        objects = objects if isinstance(objects, list) else [objects] if isinstance(objects, dict) else []
        fetch, inc, exc = parse_source_param(options.get("_source"))
        hits = []
        for score, offset in matched[start:start + size]:
            hit: dict[str, Any] = {"_index": index.name, "_id": doc_id, "_nested": {"field": path, "offset": offset},
                                   "_score": score}
            if fetch and offset < len(objects):
                hit["_source"] = filter_source(objects[offset], inc, exc)
            hits.append(hit)
        out[name] = {"hits": {"total": {"value": len(matched), "relation": "eq"},
                              "max_score": matched[0][0] if matched else None, "hits": hits}}
    return out
