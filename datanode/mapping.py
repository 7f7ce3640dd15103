"""Index mappings: validation of a mappings body, dynamic mapping, and parsing a document into
the values each field index needs (with OpenSearch's mapper_parsing_exception on bad values)."""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from opensearch_contract.errors import IllegalArgument, MapperParsingError, with_cause
from opensearch_contract.knn import SPACE_TYPES, check_vector_values

from .analysis import ANALYZERS
from .errors import StrictDynamicMapping

NUMERIC_TYPES = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float",
                 "unsigned_long"}
INTEGER_TYPES = {"long", "integer", "short", "byte", "unsigned_long"}
LEAF_TYPES = {"text", "keyword", "boolean", "date", "knn_vector", "rank_features", "rank_feature",
              "match_only_text", "wildcard", "constant_keyword"} | NUMERIC_TYPES
OBJECT_TYPES = {"object", "nested"}
METADATA_FIELDS = {"_id", "_index", "_source", "_routing", "_seq_no", "_version", "_primary_term", "_field_names",
                   "_ignored", "_nested_path", "_data_stream_timestamp"}

METHODS = ("hnsw", "flat")
ENGINES = ("faiss", "lucene", "nmslib")
VECTOR_DATA_TYPES = ("float", "byte")
MAX_DIMENSION = 16000
_INT_RANGES = {"byte": (-128, 127), "short": (-2**15, 2**15 - 1), "integer": (-2**31, 2**31 - 1),
               "long": (-2**63, 2**63 - 1), "unsigned_long": (0, 2**64 - 1)}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


@dataclass(frozen=True)
class VectorSpec:
    dimension: int
    space_type: str = "l2"
    data_type: str = "float"
    method: str = "hnsw"
    engine: str = "faiss"
    m: int = 16
    ef_construction: int = 100
    ef_search: int = 100


@dataclass(frozen=True)
class FieldSpec:
    path: str
    type: str
    nested_path: str | None  # the innermost nested object this field lives in (None = root)
    ignore_above: int | None = None
    vector: VectorSpec | None = None
    positive_score_impact: bool = True
    subfields: tuple[str, ...] = ()
    analyzer: str = "standard"          # text fields: what indexing runs
    search_analyzer: str = "standard"   # text fields: what a match query runs (defaults to ``analyzer``)


@dataclass
class Entry:
    """The indexable values of one document (or one nested object), keyed by full field path."""

    values: dict[str, list[Any]] = field(default_factory=dict)      # keyword/numeric/bool/date
    texts: dict[str, list[str]] = field(default_factory=dict)       # text fields: raw strings
    vectors: dict[str, np.ndarray] = field(default_factory=dict)    # knn_vector
    features: dict[str, dict[str, float]] = field(default_factory=dict)  # rank_features / rank_feature


@dataclass
class ParsedDoc:
    root: Entry
    nested: dict[str, list[Entry]]
    dynamic_update: dict[str, Any] | None  # properties to merge into the mapping, if any


def parse_date(value: Any) -> int:
    """Epoch milliseconds for a date given as epoch millis or an ISO-8601 string."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if text == "now":
        return int(datetime.now(UTC).timestamp() * 1000)
    iso = text.replace("Z", "+00:00")
    if len(iso) == 10:
        iso += "T00:00:00"
    dt = datetime.fromisoformat(iso)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _preview(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    if isinstance(value, list):
        text = "[" + ", ".join(str(v) for v in value) + "]"
    return text if len(text) <= 100 else text[:100] + "..."


MAX_OBJECT_DEPTH = 20  # index.mapping.depth.limit's default: objects nest at most this deep


class Mapping:
    """A validated mappings body plus a flat ``path -> FieldSpec`` view."""

    def __init__(self, body: dict[str, Any] | None = None, *, knn_enabled: bool = False) -> None:
        body = copy.deepcopy(body or {})
        self.knn_enabled = knn_enabled
        self.dynamic = str(body.get("dynamic", "true")).lower()
        if self.dynamic not in ("true", "false", "strict", "runtime"):
            raise MapperParsingError(f"Failed to parse mapping: [dynamic] must be one of [true, false, strict], "
                                     f"got [{body.get('dynamic')}]")
        unknown = set(body) - {"properties", "dynamic", "_source", "_meta", "dynamic_templates", "date_detection",
                               "numeric_detection", "_routing"}
        if unknown:
            raise MapperParsingError(f"Root mapping definition has unsupported parameters:  "
                                     f"[{', '.join(sorted(unknown))}]")
        self.body = body
        self.body.setdefault("properties", {})
        self.fields: dict[str, FieldSpec] = {}
        self.objects: dict[str, str] = {}  # object/nested path -> "object" | "nested"
        self.disabled: set[str] = set()     # objects mapped with enabled: false (kept in _source, not indexed)
        self.semantic: set[str] = set()     # semantic fields (processors.semantic embeds them at ingest)
        self._compile(self.body["properties"], prefix="", nested=None)

    # --- building ---------------------------------------------------------------------------
    def _compile(self, props: Any, *, prefix: str, nested: str | None) -> None:
        if not isinstance(props, dict):
            raise MapperParsingError(f"Expected map for property [properties] on field [{prefix.rstrip('.')}]"
                                     f" but got a class {type(props).__name__}")
        for name, spec in props.items():
            path = prefix + name
            if not isinstance(spec, dict):
                raise MapperParsingError(f"Expected map for property [fields] on field [{path}] but got {spec!r}")
            ftype = spec.get("type", "object" if "properties" in spec or not spec else None)
            if ftype is None:
                raise MapperParsingError(f"No type specified for field [{path}]")
            if not isinstance(ftype, str):
                raise MapperParsingError(f"No handler for type [{ftype}] declared on field [{name}]")
            if ftype == "semantic":  # indexed as the raw field it wraps; its semantic info is a sibling object
                from processors.semantic import delegate_spec  # here: only semantic mappings import processors
                self.semantic.add(path)
                spec = delegate_spec(spec)
                ftype = spec["type"]
                if ftype not in LEAF_TYPES:
                    raise MapperParsingError(f"raw_field_type [{ftype}] of semantic field [{path}] is not supported "
                                             f"by this data node: it supports [text, keyword, match_only_text, "
                                             f"wildcard]")
            if ftype in OBJECT_TYPES:
                self.objects[path] = ftype
                if spec.get("enabled", True) in (False, "false"):
                    self.disabled.add(path)
                    continue
                inner_nested = path if ftype == "nested" else nested
                self._compile(spec.get("properties", {}), prefix=path + ".", nested=inner_nested)
                continue
            if ftype not in LEAF_TYPES:
                raise MapperParsingError(f"No handler for type [{ftype}] declared on field [{name}]")
            subs = []
            if not isinstance(spec.get("fields") or {}, dict):
                raise MapperParsingError(f"Expected map for property [fields] on field [{path}] but got "
                                         f"[{spec.get('fields')}]")
            for sub, subspec in (spec.get("fields") or {}).items():
                subtype = subspec.get("type") if isinstance(subspec, dict) else None
                subtype = subtype if isinstance(subtype, str) else None
                if subtype not in {"text", "keyword", "match_only_text", "wildcard"} | NUMERIC_TYPES:
                    raise MapperParsingError(f"No handler for type [{subtype}] declared on field [{sub}]")
                self.fields[f"{path}.{sub}"] = self._leaf(f"{path}.{sub}", subtype, subspec, nested)
                subs.append(f"{path}.{sub}")
            leaf = self._leaf(path, ftype, spec, nested)
            self.fields[path] = replace(leaf, subfields=tuple(subs))

    def _leaf(self, path: str, ftype: str, spec: dict[str, Any], nested: str | None) -> FieldSpec:
        if ftype == "knn_vector":
            return FieldSpec(path, ftype, nested, vector=self._vector_spec(path, spec))
        if ftype == "rank_feature":
            return FieldSpec(path, ftype, nested, positive_score_impact=bool(spec.get("positive_score_impact", True)))
        if ftype == "rank_features":
            return FieldSpec(path, ftype, nested, positive_score_impact=bool(spec.get("positive_score_impact", True)))
        for key in ("analyzer", "search_analyzer"):
            if key in spec and (not isinstance(spec[key], str) or spec[key] not in ANALYZERS):
                reason = f"analyzer [{spec[key]}] has not been configured in mappings"
                raise with_cause(MapperParsingError(f"Failed to parse mapping [_doc]: {reason}"),
                                 IllegalArgument(reason))
        if ftype in ("match_only_text",):
            ftype = "text"
        if ftype in ("wildcard", "constant_keyword"):
            ftype = "keyword"
        ignore_above = spec.get("ignore_above")
        if isinstance(ignore_above, str) and ignore_above.isascii() and ignore_above.isdigit():
            ignore_above = int(ignore_above)  # OpenSearch reads a number's text too
        if ignore_above is not None and (not isinstance(ignore_above, int) or isinstance(ignore_above, bool)
                                         or ignore_above < 0):
            reason = f"[ignore_above] must be a non-negative integer, got [{ignore_above}]"
            raise with_cause(MapperParsingError(f"Failed to parse mapping [_doc]: {reason}"), IllegalArgument(reason))
        analyzer = str(spec.get("analyzer", "standard"))
        return FieldSpec(path, ftype, nested, ignore_above=ignore_above, analyzer=analyzer,
                         search_analyzer=str(spec.get("search_analyzer", analyzer)))

    def _vector_spec(self, path: str, spec: dict[str, Any]) -> VectorSpec:
        dim = spec.get("dimension")
        if dim is None:
            raise MapperParsingError(f"Dimension value missing for vector: {path}")
        try:
            dim = int(dim)
        except (TypeError, ValueError):
            raise MapperParsingError(
                f"Unable to parse [dimension] from provided value [{dim}] for vector [{path}]") from None
        if not 1 <= dim <= MAX_DIMENSION:
            raise MapperParsingError(f"Dimension value cannot be greater than {MAX_DIMENSION} or less than 1 "
                                     f"for vector: {path}, got [{dim}]")
        method = spec.get("method") or {}
        if not isinstance(method, dict):
            raise MapperParsingError(f"[method] of vector [{path}] must be an object such as {{\"name\": \"hnsw\", "
                                     f"\"engine\": \"faiss\"}}, got [{method}]")
        space = method.get("space_type", spec.get("space_type", "l2"))
        if space not in SPACE_TYPES:
            raise MapperParsingError(f"Invalid space type [{space}] for vector [{path}]: this data node supports "
                                     f"[{', '.join(SPACE_TYPES)}]")
        data_type = spec.get("data_type", "float")
        if data_type not in VECTOR_DATA_TYPES:
            raise MapperParsingError(f"Invalid data_type [{data_type}] for vector [{path}]: this data node supports "
                                     f"[{', '.join(VECTOR_DATA_TYPES)}]")
        name = method.get("name", "hnsw")
        if name not in METHODS:
            raise MapperParsingError(f"Invalid method name [{name}] for vector [{path}]: this data node supports "
                                     f"[{', '.join(METHODS)}]")
        engine = method.get("engine", "faiss")
        if engine not in ENGINES:
            raise MapperParsingError(f"Invalid engine [{engine}] for vector [{path}]: valid values are "
                                     f"[{', '.join(ENGINES)}]")
        params = method.get("parameters") or {}
        unknown = set(params) - {"m", "ef_construction", "ef_search", "encoder"}
        if unknown:
            raise MapperParsingError(f"Invalid parameter(s) [{', '.join(sorted(unknown))}] for method [{name}] of "
                                     f"vector [{path}]: valid parameters are [m, ef_construction, ef_search]")
        ints = {}
        for key, default in (("m", 16), ("ef_construction", 100), ("ef_search", 100)):
            value = params.get(key, default)
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                raise MapperParsingError(f"Invalid value [{value}] for parameter [{key}] of vector [{path}]: "
                                         f"must be an integer >= 2")
            ints[key] = value
        if not self.knn_enabled:
            name = "flat"  # without index.knn the field is searched exactly, as k-NN's exact search does
        return VectorSpec(dim, space, data_type, name, engine, ints["m"], ints["ef_construction"], ints["ef_search"])

    def check_depth(self) -> None:
        """OpenSearch's ``index.mapping.depth.limit`` for a mapping being created or extended (a stored one is read
        as it is, so a data dir written before the check still opens)."""
        for path in self.objects:
            if path.count(".") + 1 > MAX_OBJECT_DEPTH:
                raise IllegalArgument(f"Limit of mapping depth [{MAX_OBJECT_DEPTH}] has been exceeded due to object "
                                      f"field [{path}]")

    # --- merging ----------------------------------------------------------------------------
    def merged(self, update: dict[str, Any]) -> Mapping:
        """A new Mapping with ``update`` (a PUT _mapping body) merged in; conflicting types fail."""
        props = update.get("properties", {})
        Mapping({"properties": props}, knn_enabled=self.knn_enabled)  # the update alone must be a valid mapping
        body = copy.deepcopy(self.body)
        _merge_props(body["properties"], props, prefix="")
        for key in ("dynamic", "_meta", "_source"):
            if key in update:
                body[key] = update[key]
        return Mapping(body, knn_enabled=self.knn_enabled)

    def to_body(self) -> dict[str, Any]:
        return copy.deepcopy(self.body)

    def nested_paths(self) -> list[str]:
        return [p for p, kind in self.objects.items() if kind == "nested"]

    # --- documents --------------------------------------------------------------------------
    def parse(self, source: dict[str, Any], doc_id: str) -> ParsedDoc:
        parser = _DocParser(self, doc_id)
        root = Entry()
        nested: dict[str, list[Entry]] = {p: [] for p in self.nested_paths()}
        parser.walk(source, "", root, nested)
        update = parser.dynamic_props or None
        return ParsedDoc(root, nested, {"properties": update} if update else None)


def _merge_props(base: dict[str, Any], new: dict[str, Any], *, prefix: str) -> None:
    for name, spec in new.items():
        path = prefix + name
        if name not in base:
            base[name] = copy.deepcopy(spec)
            continue
        old = base[name]
        old_type = old.get("type", "object")
        new_type = spec.get("type", old_type)
        if old_type != new_type:
            raise IllegalArgument(f"mapper [{path}] cannot be changed from type [{old_type}] to [{new_type}]")
        if new_type in OBJECT_TYPES:
            old.setdefault("properties", {})
            _merge_props(old["properties"], spec.get("properties", {}), prefix=path + ".")
        elif new_type == "knn_vector" and spec.get("dimension") != old.get("dimension"):
            raise IllegalArgument(f"Cannot update parameter [dimension] from [{old.get('dimension')}] to "
                                  f"[{spec.get('dimension')}] for field [{path}]")
        elif new_type == "text" and spec.get("analyzer", "default") != old.get("analyzer", "default"):
            # the terms already indexed were made by the old analyzer; OpenSearch refuses the change
            raise IllegalArgument(f"Cannot update parameter [analyzer] from [{old.get('analyzer', 'default')}] to "
                                  f"[{spec.get('analyzer', 'default')}]")
        else:
            for key, value in spec.items():
                if key == "fields":
                    old.setdefault("fields", {}).update(value)
                else:
                    old[key] = value


class _DocParser:
    def __init__(self, mapping: Mapping, doc_id: str) -> None:
        self.mapping = mapping
        self.doc_id = doc_id
        self.dynamic_props: dict[str, Any] = {}

    def _fail(self, path: str, ftype: str, value: Any, cause: Exception) -> MapperParsingError:
        # OpenSearch previews the parser's current token: for a knn_vector that is past the array, i.e. 'null'
        preview = "null" if ftype == "knn_vector" else _preview(value)
        err = MapperParsingError(f"failed to parse field [{path}] of type [{ftype}] in document with id "
                                 f"'{self.doc_id}'. Preview of field's value: '{preview}'")
        if isinstance(cause, IllegalArgument | MapperParsingError):
            return with_cause(err, cause)  # type: ignore[return-value]
        return with_cause(err, IllegalArgument(str(cause)))  # type: ignore[return-value]

    def walk(self, obj: dict[str, Any], prefix: str, entry: Entry, nested: dict[str, list[Entry]]) -> None:
        if not isinstance(obj, dict):
            raise MapperParsingError(f"object mapping for [{prefix.rstrip('.')}] tried to parse field as object, "
                                     f"but found a concrete value")
        for name, value in obj.items():
            if not name.strip():
                raise MapperParsingError("field name cannot be an empty string")
            path = prefix + name
            if not prefix and name in METADATA_FIELDS:
                raise MapperParsingError(f"Field [{name}] is a metadata field and cannot be added inside a document. "
                                         f"Use the index API request parameters.")
            if "." in name:  # dotted keys are object paths
                head, rest = name.split(".", 1)
                self.walk({head: {rest: value}}, prefix, entry, nested)
                continue
            self.value(path, value, entry, nested)

    def value(self, path: str, value: Any, entry: Entry, nested: dict[str, list[Entry]]) -> None:
        if value is None or path in self.mapping.disabled:
            return
        kind = self.mapping.objects.get(path)
        spec = self.mapping.fields.get(path)
        if kind is None and spec is None:
            spec_or_kind = self._dynamic(path, value)
            if spec_or_kind is None:
                return
            kind = self.mapping.objects.get(path)
            spec = self.mapping.fields.get(path)
        if kind == "nested":
            for item in value if isinstance(value, list) else [value]:
                if item is None:
                    continue
                child = Entry()
                self.walk(item, path + ".", child, nested)
                nested.setdefault(path, []).append(child)
            return
        if kind == "object":
            for item in value if isinstance(value, list) else [value]:
                if item is not None:
                    self.walk(item, path + ".", entry, nested)
            return
        assert spec is not None
        self.leaf(spec, value, entry)

    def _dynamic(self, path: str, value: Any) -> str | None:
        mode = self.mapping.dynamic
        if mode == "strict":
            parent = path.rsplit(".", 1)[0] if "." in path else "_doc"
            raise StrictDynamicMapping(f"mapping set to strict, dynamic introduction of [{path.rsplit('.', 1)[-1]}]"
                                       f" within [{parent}] is not allowed")
        if mode == "false":
            return None
        sample = value
        while isinstance(sample, list):
            sample = next((v for v in sample if v is not None), None)
        if sample is None:
            return None
        if isinstance(sample, dict):
            spec: dict[str, Any] = {"type": "object", "properties": {}}
        elif isinstance(sample, bool):
            spec = {"type": "boolean"}
        elif isinstance(sample, int):
            spec = {"type": "long"}
        elif isinstance(sample, float):
            spec = {"type": "float"}
        elif isinstance(sample, str) and _DATE_RE.match(sample):
            spec = {"type": "date"}
        else:
            spec = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
        # add the new field to a private copy of the mapping so later values of this doc see it;
        # the index merges ``dynamic_props`` into its own mapping only once the doc is accepted
        body = copy.deepcopy(self.mapping.body)
        props = body["properties"]
        parts = path.split(".")
        dyn = self.dynamic_props
        for part in parts[:-1]:
            props = props[part].setdefault("properties", {})
            dyn = dyn.setdefault(part, {"properties": {}})["properties"]
        props[parts[-1]] = copy.deepcopy(spec)
        dyn[parts[-1]] = copy.deepcopy(spec)
        self.mapping = Mapping(body, knn_enabled=self.mapping.knn_enabled)
        if spec["type"] == "object":
            self.mapping.check_depth()
        return spec["type"]

    def leaf(self, spec: FieldSpec, value: Any, entry: Entry) -> None:
        path, ftype = spec.path, spec.type
        try:
            if ftype == "knn_vector":
                entry.vectors[path] = _vector(value, spec)
                return
            if ftype == "rank_features":
                entry.features[path] = _features(value, spec)
                return
            if ftype == "rank_feature":
                entry.features[path] = {"": _feature_value(value, path, spec)}
                return
            values = value if isinstance(value, list) else [value]
            for v in values:
                if v is None:
                    continue
                if isinstance(v, (dict, list)):
                    raise IllegalArgument(f"Can't get text on a START_OBJECT at field [{path}]"
                                          if isinstance(v, dict) else "nested arrays are not supported")
                if ftype == "text":
                    entry.texts.setdefault(path, []).append(str(v) if not isinstance(v, bool) else str(v).lower())
                elif ftype == "keyword":
                    text = str(v).lower() if isinstance(v, bool) else str(v)
                    if spec.ignore_above is not None and len(text) > spec.ignore_above:
                        continue
                    entry.values.setdefault(path, []).append(text)
                else:
                    entry.values.setdefault(path, []).append(coerce(ftype, v))
        except (IllegalArgument, MapperParsingError, ValueError, TypeError, OverflowError) as exc:
            raise self._fail(path, ftype, value, exc) from exc
        for sub in spec.subfields:  # multi-fields index the same value again
            self.leaf(self.mapping.fields[sub], value, entry)


def coerce(ftype: str, v: Any) -> Any:
    """A value of a numeric, boolean or date field as stored and compared."""
    if ftype == "boolean":
        if isinstance(v, bool):
            return v
        if v in ("true", "false"):
            return v == "true"
        if v == "":
            return False
        raise IllegalArgument(f"Failed to parse value [{v}] as only [true] or [false] are allowed.")
    if ftype == "date":
        try:
            return parse_date(v)
        except (ValueError, TypeError):
            raise IllegalArgument(f"failed to parse date field [{v}] with format [strict_date_optional_time||"
                                  f"epoch_millis]") from None
    if ftype in INTEGER_TYPES:
        if isinstance(v, bool):
            raise IllegalArgument(f"Current token (VALUE_{str(v).upper()}) not numeric, can not use numeric "
                                  f"value accessors")
        try:
            number = float(v) if not isinstance(v, int) else v
        except (TypeError, ValueError):
            raise IllegalArgument(f'For input string: "{v}"') from None
        if isinstance(number, float):
            if not math.isfinite(number):
                raise IllegalArgument(f"[{ftype}] supports only finite values, but got [{v}]")
            number = int(number)
        lo, hi = _INT_RANGES[ftype]
        if not lo <= number <= hi:
            raise IllegalArgument(f"Value [{v}] is out of range for {'an ' if ftype == 'integer' else 'a '}"
                                  f"{ftype}")
        return number
    if ftype in NUMERIC_TYPES:
        if isinstance(v, bool):
            raise IllegalArgument(f"Current token (VALUE_{str(v).upper()}) not numeric, can not use numeric "
                                  f"value accessors")
        try:
            number = float(v)
        except (TypeError, ValueError):
            raise IllegalArgument(f'For input string: "{v}"') from None
        if not math.isfinite(number):
            raise IllegalArgument(f"[{ftype}] supports only finite values, but got [{v}]")
        return number
    return v


def _vector(value: Any, spec: FieldSpec) -> np.ndarray:
    vs = spec.vector
    assert vs is not None
    arr = np.asarray(value) if isinstance(value, list) else None
    if arr is None or arr.ndim != 1 or arr.dtype.kind not in "iuf":
        raise IllegalArgument(f"Vector must be an array of numbers for field [{spec.path}]")
    arr = arr.astype(np.float64, copy=False)
    if arr.shape[0] != vs.dimension:
        raise IllegalArgument(f"Vector dimension mismatch. Expected: {vs.dimension}, Given: {arr.shape[0]}")
    check_vector_values(arr)  # finite and within float32's range, or it would be stored as inf
    if vs.data_type == "byte":
        if np.any(arr != np.round(arr)) or np.any(arr < -128) or np.any(arr > 127):
            raise IllegalArgument("[data_type] field was set as [byte] in index mapping. But, KNN vector values "
                                  "are floats instead of byte integers or are outside [-128, 127]")
    if vs.space_type == "cosinesimil" and not np.any(arr):
        raise IllegalArgument("zero vector is not supported when space type is [cosinesimil]")
    return arr.astype(np.float32)


def _feature_value(v: Any, path: str, spec: FieldSpec) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise IllegalArgument(f"[rank_feature] fields must be numbers, got [{v}] for field [{path}]")
    number = float(v)
    if not math.isfinite(number) or number <= 0 or number < np.finfo(np.float32).tiny:
        raise IllegalArgument(f"featureValue must be a positive normal float, got: {v} for feature {path} "
                              f"which is less than the minimum positive normal float: "
                              f"{np.finfo(np.float32).tiny}")
    if not spec.positive_score_impact:
        number = 1.0 / number
    return number


_WEIGHT_TYPES = frozenset((float, int))
_KEY_TYPES = frozenset((str,))
_TINY = float(np.finfo(np.float32).tiny)


def _valid_weights(weights: np.ndarray) -> bool:
    """Every weight a finite positive normal float32 (NaN fails every comparison)."""
    return bool(weights.size == 0 or (weights.min() >= _TINY and weights.max() <= 3.4e38))


def _features(value: Any, spec: FieldSpec) -> dict[str, float]:
    if not isinstance(value, dict):
        raise IllegalArgument(f"[rank_features] fields must be json objects, expected a START_OBJECT but got: "
                              f"{type(value).__name__}")
    if _WEIGHT_TYPES.issuperset(map(type, value.values())) and _KEY_TYPES.issuperset(map(type, value)):
        # the usual map, string keys and plain numbers: checked with no Python work per token
        try:
            weights = np.fromiter(value.values(), dtype=np.float64, count=len(value))
        except OverflowError:  # an integer past float64: the slow path below names it
            weights = np.full(len(value), np.nan)
        if _valid_weights(weights):
            if spec.positive_score_impact:
                return dict(zip(value, weights.tolist()))
            return dict(zip(value, (1.0 / weights).tolist()))
    items = {str(k): v for k, v in value.items() if v is not None}
    try:  # fast path: every weight a plain positive number
        weights = np.fromiter((float(v) if type(v) in (int, float) else np.nan for v in items.values()),
                              dtype=np.float64, count=len(items))
    except (TypeError, ValueError, OverflowError):
        weights = np.full(len(items), np.nan)
    if _valid_weights(weights):
        if not spec.positive_score_impact:
            weights = 1.0 / weights
        return dict(zip(items, weights.tolist()))
    out: dict[str, float] = {}
    for token, v in items.items():  # slow path: find the bad one and say which
        if isinstance(v, list):
            raise IllegalArgument(f"[rank_features] fields do not support indexing multiple values for the same "
                                  f"rank feature [{spec.path}.{token}] in the same document")
        out[token] = _feature_value(v, f"{spec.path}.{token}", spec)
    return out
