"""The index body (settings + mappings) an ingest pipeline's output needs.

- ``text_embedding`` target -> ``knn_vector`` with the model's ``embedding_dimension`` and
  ``method {name: hnsw, engine: faiss, space_type}``; the space type is the model's
  ``model_config.additional_config.space_type`` when it declares one, else ``cosinesimil`` (sentence-embedding
  models are trained for cosine similarity; for normalized vectors it ranks like l2 and innerproduct);
- ``sparse_encoding`` target -> ``rank_features``;
- a list input (e.g. the passages of ``text_chunking``) -> a ``nested`` field whose objects hold ``knn`` (dense) or
  ``sparse_encoding`` (sparse), as the processors write them;
- source text fields and chunk lists -> ``text``;
- settings: ``index.knn: true``, plus ``default_pipeline`` when a pipeline id is given.
"""

from __future__ import annotations

from typing import Any

from opensearch_contract.errors import IllegalArgument
from processors.mlclient import MLClient

DEFAULT_SPACE_TYPE = "cosinesimil"


def _props(root: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    """The ``properties`` dict of the object at ``parts`` (created as objects on the way)."""
    node = root
    for part in parts:
        field = node.setdefault(part, {"properties": {}})
        if "properties" not in field:  # a leaf already mapped there: keep it, nest under a fresh object
            field["properties"] = {}
        node = field["properties"]
    return node


def _split(key: str, target: Any) -> tuple[str, Any]:
    if "." in key:
        head, rest = key.split(".", 1)
        return head, {rest: target}
    return key, target


def _walk_field_map(field_map: dict[str, Any], parent: list[str], out: list[tuple[list[str], list[str]]]) -> None:
    """(source path, target path) pairs for every leaf of a field_map."""
    for raw_key, raw_target in field_map.items():
        key, target = _split(raw_key, raw_target)
        if isinstance(target, dict):
            _walk_field_map(target, parent + [key], out)
        else:
            out.append((parent + [key], parent + str(target).split(".")))


async def _model_info(ml: MLClient, ref: str) -> tuple[int, str]:
    model_id = await ml.resolve_model_id(ref)
    doc = await ml.get_model(model_id)
    config = doc.get("model_config") or {}
    dim = config.get("embedding_dimension")
    if not isinstance(dim, int) or dim <= 0:
        raise IllegalArgument(f"model [{model_id}] declares no model_config.embedding_dimension; cannot map its "
                              f"knn_vector field")
    extra = config.get("additional_config") or {}
    return dim, str(extra.get("space_type") or DEFAULT_SPACE_TYPE)


async def mapping_for_pipeline(body: dict[str, Any], *, ml: MLClient, pipeline_id: str | None = None
                               ) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    list_fields: set[tuple[str, ...]] = set()  # targets of text_chunking: lists of passages
    for item in body.get("processors") or []:
        for ptype, config in (item or {}).items():
            if not isinstance(config, dict) or not isinstance(config.get("field_map"), dict):
                continue
            pairs: list[tuple[list[str], list[str]]] = []
            _walk_field_map(config["field_map"], [], pairs)
            if ptype == "text_chunking":
                for src, dst in pairs:
                    list_fields.add(tuple(dst))
                    for path in (src, dst):
                        _props(properties, path[:-1]).setdefault(path[-1], {"type": "text"})
                continue
            if ptype not in ("text_embedding", "sparse_encoding"):
                continue
            if ptype == "text_embedding":
                dim, space = await _model_info(ml, str(config.get("model_id")))
                leaf: dict[str, Any] = {"type": "knn_vector", "dimension": dim,
                                        "method": {"name": "hnsw", "engine": "faiss", "space_type": space}}
                list_key = "knn"
            else:
                leaf = {"type": "rank_features"}
                list_key = "sparse_encoding"
            for src, dst in pairs:
                _props(properties, src[:-1]).setdefault(src[-1], {"type": "text"})
                holder = _props(properties, dst[:-1])
                if tuple(src) in list_fields:
                    holder[dst[-1]] = {"type": "nested", "properties": {list_key: dict(leaf)}}
                else:
                    holder[dst[-1]] = dict(leaf)
    settings: dict[str, Any] = {"index.knn": True}
    if pipeline_id:
        settings["index.default_pipeline"] = pipeline_id
    return {"settings": settings, "mappings": {"properties": properties}}
