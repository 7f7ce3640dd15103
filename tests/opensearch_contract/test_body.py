"""Request bodies: what parses, and the 400 every body that cannot be a request gets (nothing reaches a handler)."""

import pytest

from opensearch_contract.body import MAX_DEPTH, parse_object
from opensearch_contract.errors import OpenSearchError
from opensearch_contract.settings import flatten_settings, nest_settings, parse_bool, parse_int

pytestmark = pytest.mark.unit


def test_object_and_empty_bodies() -> None:
    assert parse_object(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    assert parse_object(b"  ") == {}


@pytest.mark.parametrize(("raw", "error_type", "reason"), [
    (b"", "parse_exception", "request body is required"),
    (b"{not json", "parse_exception", "Failed to parse request body as JSON: Expecting property name"),
    (b"[1, 2]", "parse_exception", "request body must be a JSON object, got a array"),
    (b'"x"', "parse_exception", "request body must be a JSON object, got a string"),
    (b'{"v": 1e309}', "parse_exception", "number [1e309] is out of range for a double"),
    (b'{"v": NaN}', "parse_exception", "[NaN] is not a JSON number"),
    (b'{"v": "\\ud800"}', "parse_exception", "lone surrogate"),
    (b'{"\\udfff": 1}', "parse_exception", "lone surrogate"),
    (b'{"v": ' + b"9" * 5000 + b"}", "parse_exception", "Failed to parse request body as JSON"),
    (b'{"v": ' + b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5) + b"}", "parse_exception", "nests deeper"),
    (b'{"v": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "parse_exception", "nests deeper"),
    (b"\xff\xfe{}", "parse_exception", "not UTF-8"),
])
def test_bad_bodies_are_400s(raw: bytes, error_type: str, reason: str) -> None:
    with pytest.raises(OpenSearchError) as info:
        parse_object(raw, required=True)
    body = info.value.to_body()
    assert body["status"] == 400
    assert body["error"]["type"] == error_type
    assert body["error"]["root_cause"][0]["type"] == error_type
    assert reason in body["error"]["reason"]


def test_settings_values() -> None:
    assert flatten_settings({"index": {"knn": True, "knn.algo_param": {"ef_search": 5}}}) == {
        "index.knn": True, "index.knn.algo_param.ef_search": 5}
    assert nest_settings({"index.knn": "true", "index.number_of_shards": "1"}) == {
        "index": {"knn": "true", "number_of_shards": "1"}}
    assert parse_bool("false") is False
    assert parse_int("7", "x", 0, 10) == 7
    with pytest.raises(OpenSearchError, match=r"Failed to parse value \[maybe\] as only \[true\] or \[false\]"):
        parse_bool("maybe")
    with pytest.raises(OpenSearchError, match=r"Failed to parse value \[x\] for setting \[index.knn.algo_param"):
        parse_int("x", "index.knn.algo_param.ef_search")
    with pytest.raises(OpenSearchError, match=r"Failed to parse value \[11\] for setting \[n\] must be <= 10"):
        parse_int(11, "n", 0, 10)
