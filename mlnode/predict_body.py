"""Predict request parsing and response shaping, as ML Commons does for local models.

The runtime always returns every output tensor with numbers; here the request's ``target_response``,
``target_response_positions``, ``return_number`` and ``return_bytes`` shape what the client gets.

Before anything is tokenized, ``limit_texts`` bounds what one request may make the node do: how many texts it holds,
and how many characters of each reach the tokenizer (a model truncating at N tokens never uses more than N x a
generous characters-per-token factor; tokenizing the rest only costs memory).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from opensearch_contract.errors import IllegalArgument, ParsingError
from opensearch_contract.models import is_asymmetric

# ML Commons' AsymmetricTextEmbeddingParameters (the ``parameters`` of TEXT_EMBEDDING, SPARSE_ENCODING, SPARSE_TOKENIZE)
# and TextEmbeddingModel.isAsymmetricModel's errors
CONTENT_TYPES = ("QUERY", "PASSAGE")
_CONTENT_TYPE_ENUM = (
    "org.opensearch.ml.common.input.parameter.textembedding.AsymmetricTextEmbeddingParameters.EmbeddingContentType"
)
PREFIX_REQUIRED = (
    "When passing AsymmetricTextEmbeddingParameters, the model requires to be registered with at least one of "
    "`query_prefix` or `passage_prefix`."
)
CONTENT_TYPE_REQUIRED = (
    "The embedding model chosen is asymmetric. To use it, you must declare whether the input is of type `QUERY` or "
    "of type `PASSAGE`."
)
ALGORITHMS = ("text_embedding", "sparse_encoding", "sparse_tokenize", "text_similarity", "question_answering")
BATCHABLE = ("TEXT_EMBEDDING", "SPARSE_ENCODING", "SPARSE_TOKENIZE")
_NUMPY_TYPES = {
    "FLOAT32": "<f4",
    "FLOAT64": "<f8",
    "FLOAT16": "<f2",
    "INT32": "<i4",
    "INT64": "<i8",
    "INT8": "i1",
    "UINT8": "u1",
}


@dataclass
class PredictRequest:
    function_name: str
    texts: list[str] | None = None
    body: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] | None = None
    return_number: bool = True
    return_bytes: bool = False
    target_response: list[str] | None = None
    target_response_positions: list[int] | None = None


@dataclass(frozen=True)
class TextLimits:
    """What one predict request may hold: ``max_texts`` texts, ``max_length x chars_per_token`` characters a text."""

    max_texts: int
    max_length: int  # the model's, in tokens
    chars_per_token: int
    truncates: bool  # the model's truncation policy: cut longer texts, or refuse them

    @property
    def max_chars(self) -> int:
        return self.max_length * self.chars_per_token


def limit_texts(req: PredictRequest, limits: TextLimits, model_id: str) -> list[int]:
    """Refuse a request with too many texts; cut texts past ``limits.max_chars`` (a truncating model) or refuse them
    (one that does not truncate). Returns the indices of ``text_docs`` that were cut."""
    docs = req.texts if req.texts is not None else req.body.get("text_docs")
    if isinstance(docs, list) and len(docs) > limits.max_texts:
        raise IllegalArgument(
            f"[text_docs] has [{len(docs)}] texts; one predict request takes at most [{limits.max_texts}] "
            f"(setting neuralpipe.max_predict_texts)"
        )
    cap = limits.max_chars

    def fit(field: str, text: str) -> str:
        if len(text) <= cap:
            return text
        if not limits.truncates:
            raise IllegalArgument(
                f"[{field}] has [{len(text)}] characters; model [{model_id}] does not truncate its input and takes "
                f"at most [{cap}] characters ([{limits.max_length}] tokens x [{limits.chars_per_token}] characters "
                f"a token, setting neuralpipe.max_chars_per_token)"
            )
        return text[:cap]

    if req.texts is not None:
        cut = [i for i, text in enumerate(req.texts) if len(text) > cap]
        req.texts = [fit(f"text_docs][{i}", text) for i, text in enumerate(req.texts)]
        return cut
    body = dict(req.body)
    cut = []
    if isinstance(docs, list):
        cut = [i for i, text in enumerate(docs) if isinstance(text, str) and len(text) > cap]
        body["text_docs"] = [fit(f"text_docs][{i}", t) if isinstance(t, str) else t for i, t in enumerate(docs)]
    for key in ("query_text", "question", "context"):
        if isinstance(body.get(key), str):
            body[key] = fit(key, body[key])
    req.body = body
    return cut


def check_algorithm(algorithm: str) -> str:
    name = algorithm.lower()
    if name not in ALGORITHMS:
        raise IllegalArgument(f"Wrong function name [{algorithm}]; local models here serve: {', '.join(ALGORITHMS)}")
    return name.upper()


def _bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ParsingError(f"[{key}] must be a boolean, got [{value}]")


def _str_list(body: dict[str, Any], key: str, *, required: bool, empty_message: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        if required:
            raise IllegalArgument(empty_message)
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ParsingError(f"[{key}] must be an array of strings, got [{type(value).__name__}]")
    if required and not value:
        raise IllegalArgument(empty_message)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise IllegalArgument(f"[{key}] must be an array of strings; item [{i}] is [{item!r}]")
    return list(value)


def _check_content_type(function_name: str, parameters: dict[str, Any] | None, model_config: dict | None) -> None:
    """``parameters.content_type`` as ML Commons takes it: QUERY or PASSAGE (any case) for the three text functions;
    an asymmetric TEXT_EMBEDDING model requires ``parameters``, a symmetric one refuses them (sparse ones ignore)."""
    if function_name not in BATCHABLE:
        return
    if parameters is not None and parameters.get("content_type") is not None:
        value = str(parameters["content_type"]).upper()
        if value not in CONTENT_TYPES:
            raise IllegalArgument(f"No enum constant {_CONTENT_TYPE_ENUM}.{value}")
    if function_name != "TEXT_EMBEDDING":
        return
    if parameters is not None and not is_asymmetric(model_config):
        raise IllegalArgument(PREFIX_REQUIRED)
    if parameters is None and is_asymmetric(model_config):
        raise IllegalArgument(CONTENT_TYPE_REQUIRED)


def parse_predict(function_name: str, body: Any, model_config: dict[str, Any] | None = None) -> PredictRequest:
    """``function_name`` is the deployed model's (ML Commons runs the model's own function); ``model_config`` its
    registered one (whether it is asymmetric)."""
    if not isinstance(body, dict):
        raise ParsingError("predict request body must be a JSON object")
    parameters = body.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise ParsingError("[parameters] must be an object")
    _check_content_type(function_name, parameters, model_config)
    positions = body.get("target_response_positions")
    if positions is not None and (not isinstance(positions, list) or not all(isinstance(p, int) for p in positions)):
        raise ParsingError("[target_response_positions] must be an array of integers")
    req = PredictRequest(
        function_name=function_name,
        body=body,
        parameters=parameters,
        return_number=_bool(body, "return_number", True),
        return_bytes=_bool(body, "return_bytes", False),
        target_response=_str_list(body, "target_response", required=False, empty_message=""),
        target_response_positions=positions,
    )
    if function_name in BATCHABLE:
        req.texts = _str_list(body, "text_docs", required=True, empty_message="Empty text docs")
    elif function_name == "TEXT_SIMILARITY":
        query = body.get("query_text")
        if not isinstance(query, str) or not query:
            raise IllegalArgument("[query_text] is required for text_similarity and must be a non-empty string")
        _str_list(body, "text_docs", required=True, empty_message="Empty text docs")
    elif function_name == "QUESTION_ANSWERING":
        for key in ("question", "context"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise IllegalArgument(f"[{key}] is required for question_answering and must be a non-empty string")
    return req


def _shape_tensor(tensor: dict[str, Any], req: PredictRequest) -> dict[str, Any]:
    out = dict(tensor)
    data = out.get("data")
    if data is not None and req.return_bytes:
        dtype = _NUMPY_TYPES.get(str(out.get("data_type", "FLOAT32")).upper(), "<f4")
        raw = np.asarray(data, dtype=dtype).tobytes()
        out["byte_buffer"] = {"array": base64.b64encode(raw).decode("ascii"), "order": "LITTLE_ENDIAN"}
    if not req.return_number:
        out.pop("data", None)
    return out


def shape_results(results: list[dict[str, Any]], req: PredictRequest) -> dict[str, Any]:
    shaped = []
    for result in results:
        tensors = result.get("output", [])
        if req.target_response_positions is not None:
            tensors = [t for i, t in enumerate(tensors) if i in set(req.target_response_positions)]
        if req.target_response is not None:
            tensors = [t for t in tensors if t.get("name") in req.target_response]
        shaped.append({**result, "output": [_shape_tensor(t, req) for t in tensors]})
    return {"inference_results": shaped}
