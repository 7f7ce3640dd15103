"""What ML Commons' three ``ml_inference`` processors share (ingest, search request, search response): reading the
config, JSONPath reads and writes, the ``model_input`` template, the predict call and reading the model output.

Facts (ml-commons ``plugin/src/main/java/org/opensearch/ml/processor/``): ``MLInferenceIngestProcessor``,
``MLInferenceSearchRequestProcessor``, ``MLInferenceSearchResponseProcessor``, ``ModelExecutor``,
``InferenceProcessorAttributes``; ``common/.../utils/StringUtils.java`` (``toJson``, ``getParameterMap``).

- ``function_name`` defaults to ``remote``; a local function needs ``model_input``; ``full_response_path`` defaults
  to true for a local function and false for ``remote``; ``max_prediction_tasks`` 10; ``ignore_missing``,
  ``ignore_failure``, ``override``, ``one_to_one`` false.
- ``model_input`` is filled by three plain substitutions, in this order: ``${model_config.<k>}``,
  ``${input_map.<k>}``, ``${ml_inference.<k>}``. A value is the field's JSON, except a string, which goes in bare
  (so a template quotes it: ``["${input_map.text_docs}"]``); a list of strings goes in as a JSON array.
- paths are Jayway JSONPath (``$`` optional): a path without wildcards reads one value, one with wildcards a list.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import jsonpath

from opensearch_contract.errors import IllegalArgument, OpenSearchError
from processors.config import ConfigReader
from processors.mlclient import MLClient

TYPE = "ml_inference"
REMOTE = "remote"
LOCAL_FUNCTIONS = ("sparse_encoding", "sparse_tokenize", "text_embedding", "text_similarity")
DEFAULT_MAX_PREDICTION_TASKS = 10
DEFAULT_REMOTE_MODEL_INPUT = '{ "parameters": ${ml_inference.parameters} }'
DEFAULT_OUTPUT_FIELD = "inference_results"
EXTENSION_PREFIX = "ext.ml_inference"  # a response processor's output key with it goes to the response's ext
MISSING: Any = object()

Mapping = dict[str, str]


# -- config ----------------------------------------------------------------------------------------------------------

@dataclass
class MLInferenceConfig:
    model_id: str
    function_name: str
    model_input: str
    full_response_path: bool
    input_maps: list[Mapping] | None
    output_maps: list[Mapping] | None
    model_config: dict[str, str] | None
    max_prediction_tasks: int
    ignore_missing: bool
    override: bool = False
    one_to_one: bool = False
    query_template: str | None = None
    optional_input_maps: list[Mapping] | None = None
    optional_output_maps: list[Mapping] | None = None

    @property
    def is_remote(self) -> bool:
        return self.function_name.lower() == REMOTE

    def combined_input_maps(self) -> list[Mapping]:
        return combine_maps(self.input_maps, self.optional_input_maps)

    def combined_output_maps(self) -> list[Mapping]:
        return combine_maps(self.output_maps, self.optional_output_maps)


def combine_maps(first: list[Mapping] | None, second: list[Mapping] | None) -> list[Mapping]:
    """ModelExecutor.combineMaps: the i-th maps of both lists merged (the second's keys win)."""
    first, second = first or [], second or []
    return [{**(first[i] if i < len(first) else {}), **(second[i] if i < len(second) else {})}
            for i in range(max(len(first), len(second)))]


def _mappings(r: ConfigReader, prop: str) -> list[Mapping] | None:
    raw = r.optional_list(prop)
    if raw is None:
        return None
    out = []
    for item in raw:
        if not isinstance(item, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in item.items()):
            raise r.error(prop, f"each element must be an object of field names to field names or JSON paths "
                                f"(strings), got [{json.dumps(item)}]")
        out.append(dict(item))
    return out


def parameter_map(values: dict[str, Any]) -> dict[str, str]:
    """StringUtils.getParameterMap: strings as they are, anything else as its JSON."""
    return {str(k): v if isinstance(v, str) else to_json(v) for k, v in values.items()}


def read_config(r: ConfigReader, *, search: bool, response: bool = False) -> MLInferenceConfig:
    """The properties every ``ml_inference`` processor reads, with ML Commons' defaults and checks (the messages are
    theirs; a wrong ``function_name`` is caught here instead of at the first predict)."""
    request = search and not response
    known = ["model_id", "model_config", "input_map", "output_map", "max_prediction_tasks", "ignore_missing",
             "function_name", "model_input", "full_response_path"]
    known += ["query_template"] if request else ["override"]
    known += ["optional_input_map", "optional_output_map"] if search else []
    known += ["one_to_one"] if response else []
    # every property is taken before any is checked, so a bad one is not mistaken for a misspelling of the next
    outer = r
    r = ConfigReader(outer.type, outer.tag, {k: outer.value(k) for k in known if k in outer.config})
    model_id = r.optional_string("model_id")
    query_template = r.optional_string("query_template") if request else None
    raw_config = r.optional_map("model_config")
    input_maps = _mappings(r, "input_map")
    output_maps = _mappings(r, "output_map")
    optional_in = _mappings(r, "optional_input_map") if search else None
    optional_out = _mappings(r, "optional_output_map") if search else None
    max_tasks = r.integer("max_prediction_tasks", DEFAULT_MAX_PREDICTION_TASKS)
    assert max_tasks is not None
    ignore_missing = r.boolean("ignore_missing", False)
    override = r.boolean("override", False) if not request else False
    function_name = r.string("function_name", REMOTE.upper())
    one_to_one = r.boolean("one_to_one", False) if response else False
    model_input = r.optional_string("model_input")
    full_response_path = r.boolean("full_response_path", function_name.lower() != REMOTE)
    if model_id is None:
        raise r.error("model_id", "required property is missing")
    if request:
        if not input_maps and not optional_in:
            raise r.illegal("Please provide at least one non-empty input_map or optional_input_map for ML Inference "
                            "Search Request Processor")
        if not output_maps and not optional_out:
            raise r.illegal("Please provide at least one non-empty output_map or optional_output_map for ML "
                            "Inference Search Request Processor")
    if function_name.lower() not in (REMOTE, *LOCAL_FUNCTIONS):
        raise r.illegal(f"Wrong function name [{function_name}]; valid values: "
                        f"[{', '.join((REMOTE, *LOCAL_FUNCTIONS))}]", "function_name")
    if function_name.lower() == REMOTE:
        model_input = model_input if model_input is not None else DEFAULT_REMOTE_MODEL_INPUT
    elif model_input is None:
        raise r.illegal("Please provide model input when using a local model in ML Inference Processor")
    if max_tasks < 1:
        raise r.illegal(f"max_prediction_tasks must be a positive integer, got [{max_tasks}]", "max_prediction_tasks")
    config = MLInferenceConfig(
        model_id=model_id, function_name=function_name, model_input=model_input,
        full_response_path=full_response_path, input_maps=input_maps, output_maps=output_maps,
        model_config=parameter_map(raw_config) if raw_config is not None else None,
        max_prediction_tasks=max_tasks, ignore_missing=ignore_missing, override=override, one_to_one=one_to_one,
        query_template=query_template, optional_input_maps=optional_in, optional_output_maps=optional_out)
    if not search:
        if input_maps is not None and len(input_maps) > max_tasks:
            raise r.illegal(f"The number of prediction task setting in this process is {len(input_maps)}. It exceeds "
                            f"the max_prediction_tasks of {max_tasks}. Please reduce the size of input_map or "
                            f"increase max_prediction_tasks.")
        if input_maps is not None and output_maps is not None and len(output_maps) != len(input_maps):
            raise r.illegal("The length of output_map and the length of input_map do no match.")
        return config
    ins, outs = config.combined_input_maps(), config.combined_output_maps()
    if len(ins) > max_tasks:
        raise r.illegal(f"The number of prediction task setting in this process is {len(ins)}. It exceeds the "
                        f"max_prediction_tasks of {max_tasks}. Please reduce the size of input_map or "
                        f"optional_input_map or increase max_prediction_tasks.")
    if (outs and ins or not response) and len(outs) != len(ins):
        raise r.illegal(f"when output_maps/optional_output_maps and input_maps/optional_input_maps are provided, "
                        f"their length needs to match. The input is in length of {len(ins)}, while output_maps is in "
                        f"the length of {len(outs)}. Please adjust mappings.")
    if response and one_to_one and any(k.startswith(EXTENSION_PREFIX) for m in output_maps or [] for k in m):
        raise r.illegal("Write model response to search extension does not support when one_to_one is true.")
    return config


# -- values as ML Commons writes them -----------------------------------------------------------------------------

def to_json(value: Any) -> str:
    """StringUtils.toJson: a string as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def java_string(value: Any) -> str:
    """``String.valueOf`` of a value (what commons-text's StringSubstitutor puts in a ``query_template``): a list as
    ``[a, b]``, a string bare."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return _java_double(value)
    if isinstance(value, list):
        return "[" + ", ".join(java_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={java_string(v)}" for k, v in value.items()) + "}"
    return str(value)


def _java_double(x: float) -> str:
    # the digits matter, not Java's layout: the text is parsed again as JSON (repr round-trips every double)
    if math.isnan(x) or math.isinf(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    return repr(x)


_VAR = {prefix: re.compile(r"\$\{" + re.escape(prefix) + r"([^}]+)\}") for prefix in
        ("model_config.", "input_map.", "ml_inference.", "")}


def substitute(template: str, values: dict[str, str], prefix: str) -> str:
    """commons-text StringSubstitutor on ``${<prefix><key>}``: known keys replaced, unknown ones left as written."""
    return _VAR[prefix].sub(lambda m: values.get(m.group(1), m.group(0)), template)


# -- JSONPath -------------------------------------------------------------------------------------------------------

_LENGTH = ".length()"


def _compile(path: str) -> Any:
    try:
        return jsonpath.compile(path)
    except jsonpath.JSONPathError as exc:
        raise IllegalArgument(f"invalid JSON path [{path}]: {str(exc).splitlines()[0]}") from None


def _singular(compiled: Any) -> bool:
    """Jayway's "definite" path: no wildcard, slice, filter or deep scan (a union is never singular)."""
    return isinstance(compiled, jsonpath.JSONPath) and compiled.singular_query()


def is_json_path(path: str) -> bool:
    """StringUtils.isValidJSONPath."""
    if not path or not path.strip():
        return False
    try:
        jsonpath.compile(path[:-len(_LENGTH)] if path.endswith(_LENGTH) else path)
    except jsonpath.JSONPathError:
        return False
    return True


def read_path(obj: Any, path: str) -> Any:
    """Jayway's read: one value (or MISSING) for a path without wildcards, a list of the matches otherwise.
    ``.length()`` at the end is Jayway's length function."""
    length = path.endswith(_LENGTH)
    if length:
        path = path[:-len(_LENGTH)]
    compiled = _compile(path)
    matches = [m.obj for m in compiled.finditer(obj)]
    if _singular(compiled):
        value = matches[0] if matches else MISSING
    else:
        value = matches
    if length and value is not MISSING:
        return len(value) if isinstance(value, (list, dict, str)) else MISSING
    return value


def match_paths(obj: Any, path: str) -> list[tuple[Any, ...]]:
    """The locations (key / index parts) a path matches, like Jayway's AS_PATH_LIST."""
    return [tuple(m.parts) for m in _compile(path).finditer(obj)]


def set_path(obj: Any, parts: tuple[Any, ...], value: Any) -> None:
    """Set a value at parts, creating objects on the way (an IngestDocument's setFieldValue)."""
    node = obj
    for part in parts[:-1]:
        if isinstance(node, list):
            index = int(part)
            if not -len(node) <= index < len(node):
                raise IllegalArgument(f"[{part}] is out of bounds for array with length [{len(node)}] as part of "
                                      f"path [{dotted(parts)}]")
            node = node[index]
            continue
        if not isinstance(node, dict):
            raise IllegalArgument(f"cannot set [{part}] with parent object of type [{type(node).__name__}] as part "
                                  f"of path [{dotted(parts)}]")
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise IllegalArgument(f"cannot set [{last}] with parent object of type [{type(node).__name__}] as part of "
                              f"path [{dotted(parts)}]")


def dotted(parts: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in parts)


def dot_path_parts(obj: Any, path: str) -> tuple[Any, ...] | None:
    """An ingest dot path (``a.b``, ``book.0.title``) resolved against obj: its parts if every step exists."""
    node = obj
    parts: list[Any] = []
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            parts.append(part)
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            parts.append(int(part))
            node = node[int(part)]
        else:
            return None
    return tuple(parts)


def new_field_locations(obj: Any, field_name: str) -> list[tuple[Any, ...]]:
    """ModelExecutor.writeNewDotPathForNestedObject: where a new field goes. Without a dot, at the top; else next to
    each match of the leading path (``book.*.chunk.text.*.context_embedding`` -> one per ``text`` item). A leading
    path without wildcards matches when its parent exists (Jayway's DEFAULT_PATH_LEAF_TO_NULL)."""
    if "." not in field_name:
        return [(field_name,)]
    leading, leaf = field_name.rsplit(".", 1)
    try:
        compiled = jsonpath.compile(leading)
    except jsonpath.JSONPathError:
        return []
    found = [tuple(m.parts) + (leaf,) for m in compiled.finditer(obj)]
    if found or not _singular(compiled):
        return found
    parts = [p for p in re.split(r"\.|\[|\]", leading.lstrip("$").strip(".")) if p]
    parent = dot_path_parts(obj, ".".join(parts[:-1])) if len(parts) > 1 else ()
    if parent is None:
        return []
    return [tuple(parent) + (parts[-1], leaf)]


def has_path(obj: Any, path: str) -> bool:
    try:
        value = read_path(obj, path)
    except IllegalArgument:
        return False
    return value is not MISSING and value is not None


# -- predict ---------------------------------------------------------------------------------------------------------

def build_predict_body(config: MLInferenceConfig, input_values: dict[str, str]) -> dict[str, Any]:
    """ModelExecutor.getMLModelInferenceRequest: fill ``model_input`` and parse it."""
    model_config = dict(config.model_config or {})
    parameters = {**model_config, **input_values}
    inputs = {k: v for k, v in parameters.items() if k not in model_config}
    if config.is_remote:
        ml_params = {"parameters": to_json(parameters)}
    else:
        ml_params = parameters
    payload = substitute(config.model_input, model_config, "model_config.")
    payload = substitute(payload, inputs, "input_map.")
    payload = substitute(payload, ml_params, "ml_inference.")
    try:
        body = json.loads(payload)
    except ValueError:
        raise IllegalArgument(f"Invalid payload: {payload}") from None
    if not isinstance(body, dict):
        raise IllegalArgument(f"Invalid payload: {payload}")
    return body


async def predict(ml: MLClient, config: MLInferenceConfig, body: dict[str, Any]) -> dict[str, Any]:
    if config.is_remote:
        return await ml.predict_model(config.model_id, body)
    return await ml.predict(config.model_id, config.function_name.lower(), body)


async def predict_batched(ml: MLClient, config: MLInferenceConfig, bodies: list[dict[str, Any]]
                          ) -> list[dict[str, Any] | Exception]:
    """One output per body. Bodies alike but for their ``text_docs`` go to the model as one predict call (the
    results, one per text, are split back); at most ``max_prediction_tasks`` calls run at once."""
    groups: dict[str, list[int]] = {}
    for i, body in enumerate(bodies):
        docs = body.get("text_docs")
        if not config.is_remote and isinstance(docs, list) and docs and all(isinstance(t, str) for t in docs):
            key = json.dumps({k: v for k, v in body.items() if k != "text_docs"}, sort_keys=True)
        else:
            key = f"#{i}"
        groups.setdefault(key, []).append(i)
    out: list[dict[str, Any] | Exception] = [IllegalArgument("not predicted")] * len(bodies)
    gate = asyncio.Semaphore(config.max_prediction_tasks)

    async def one(i: int) -> None:
        async with gate:
            try:
                out[i] = await predict(ml, config, bodies[i])
            except Exception as exc:  # this body's error, reported for its own document or request
                out[i] = as_error(exc)

    async def merged(members: list[int]) -> None:
        if len(members) == 1:
            await one(members[0])
            return
        counts = [len(bodies[i]["text_docs"]) for i in members]
        body = {**bodies[members[0]], "text_docs": [t for i in members for t in bodies[i]["text_docs"]]}
        async with gate:
            try:
                result = await predict(ml, config, body)
            except Exception:  # retried one by one below, so each body gets its own answer
                result = None
        results = result.get("inference_results") if isinstance(result, dict) else None
        if result is None or not isinstance(results, list) or len(results) != sum(counts):
            await asyncio.gather(*(one(i) for i in members))  # each on its own: its own error or result
            return
        start = 0
        for i, n in zip(members, counts):
            out[i] = {**result, "inference_results": results[start:start + n]}
            start += n

    await asyncio.gather(*(merged(members) for members in groups.values()))
    return out


def output_value(output: dict[str, Any], field_name: str | None, config: MLInferenceConfig) -> Any:
    """ModelExecutor.getModelOutputValue, with its messages ("An unexpected error occurred: ..." wraps them)."""
    try:
        return _output_value(output, field_name, config)
    except (IllegalArgument, ValueError, KeyError, TypeError, IndexError) as exc:
        reason = exc.reason if isinstance(exc, OpenSearchError) else str(exc)
        raise IllegalArgument(f"An unexpected error occurred: {reason}") from None


def _output_value(output: dict[str, Any], field_name: str | None, config: MLInferenceConfig) -> Any:
    if not config.full_response_path:
        return _tensor_value(output, field_name, config.ignore_missing)
    if field_name is None:
        return output
    try:
        value = read_path(output, field_name)
    except IllegalArgument:
        value = MISSING
    if value is MISSING or value is None:
        if config.ignore_missing:
            return output
        raise IllegalArgument(f"model inference output cannot find such json path: {field_name}")
    return value


def _tensor_value(output: dict[str, Any], field_name: str | None, ignore_missing: bool) -> Any:
    results = output.get("inference_results") or []
    if not results:
        raise IllegalArgument("Model outputs are null or empty.")
    tensors = (results[0] or {}).get("output") or []
    if not tensors:
        raise IllegalArgument("Output tensors are null or empty.")
    values = [_one_tensor(t, field_name, ignore_missing) for t in tensors if t is not None]
    return values[0] if len(tensors) == 1 else values


def _one_tensor(tensor: dict[str, Any], field_name: str | None, ignore_missing: bool) -> Any:
    data_map = tensor.get("dataAsMap")
    if data_map is None:
        if "data" not in tensor:
            raise IllegalArgument("unsupported data type in prediction data.")
        return list(tensor["data"])
    if field_name is None:
        return data_map
    if field_name in data_map:
        return data_map[field_name]
    try:
        value = read_path(data_map, field_name)
    except IllegalArgument:
        value = MISSING
    if value is MISSING:
        if ignore_missing:
            return data_map
        raise IllegalArgument(f"model inference output cannot find field name: {field_name}")
    return value


def as_error(exc: Exception) -> OpenSearchError:
    return exc if isinstance(exc, OpenSearchError) else IllegalArgument(str(exc))
