"""HNSW graph snapshots: written at a clean shutdown, reused at the next start when no write happened in
between (the index's ``seq_no`` is unchanged), so a restart does not rebuild every graph.

A snapshot is only an accelerator: SQLite stays the truth. It names each graph entry by document id and
nested ordinal, is written to a temporary name and renamed, and is ignored unless it matches exactly.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .fields import Grow, VectorField
from .index import Index, Scope

log = logging.getLogger("neuralpipe.datanode")


def _entry_keys(index: Index, scope: Scope, field: VectorField) -> list[list[Any]]:
    """(doc id, ordinal among its parent's nested objects) of each entry; ordinal -1 at the root."""
    keys: list[list[Any]] = []
    ordinal: dict[int, int] = {}
    if scope.nested_path is not None:
        for parent, children in scope.children.items():
            for k, child in enumerate(children):
                ordinal[child] = k
    for slot in field.owner.view().tolist():
        if scope.nested_path is None:
            keys.append([index.slot_id[slot], -1])
        else:
            keys.append([index.slot_id[int(scope.parent.data[slot])], ordinal.get(slot, -1)])
    return keys


def _scopes(index: Index) -> dict[str, Scope]:
    return {"_root": index.root, **{f"nested.{p}": s for p, s in index.nested.items()}}


def save(root: Path, index: Index) -> None:
    target = root / index.uuid
    tmp = root / f".{index.uuid}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    graphs = []
    with index.lock:
        for scope_key, scope in _scopes(index).items():
            for path, field in scope.vectors.items():
                if field.spec.method != "hnsw":
                    continue
                field.refresh()
                if field.graph is None:
                    continue
                name = f"{len(graphs)}.faiss"
                faiss.write_index(field.graph, str(tmp / name))
                graphs.append({"scope": scope_key, "field": path, "file": name,
                               "live": field.live.view().astype(int).tolist(),
                               "keys": _entry_keys(index, scope, field)})
        meta = {"seq_no": index.seq_no, "graphs": graphs}
    (tmp / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def restore(root: Path, index: Index) -> int:
    """Swap snapshot graphs into ``index``'s vector fields; returns how many graphs were reused."""
    target = root / index.uuid
    meta_path = target / "meta.json"
    if not meta_path.exists():
        return 0
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("seq_no") != index.seq_no:
            return 0
        used = 0
        scopes = _scopes(index)
        for graph_meta in meta["graphs"]:
            scope = scopes.get(graph_meta["scope"])
            field = scope.vectors.get(graph_meta["field"]) if scope else None
            if scope is None or field is None:
                continue
            if _swap(index, scope, field, target / graph_meta["file"], graph_meta):
                used += 1
        return used
    except Exception:  # noqa: BLE001  (a damaged snapshot only costs a rebuild)
        log.warning("ignoring the graph snapshot of index [%s]", index.name, exc_info=True)
        return 0


def _swap(index: Index, scope: Scope, field: VectorField, path: Path, meta: dict[str, Any]) -> bool:
    graph = faiss.read_index(str(path))
    n = graph.ntotal
    if n != len(meta["keys"]) or graph.d != field.spec.dimension:
        return False
    slot_of: dict[tuple[str, int], int] = {}
    if scope.nested_path is None:
        slot_of = {(doc_id, -1): slot for doc_id, slot in index.id_slot.items()}
    else:
        for parent, children in scope.children.items():
            for k, child in enumerate(children):
                slot_of[(index.slot_id[parent], k)] = child
    vectors = graph.reconstruct_n(0, n)
    owners = np.full(n, -1, dtype=np.int64)
    live = np.zeros(n, dtype=np.bool_)
    for i, ((doc_id, ordinal), alive) in enumerate(zip(meta["keys"], meta["live"])):
        slot = slot_of.get((doc_id, ordinal))
        if alive and slot is not None:
            owners[i], live[i] = slot, True
    if int(live.sum()) != len(field.slot_entry):  # must cover exactly the vectors SQLite holds
        return False
    current = {slot: field.vectors.data[entry] for slot, entry in field.slot_entry.items()}
    for i in np.flatnonzero(live).tolist():
        if not np.allclose(current.get(int(owners[i]), np.inf), vectors[i], atol=1e-6):
            return False
    field.vectors, field.owner, field.live = Grow(np.float32, width=field.spec.dimension), \
        Grow(np.int64, fill=-1), Grow(np.bool_, fill=False)
    field.slot_entry = {}
    for i in range(n):
        field.vectors.append(vectors[i])
        field.owner.append(owners[i])
        field.live.append(live[i])
        if live[i]:
            field.slot_entry[int(owners[i])] = i
    field.graph, field.in_graph, field.dead = graph, n, int(n - live.sum())
    return True
