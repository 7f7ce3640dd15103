"""The ``semantic`` field type (neural-search 3.1), server-neutral: what OpenSearch does for a ``semantic`` mapping
entry, computed here so the data node can do it server-side and the CLI client-side against any cluster.

Facts relied on (neural-search sources, repo opensearch-project/neural-search, paths under
``src/main/java/org/opensearch/neuralsearch/``; documentation-website ``_mappings/supported-field-types/semantic.md``):

- Parameters, in the order GET _mapping prints them: model_id, search_model_id, raw_field_type (always printed,
  default ``text``), semantic_info_field_name, chunking, semantic_field_search_analyzer, dense_embedding_config,
  sparse_encoding_config, skip_existing_embedding (printed only when not the default false)
  (``mapper/SemanticFieldMapper.java`` Builder.getParameters, doXContentBody).
- raw_field_type one of text, keyword, match_only_text, wildcard, token_count, binary; search_model_id and
  semantic_field_search_analyzer are exclusive (``SemanticFieldMapper.TypeParser``).
- At index creation a sibling object ``<name>_semantic_info`` (or ``semantic_info_field_name``) is added:
  ``{"properties": {"embedding": E, "model": {id, name, type: text, index false}}}``, or with chunking
  ``{"properties": {"chunks": {"type": "nested", "properties": {"text": text, "embedding": E}}, "model": ...}}``.
  E is ``knn_vector`` (dimension = model_config.embedding_dimension, method.space_type =
  model_config.additional_config.space_type, method.name default hnsw, dense_embedding_config merged in) for
  TEXT_EMBEDDING models, ``rank_features`` for SPARSE_ENCODING / SPARSE_TOKENIZE
  (``mappingtransformer/SemanticMappingTransformer.java``, ``SemanticInfoConfigBuilder.java``,
  ``constants/SemanticInfoFieldConstants.java``). GET _mapping shows the k-NN defaults engine faiss and
  parameters {} (documentation example).
- At ingest: ``model`` = {name, id, type (the algorithm)}; embeddings per chunk (``chunks[i].embedding``) or
  ``embedding``; one predict call per model for the distinct texts of a batch, content type PASSAGE; sparse vectors
  pruned with sparse_encoding_config or by default max_ratio 0.1; chunking ``true`` = fixed_token_length defaults;
  a list = the algorithms in sequence; skip_existing_embedding reuses the stored info when the value, the model id
  and the chunks are unchanged; ``index.neural_search.semantic_ingest_batch_size`` (default 10) documents per batch
  (``processor/semantic/SemanticFieldProcessor.java``, ``util/SemanticMLModelUtils.java``).
- ``neural`` on a semantic field: dense -> ``knn`` on the embedding (``nested`` on chunks, score_mode max); sparse ->
  ``neural_sparse`` with the model's / analyzer's tokens on the embedding (nested likewise); the model is the
  query's model_id, else search_model_id, else model_id; the analyzer is the query's semantic_field_search_analyzer,
  else the field's (``query/NeuralQueryBuilder.java`` rewriteQueryForSemanticField, ``util/NeuralQueryValidationUtil``).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from opensearch_contract.errors import IllegalArgument, MapperParsingError, OpenSearchError, with_cause
from processors import chunkers, prune
from processors.analyzers import get_analyzer
from processors.document import IngestDocument
from processors.ingest.base import CommonOptions, IngestProcessor, RunContext
from processors.mlclient import MLClient
from processors.query import neural_clauses

SEMANTIC = "semantic"
INFO_SUFFIX = "_semantic_info"
PARAMS = ("model_id", "search_model_id", "raw_field_type", "semantic_info_field_name", "chunking",
          "semantic_field_search_analyzer", "dense_embedding_config", "sparse_encoding_config",
          "skip_existing_embedding")
RAW_FIELD_TYPES = ("text", "keyword", "match_only_text", "wildcard", "token_count", "binary")
DENSE_ALGORITHMS = ("TEXT_EMBEDDING",)
SPARSE_ALGORITHMS = ("SPARSE_ENCODING", "SPARSE_TOKENIZE")
SUPPORTED_ALGORITHMS = "TEXT_EMBEDDING,REMOTE,SPARSE_ENCODING,SPARSE_TOKENIZE"
UNSUPPORTED_DENSE_CONFIG = ("dimension", "data_type", "space_type")
CHUNK_ALGORITHMS = "[fixed_token_length, delimiter, fixed_char_length]"  # ChunkerFactory's ImmutableMap order
DEFAULT_PRUNE = ("max_ratio", 0.1)
BATCH_SIZE_SETTING = "index.neural_search.semantic_ingest_batch_size"
DEFAULT_BATCH_SIZE = 10
META_KEY = "semantic"  # _meta.neuralpipe.semantic: the semantic fields of an index expanded client-side
MODEL_INFO = {"properties": {k: {"type": "text", "index": False} for k in ("id", "name", "type")}}
KNN_PASSTHROUGH = ("filter", "method_parameters", "rescore", "expand_nested_docs", "boost", "_name")
DENSE_ONLY = ("query_image", "k", "max_distance", "min_score", "expand_nested_docs", "filter", "method_parameters",
              "rescore")
_JAVA_TYPES = {list: "java.util.ArrayList", dict: "java.util.LinkedHashMap", int: "java.lang.Integer",
               float: "java.lang.Double", bool: "java.lang.Boolean"}


@dataclass(frozen=True)
class SemanticField:
    """One ``semantic`` mapping entry, validated. ``embedding_type`` is known once the mapping is expanded."""

    path: str
    model_id: str
    search_model_id: str | None = None
    raw_field_type: str = "text"
    info_name: str | None = None
    chunking: bool | list[dict[str, Any]] = False
    search_analyzer: str | None = None
    dense_config: dict[str, Any] | None = None
    prune_type: str | None = None
    prune_ratio: float | None = None
    skip_existing: bool = False
    embedding_type: str | None = None  # knn_vector | rank_features

    @property
    def info_path(self) -> str:
        parent, _, leaf = self.path.rpartition(".")
        name = self.info_name or leaf + INFO_SUFFIX
        return f"{parent}.{name}" if parent else name

    @property
    def chunked(self) -> bool:
        return bool(self.chunking)

    @property
    def chunks_path(self) -> str:
        return f"{self.info_path}.chunks"

    @property
    def embedding_path(self) -> str:
        return f"{self.chunks_path}.embedding" if self.chunked else f"{self.info_path}.embedding"

    @property
    def dense(self) -> bool:
        return self.embedding_type == "knn_vector"


# ---- mapping ---------------------------------------------------------------------------------------------------------

def _properties(mappings: dict[str, Any]) -> dict[str, Any]:
    if isinstance(mappings.get("_doc"), dict):
        mappings = mappings["_doc"]
    props = mappings.get("properties")
    return props if isinstance(props, dict) else {}


def _entries(mappings: dict[str, Any]) -> list[tuple[dict[str, Any], str, str]]:
    """(the properties object holding it, its key, its full path) of every ``semantic`` entry of a mappings body
    (``SemanticMappingUtils.collectSemanticField``)."""
    found: list[tuple[dict[str, Any], str, str]] = []
    stack: list[tuple[dict[str, Any], str]] = [(_properties(mappings), "")]
    while stack:
        props, prefix = stack.pop()
        for name, spec in props.items():
            path = f"{prefix}.{name}" if prefix else name
            if not isinstance(spec, dict):
                raise IllegalArgument(f"Expect the field config at the path {path} should be a map.")
            if spec.get("type") == SEMANTIC:
                found.append((props, name, path))
            if isinstance(spec.get("properties"), dict):
                stack.append((spec["properties"], path))
    return found


def collect(mappings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every ``semantic`` entry of a mappings body by its full path."""
    return {path: props[name] for props, name, path in _entries(mappings)}


def has_semantic(mappings: Any) -> bool:
    return isinstance(mappings, dict) and bool(collect(mappings))


def _transform_errors(path: str, spec: dict[str, Any]) -> list[str]:
    """What SemanticMappingTransformer.validateSemanticFields reports (model_id, semantic_info_field_name)."""
    errors = []
    model_id = spec.get("model_id")
    if model_id is None:
        errors.append(f"model_id is required for the semantic field at {path}")
    elif not isinstance(model_id, str) or not model_id:
        errors.append(f"model_id should be a non-empty string for the semantic field at {path}")
    if "semantic_info_field_name" in spec:
        name = spec["semantic_info_field_name"]
        if not isinstance(name, str):
            errors.append(f"semantic_info_field_name should be a non-empty string for the semantic field at {path}")
        elif not name:
            errors.append(f"semantic_info_field_name cannot be an empty string for the semantic field at {path}")
        elif "." in name:
            errors.append(f"semantic_info_field_name should not contain '.' for the semantic field at {path}")
    return errors


def _parse_failure(reason: str, cause_type: type[OpenSearchError] = IllegalArgument) -> OpenSearchError:
    """A TypeParser error as index creation reports it: mapper_parsing_exception wrapping the cause."""
    return with_cause(MapperParsingError(f"Failed to parse mapping [_doc]: {reason}"), cause_type(reason))


def _parse_chunking(path: str, value: Any) -> bool | list[dict[str, Any]]:
    """``chunking``: a boolean or a list of {algorithm, parameters} (``mapper/dto/ChunkingConfig.java``)."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _parse_failure("[chunking] must be either a List of Maps or a Boolean", MapperParsingError)
    for item in value:
        extra = sorted(set(item) - {"algorithm", "parameters"})
        if extra:
            raise _parse_failure(f"[chunking] does not support parameters [{', '.join(extra)}]", MapperParsingError)
        if "algorithm" not in item:
            raise _parse_failure("[algorithm] is required to configure the chunking strategy.", MapperParsingError)
        algorithm = item["algorithm"]
        if not isinstance(algorithm, str) or algorithm not in chunkers.CHUNKERS:
            raise _parse_failure(f"[algorithm] must be {CHUNK_ALGORITHMS}", MapperParsingError)
        params = item.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise _parse_failure("parameters in chunking should be a Map.", MapperParsingError)
        try:
            _chunker(item)
        except chunkers.ChunkerError as exc:
            raise _parse_failure(str(exc)) from None
    return value


def _chunker(item: dict[str, Any]) -> chunkers.Chunker:
    params = dict(item.get("parameters") or {})
    cls = chunkers.CHUNKERS[item["algorithm"]]
    chunkers.parse_max_chunk_limit(params)
    unknown = sorted(set(params) - cls.PARAMS)
    if unknown:
        raise chunkers.ChunkerError(f"Unsupported parameters {unknown} for algorithm [{item['algorithm']}]")
    return cls(params)


def _parse_sparse_config(value: Any) -> tuple[str | None, float | None]:
    """``sparse_encoding_config`` (``mapper/dto/SparseEncodingConfig.java``)."""
    if not isinstance(value, dict):
        raise _parse_failure("[sparse_encoding_config] must be a Map", MapperParsingError)
    config = dict(value)
    prune_type = config.pop("prune_type", None)
    has_ratio = "prune_ratio" in config
    raw_ratio = config.pop("prune_ratio", None)
    if prune_type is not None and prune_type not in prune.PRUNE_TYPES:
        raise _parse_failure(f"Invalid [prune_type]. Valid values are [{','.join(prune.PRUNE_TYPES)}].",
                             MapperParsingError)
    if config:
        raise _parse_failure(f"Unsupported parameters {','.join(config)} in sparse_encoding_config",
                             MapperParsingError)
    ratio = None
    if has_ratio:
        try:
            if isinstance(raw_ratio, bool):
                raise ValueError
            ratio = float(str(raw_ratio))
        except ValueError:
            raise _parse_failure("[prune_ratio] must be a Float", MapperParsingError) from None
    if prune_type is None and ratio is None:
        return None, None
    if ratio is not None and prune_type in (None, "none"):
        raise _parse_failure("prune_ratio should not be defined when prune_type is none or null", MapperParsingError)
    if ratio is None and prune_type != "none":
        raise _parse_failure("prune_ratio is required when prune_type is defined and not none", MapperParsingError)
    if ratio is not None and prune_type is not None and not prune.is_valid_ratio(prune_type, ratio):
        raise _parse_failure(f"Illegal prune_ratio {ratio:f} for prune_type: {prune_type}. "
                             f"{prune.ratio_description(prune_type)}", MapperParsingError)
    return prune_type, ratio


def parse_field(path: str, spec: dict[str, Any], embedding_type: str | None = None) -> SemanticField:
    """A validated SemanticField from its mapping entry (the TypeParser and transformer checks, first one wins)."""
    errors = _transform_errors(path, spec)
    if errors:
        raise IllegalArgument("; ".join(errors))
    name = path.rpartition(".")[2]
    raw = spec.get("raw_field_type", "text")
    if raw not in RAW_FIELD_TYPES:
        raise _parse_failure(f"raw_field_type {raw} is not supported. It should be one of "
                             f"[{', '.join(RAW_FIELD_TYPES)}]")
    search_model = spec.get("search_model_id")
    analyzer = spec.get("semantic_field_search_analyzer")
    if search_model is not None and analyzer is not None:
        raise _parse_failure(f"search_model_id can not coexist with semantic_field_search_analyzer in semantic "
                             f"field {name}")
    for key, value in (("search_model_id", search_model), ("semantic_field_search_analyzer", analyzer)):
        if value is not None and not isinstance(value, str):
            raise _parse_failure(f"{key} should be a String for the semantic field at {path}")
        if value == "":
            raise _parse_failure(f"{key} can not be empty string in semantic field {name}")
    chunking = _parse_chunking(path, spec.get("chunking", False))
    dense = spec.get("dense_embedding_config")
    if dense is not None and not isinstance(dense, dict):
        raise _parse_failure("[dense_embedding_config] must be an object", MapperParsingError)
    prune_type, ratio = (None, None)
    if "sparse_encoding_config" in spec:
        prune_type, ratio = _parse_sparse_config(spec["sparse_encoding_config"])
    skip = spec.get("skip_existing_embedding", False)
    if not isinstance(skip, bool):
        raise _parse_failure(f"skip_existing_embedding should be a boolean for the semantic field at {path}")
    return SemanticField(path, spec["model_id"], search_model, raw, spec.get("semantic_info_field_name"), chunking,
                         analyzer, dense, prune_type, ratio, skip, embedding_type)


def delegate_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The raw field a semantic entry wraps: its raw_field_type with the entry's other (non-semantic) parameters."""
    out = {k: v for k, v in spec.items() if k not in PARAMS and k != "type"}
    return {"type": spec.get("raw_field_type", "text"), **out}


def _model_type(model: dict[str, Any], model_id: str) -> str:
    algorithm = str(model.get("algorithm") or model.get("function_name") or "").upper()
    if algorithm in DENSE_ALGORITHMS + SPARSE_ALGORITHMS:
        return algorithm
    if algorithm == "REMOTE":
        remote_type = str((model.get("model_config") or {}).get("model_type") or "").upper()
        if remote_type in DENSE_ALGORITHMS + SPARSE_ALGORITHMS:
            return f"REMOTE_{remote_type}"
        raise IllegalArgument(f"The model type {remote_type or None} of the model {model_id} is not supported in "
                              f"the semantic field. Supported remote model types: "
                              f"[TEXT_EMBEDDING,SPARSE_ENCODING,SPARSE_TOKENIZE]")
    raise IllegalArgument(f"The algorithm {algorithm} of the model {model_id} is not supported in the semantic field. "
                          f"Supported algorithms: [{SUPPORTED_ALGORITHMS}].")


def _is_dense(model_type: str) -> bool:
    return model_type in ("TEXT_EMBEDDING", "REMOTE_TEXT_EMBEDDING")


def _embedding_config(f: SemanticField, model: dict[str, Any]) -> dict[str, Any]:
    """SemanticInfoConfigBuilder: the embedding field's mapping for this model."""
    model_type = _model_type(model, f.model_id)
    if not _is_dense(model_type):
        if f.dense_config is not None:
            raise IllegalArgument("Cannot build the semantic info config because dense_embedding_config is not "
                                  "supported by the sparse model.")
        return {"type": "rank_features"}
    if f.search_analyzer is not None:
        raise IllegalArgument("Cannot build the semantic info config because the dense(text embedding) model cannot "
                              "support semantic_field_search_analyzer")
    if f.prune_type is not None or f.prune_ratio is not None:
        raise IllegalArgument("Cannot build the semantic info config because the dense(text embedding) model cannot "
                              "support sparse_encoding_config.")
    config = model.get("model_config") or {}
    dimension = config.get("embedding_dimension")
    if dimension is None:
        raise IllegalArgument(f"Model {f.model_id} is a text embedding model, but the embedding dimension is not "
                              f"defined in the model config.")
    space = (config.get("additional_config") or {}).get("space_type")
    if not isinstance(space, str):
        raise IllegalArgument(f"space_type is not defined or not a string in the additional_config of the model "
                              f"{f.model_id}.")
    out: dict[str, Any] = {"type": "knn_vector", "dimension": dimension}
    method: dict[str, Any] = {}
    if f.dense_config is not None:
        for key in UNSUPPORTED_DENSE_CONFIG:
            if f.dense_config.get(key) is not None:
                raise IllegalArgument(f"Cannot configure {key} in dense_embedding_config in the semantic field.")
        given = f.dense_config.get("method")
        if given is not None and not isinstance(given, dict):
            raise IllegalArgument("Cannot build the semantic info config because method must be a Map when "
                                  "provided.")
        if isinstance(given, dict) and given.get("space_type") is not None:
            raise IllegalArgument("Cannot configure space_type in dense_embedding_config in the semantic field.")
        out.update(copy.deepcopy(f.dense_config))
        method.update(copy.deepcopy(given or {}))
    method.setdefault("engine", "faiss")  # k-NN's defaults, as GET _mapping prints them
    method["space_type"] = space
    method.setdefault("name", "hnsw")
    method.setdefault("parameters", {})
    out["method"] = method
    return out


def info_mapping(f: SemanticField, model: dict[str, Any]) -> dict[str, Any]:
    """The ``<field>_semantic_info`` object's mapping."""
    embedding = _embedding_config(f, model)
    if f.chunked:
        chunks = {"type": "nested", "properties": {"embedding": embedding, "text": {"type": "text"}}}
        return {"properties": {"chunks": chunks, "model": copy.deepcopy(MODEL_INFO)}}
    return {"properties": {"embedding": embedding, "model": copy.deepcopy(MODEL_INFO)}}


def normalized_entry(spec: dict[str, Any]) -> dict[str, Any]:
    """A semantic entry as GET _mapping prints it: type, the semantic parameters in order (raw_field_type always,
    skip_existing_embedding only when true), then the raw field's own parameters."""
    out: dict[str, Any] = {"type": SEMANTIC}
    for key in PARAMS:
        if key == "raw_field_type":
            out[key] = spec.get(key, "text")
        elif key == "skip_existing_embedding":
            if spec.get(key):
                out[key] = True
        elif key == "sparse_encoding_config" and key in spec:
            cfg = spec[key]
            out[key] = {k: (float(cfg[k]) if k == "prune_ratio" else cfg[k]) for k in ("prune_type", "prune_ratio")
                        if cfg.get(k) is not None}
        elif spec.get(key) is not None:
            out[key] = copy.deepcopy(spec[key])
    out.update({k: copy.deepcopy(v) for k, v in spec.items() if k not in PARAMS and k != "type"})
    return out


async def fetch_models(mappings: dict[str, Any], ml: MLClient) -> dict[str, dict[str, Any]]:
    """The ML Commons model documents of every semantic field's model_id (validating the entries first)."""
    found = collect(mappings)
    errors = [e for path, spec in found.items() for e in _transform_errors(path, spec)]
    if errors:
        raise IllegalArgument("; ".join(errors))
    ids = sorted({str(spec["model_id"]) for spec in found.values()})
    docs = await asyncio.gather(*(ml.get_model(model_id) for model_id in ids))
    return dict(zip(ids, docs))


def expand(mappings: dict[str, Any], models: dict[str, dict[str, Any]], *, client_side: bool = False
           ) -> dict[str, Any]:
    """The mapping OpenSearch creates for ``mappings``: each semantic entry normalized and its semantic info object
    added beside it. ``client_side``: for a cluster without neural-search, each semantic entry becomes its raw field
    and the entries are kept under ``_meta.neuralpipe.semantic`` (how ``fields_of`` finds them again)."""
    out = copy.deepcopy(mappings)
    root = out["_doc"] if isinstance(out.get("_doc"), dict) else out
    found = collect(root)
    errors = [e for path, spec in found.items() for e in _transform_errors(path, spec)]
    if errors:  # every field's, together (SemanticMappingTransformer.validateSemanticFields)
        raise IllegalArgument("; ".join(errors))
    stash: dict[str, Any] = {}
    for props, leaf, path in _entries(root):
        f = parse_field(path, props[leaf])
        try:
            info = info_mapping(f, models[f.model_id])
        except IllegalArgument as exc:
            raise IllegalArgument(f"Failed to transform the mapping for the semantic field at {path} due to "
                                  f"{exc.reason}") from None
        entry = normalized_entry(props[leaf])
        props[leaf] = delegate_spec(entry) if client_side else entry
        props[f.info_path.rpartition(".")[2]] = info  # set as is, over any field of that name (as neural-search)
        stash[path] = entry
    if client_side and stash:
        root.setdefault("_meta", {}).setdefault("neuralpipe", {})[META_KEY] = stash
    return out


def _mapping_at(root: dict[str, Any], path: str) -> dict[str, Any] | None:
    props: Any = _properties(root)
    spec = None
    for part in path.split("."):
        if not isinstance(props, dict) or not isinstance(props.get(part), dict):
            return None
        spec = props[part]
        props = spec.get("properties")
    return spec


def fields_of(mappings: dict[str, Any] | None, *, client_side: bool | None = None) -> dict[str, SemanticField]:
    """The semantic fields of an expanded mapping (as GET _mapping returns it): ``type: semantic`` entries (done by
    the server) and, ``client_side``, the entries stashed under ``_meta.neuralpipe.semantic`` (done by neuralpipe).
    ``client_side=None`` returns both."""
    if not isinstance(mappings, dict):
        return {}
    root = mappings["_doc"] if isinstance(mappings.get("_doc"), dict) else mappings
    specs: dict[str, dict[str, Any]] = {}
    if client_side in (None, False):
        specs.update(collect(root))
    if client_side in (None, True):
        stash = ((root.get("_meta") or {}).get("neuralpipe") or {}).get(META_KEY) or {}
        specs.update({p: s for p, s in stash.items() if isinstance(s, dict)})
    out = {}
    for path, spec in specs.items():
        f = parse_field(path, spec)
        embedding = _mapping_at(root, f.embedding_path) or {}
        out[path] = SemanticField(**{**f.__dict__, "embedding_type": embedding.get("type")})
    return out


# ---- ingest ----------------------------------------------------------------------------------------------------------

@dataclass
class _Value:
    """One semantic value found in a document, where its semantic info goes, and what it becomes."""

    spec: SemanticField
    doc: int
    text: str
    parent: dict[str, Any]  # the object holding the semantic field (and, after, its info)
    chunks: list[str] = field(default_factory=list)
    reused: bool = False


def _java_type(value: Any) -> str:
    return "class " + _JAVA_TYPES.get(type(value), type(value).__name__)


def _find(node: Any, parts: list[str], f: SemanticField, doc: int, out: list[_Value]) -> None:
    """Values of ``f`` in a document: through objects and arrays of objects (``collectSemanticFieldInfo``)."""
    if isinstance(node, list):
        for item in node:
            _find(item, parts, f, doc, out)
        return
    if not isinstance(node, dict):
        return
    key = parts[0]
    if key not in node:
        dotted = ".".join(parts)
        if dotted in node and len(parts) > 1:  # a flattened key ("a.b": ...) names the same field
            node.setdefault(parts[0], {})
            inner = node.pop(dotted)
            target = node[parts[0]]
            for part in parts[1:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = inner
        else:
            return
    value = node.get(key)
    if len(parts) > 1:
        _find(value, parts[1:], f, doc, out)
        return
    if value is None:
        return
    if not isinstance(value, str):
        raise IllegalArgument(f"Expect the semantic field at path: {f.path} to be a string but found: "
                              f"{_java_type(value)}.")
    out.append(_Value(f, doc, value, node))


def _chunk(value: _Value) -> list[str]:
    """The texts to embed: the value itself, or its chunks (each configured algorithm in turn)."""
    if not value.spec.chunked:
        return [value.text]
    items: list[dict[str, Any]] = (value.spec.chunking if isinstance(value.spec.chunking, list)
                                   else [{"algorithm": "fixed_token_length"}])
    texts: list[str] | None = None
    for item in items:
        chunker = _chunker(item)
        limit = chunkers.parse_max_chunk_limit(dict(item.get("parameters") or {}))
        sources = [value.text] if texts is None else texts
        state = {"limit": limit, "left": len(sources)}
        produced: list[str] = []
        for text in sources:
            if not text:
                state["left"] -= 1
                continue
            got = chunker.chunk(text, state["limit"], state["left"])
            state["left"] -= 1
            if state["limit"] != chunkers.DISABLED_MAX_CHUNK_LIMIT:
                state["limit"] -= len(got)
            produced += got
        texts = produced
    return texts or []


def _existing_info(existing: dict[str, Any] | None, value: _Value) -> Any:
    """The stored semantic info to reuse (skip_existing_embedding): same value, same model id, same chunks."""
    if existing is None:
        return None
    node: Any = existing
    parts = value.spec.path.split(".")
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or node.get(parts[-1]) != value.text:
        return None
    info = node.get(value.spec.info_path.rpartition(".")[2])
    if not isinstance(info, dict) or (info.get("model") or {}).get("id") != value.spec.model_id:
        return None
    if value.spec.chunked:
        chunks = info.get("chunks")
        if not isinstance(chunks, list) or [c.get("text") for c in chunks if isinstance(c, dict)] != value.chunks:
            return None
    return copy.deepcopy(info)


Lookup = Callable[[list[str]], Awaitable[dict[str, dict[str, Any]]]]


async def embed(sources: list[tuple[str | None, dict[str, Any]]], fields: dict[str, SemanticField], ml: MLClient, *,
                lookup: Lookup | None = None) -> list[dict[str, Any] | OpenSearchError]:
    """The sources with their semantic info written (as OpenSearch's semantic field processor writes it), or each
    failed document's error. One predict call per model for the distinct texts of all the documents given."""
    results: list[dict[str, Any] | OpenSearchError] = [copy.deepcopy(src) for _, src in sources]
    values: list[_Value] = []
    for n in range(len(sources)):
        doc = results[n]
        try:
            found: list[_Value] = []
            for f in fields.values():
                _find(doc, f.path.split("."), f, n, found)
            for v in found:
                v.chunks = _chunk(v)
            values += found
        except (OpenSearchError, chunkers.ChunkerError) as exc:
            results[n] = exc if isinstance(exc, OpenSearchError) else IllegalArgument(str(exc))
    values = [v for v in values if not isinstance(results[v.doc], OpenSearchError)]
    if not values:
        return results
    await _reuse(values, sources, lookup)
    todo = [v for v in values if not v.reused]
    models, embeddings = await _infer(todo, ml, results)
    for v in todo:
        if isinstance(results[v.doc], OpenSearchError):
            continue
        f = v.spec
        model = models[f.model_id]
        info: dict[str, Any] = {}
        vectors = [embeddings[(f.model_id, text)] for text in v.chunks]
        if not f.dense:
            ptype, ratio = (f.prune_type, f.prune_ratio) if f.prune_type else DEFAULT_PRUNE
            if ptype != "none":
                vectors = [prune.prune(ptype, float(ratio or 0.0), vec) if vec else vec for vec in vectors]
        if f.chunked:
            info["chunks"] = [{"text": text, "embedding": vec} for text, vec in zip(v.chunks, vectors)]
        info["model"] = {"name": model.get("name"), "id": f.model_id, "type": _model_type(model, f.model_id)}
        if not f.chunked:
            info["embedding"] = vectors[0]
        v.parent[f.info_path.rpartition(".")[2]] = info
    return results


async def _reuse(values: list[_Value], sources: list[tuple[str | None, dict[str, Any]]], lookup: Lookup | None
                 ) -> None:
    wanted = sorted({str(sources[v.doc][0]) for v in values if v.spec.skip_existing and sources[v.doc][0]})
    if not wanted or lookup is None:
        return
    existing = await lookup(wanted)
    for v in values:
        doc_id = sources[v.doc][0]
        if not v.spec.skip_existing or not doc_id:
            continue
        info = _existing_info(existing.get(str(doc_id)), v)
        if info is not None:
            v.parent[v.spec.info_path.rpartition(".")[2]] = info
            v.reused = True


async def _infer(values: list[_Value], ml: MLClient, results: list[Any]
                 ) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], Any]]:
    """Model documents and one predict call per model over the distinct texts; a failed call fails its docs."""
    by_model: dict[str, list[str]] = {}
    for v in values:
        texts = by_model.setdefault(v.spec.model_id, [])
        texts += [t for t in v.chunks if t not in texts]
    models: dict[str, dict[str, Any]] = {}
    embeddings: dict[tuple[str, str], Any] = {}

    async def run(model_id: str, texts: list[str]) -> None:
        try:
            model = await ml.get_model(model_id)
            models[model_id] = model
            if _is_dense(_model_type(model, model_id)):
                out: list[Any] = await ml.text_embedding(model_id, texts, content_type="passage")
            else:
                out = await ml.sparse_encoding(model_id, texts)
        except OpenSearchError as exc:
            for v in values:
                if v.spec.model_id == model_id:
                    results[v.doc] = exc
            return
        embeddings.update({(model_id, t): e for t, e in zip(texts, out)})

    await asyncio.gather(*(run(model_id, texts) for model_id, texts in by_model.items() if texts))
    return models, embeddings


class SemanticFieldProcessor(IngestProcessor):
    """neural-search's system processor for semantic fields, appended by the CLI's client-side ingest to the user's
    pipeline (never configured in a pipeline body, as in OpenSearch, so it is not in the processor registry)."""

    TYPE = "system_ingest_processor_semantic_field"

    def __init__(self, fields: dict[str, SemanticField]) -> None:
        self.options = CommonOptions(tag=None, description="semantic fields of the target index")
        self.fields = fields

    async def execute(self, docs: list[IngestDocument], ctx: RunContext) -> list[Exception | None]:
        errors: list[Exception | None] = [None] * len(docs)
        lookup = ctx.lookup
        for start in range(0, len(docs), DEFAULT_BATCH_SIZE):
            batch = docs[start:start + DEFAULT_BATCH_SIZE]

            async def existing(ids: list[str], index: str = batch[0].index) -> dict[str, dict[str, Any]]:
                return await lookup(index, ids) if lookup is not None else {}

            results = await embed([(d.id, d.source) for d in batch], self.fields, ctx.ml, lookup=existing)
            for n, (doc, result) in enumerate(zip(batch, results)):
                if isinstance(result, OpenSearchError):
                    errors[start + n] = result
                else:
                    doc.source = result
        return errors

    def model_refs(self) -> list[str]:
        return sorted({m for f in self.fields.values() for m in (f.model_id, f.search_model_id) if m})


def batch_size(settings: dict[str, Any]) -> int:
    """``index.neural_search.semantic_ingest_batch_size`` (default 10)."""
    try:
        size = int(settings.get(BATCH_SIZE_SETTING, DEFAULT_BATCH_SIZE))
    except (TypeError, ValueError):
        size = DEFAULT_BATCH_SIZE
    return max(size, 1)


# ---- search ----------------------------------------------------------------------------------------------------------

def _dense_errors(params: dict[str, Any]) -> list[str]:
    errors = []
    text = params.get("query_text")
    if (not isinstance(text, str) or not text.strip()) and not params.get("query_image"):
        errors.append("Either query_text or query_image must be provided.")
    given = [k for k in ("k", "max_distance", "min_score") if params.get(k) is not None]
    if len(given) > 1:
        errors.append("Only one of k, max_distance, or min_score can be provided")
    if params.get("model_id") == "":
        errors.append("model_id field can not be empty")
    for key in ("query_tokens", "semantic_field_search_analyzer"):
        if params.get(key) is not None:
            errors.append(f"Target field is a semantic field using a dense model. {key} is not supported since it "
                          f"is for the sparse model.")
    if params.get("query_image") is not None:
        errors.append("query_image is not supported by neuralpipe (no text-image models); use query_text")
    return errors


def _sparse_errors(params: dict[str, Any]) -> list[str]:
    errors = []
    tokens, text = params.get("query_tokens"), params.get("query_text")
    if tokens is None and text is None:
        errors.append("Either query_text or query_tokens must be provided")
    elif tokens is None and text == "":
        errors.append("query_text field can not be empty")
    if sum(params.get(k) is not None for k in ("model_id", "semantic_field_search_analyzer", "query_tokens")) > 1:
        errors.append("query_tokens, model_id and semantic_field_search_analyzer can not coexist")
    for key in ("model_id", "semantic_field_search_analyzer"):
        if params.get(key) == "":
            errors.append(f"{key} field can not be empty")
    dense_only = sorted(k for k in DENSE_ONLY if params.get(k) is not None)
    if dense_only:
        errors.append(f"Target field is a semantic field using a sparse model. [{', '.join(dense_only)}] are not "
                      f"supported since they are for the dense model.")
    if tokens is not None and (not isinstance(tokens, dict) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) for w in tokens.values())):
        errors.append("query_tokens must be an object of token -> weight")
    return errors


async def rewrite_query(query: Any, fields: dict[str, SemanticField], ml: MLClient | None) -> Any:
    """``query`` (a copy) with every ``neural`` clause on a semantic field replaced by the query on the fields
    OpenSearch generated: ``knn`` on the embedding (dense) or ``neural_sparse`` with ``query_tokens`` (sparse),
    inside ``nested`` on the chunks when chunking is on. Other clauses are left for ``processors.query``."""
    if not fields:
        return query
    query = copy.deepcopy(query)
    targets = [(holder, name, params) for holder, name, params in neural_clauses(query) if name in fields]
    if not targets:
        return query
    for _, name, params in targets:
        errors = _dense_errors(params) if fields[name].dense else _sparse_errors(params)
        if errors:
            raise IllegalArgument(f"Invalid neural query: {'; '.join(errors)}")
    requests: dict[tuple[bool, str], list[str]] = {}
    plans: list[tuple[dict[str, Any], SemanticField, dict[str, Any], str | None]] = []
    for holder, name, params in targets:
        f = fields[name]
        model = params.get("model_id") or f.search_model_id or f.model_id
        analyzer = params.get("semantic_field_search_analyzer") or f.search_analyzer
        if not f.dense and (params.get("query_tokens") is not None or (analyzer and not params.get("model_id"))):
            plans.append((holder, f, params, None))
            continue
        texts = requests.setdefault((f.dense, model), [])
        if params["query_text"] not in texts:
            texts.append(params["query_text"])
        plans.append((holder, f, params, model))
    if requests and ml is None:
        raise IllegalArgument(f"[neural] query on a semantic field needs an ML node to run model "
                              f"[{next(iter(requests))[1]}], and none is configured")
    results: dict[tuple[str, str], Any] = {}

    async def run(dense: bool, model: str, texts: list[str]) -> None:
        assert ml is not None
        out: list[Any] = (await ml.text_embedding(model, texts, content_type="query") if dense
                          else await ml.sparse_encoding(model, texts))
        results.update({(model, t): r for t, r in zip(texts, out)})

    await asyncio.gather(*(run(dense, model, texts) for (dense, model), texts in requests.items()))
    for holder, f, params, model in plans:
        found: Any
        if model is not None:
            found = results[(model, params["query_text"])]
        elif params.get("query_tokens") is not None:
            found = {str(k): float(v) for k, v in params["query_tokens"].items()}
        else:
            analyzer = params.get("semantic_field_search_analyzer") or f.search_analyzer
            found = get_analyzer(str(analyzer)).tokens(params["query_text"])
        new = _dense_clause(f, params, found) if f.dense else _sparse_clause(f, params, found)
        if f.chunked:
            new = {"nested": {"path": f.chunks_path, "query": new, "score_mode": "max"}}
        holder.clear()
        holder.update(new)
    return query


def _dense_clause(f: SemanticField, params: dict[str, Any], vector: list[float]) -> dict[str, Any]:
    body: dict[str, Any] = {"vector": vector}
    given = [k for k in ("k", "max_distance", "min_score") if params.get(k) is not None]
    body[given[0] if given else "k"] = params[given[0]] if given else 10
    body.update({k: params[k] for k in KNN_PASSTHROUGH if params.get(k) is not None})
    return {"knn": {f.embedding_path: body}}


def _sparse_clause(f: SemanticField, params: dict[str, Any], tokens: dict[str, float]) -> dict[str, Any]:
    extra = {k: params[k] for k in ("boost", "_name") if params.get(k) is not None}
    return {"neural_sparse": {f.embedding_path: {"query_tokens": dict(tokens), **extra}}}
