"""Request bodies: what parses, and the 400 every body that cannot be a request gets (nothing reaches a handler)."""

import json

import pytest

from opensearch_contract.body import MAX_DEPTH, encode, loads, parse_json, parse_object
from opensearch_contract.errors import OpenSearchError
from opensearch_contract.settings import flatten_settings, nest_settings, parse_bool, parse_int

pytestmark = pytest.mark.unit


def test_object_and_empty_bodies() -> None:
    assert parse_object(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    assert parse_object(b"  ") == {}


@pytest.mark.parametrize("raw", [
    b'{"id": 12345678901234567890, "neg": -98765432109876543210, "big": 1234567890123456789012345}',
    b'[9223372036854775807, -9223372036854775808, 18446744073709551615, 1e5, 1E-3, -0.0, -0, 4.9e-324]',
    b'{"a": 1, "a": 2, "s": "\\u00e9\\ud83d\\ude00", "n": null, "t": true, "f": 1234567890123456789.5}',
    b'{"v": [0.0021934819221496582, 0.06377755105495453, -1.5e-7, 123456789012345678901234e-3]}',
    b'{"x": "12345678901234567890", "e": 1.0e308, "u": 2.4e-324}',
])
def test_bodies_read_as_the_stdlib_reads_them(raw: bytes) -> None:
    """Integers past 64 bits stay exact ints, floats the same doubles, the last duplicate key wins: the fast parser
    (orjson) answers only where its answer is the stdlib's."""
    want = json.loads(raw)
    for got in (parse_json(raw), parse_json(raw.decode()), loads(raw.decode())):
        assert got == want
        assert json.dumps(got) == json.dumps(want)  # types too: 12345678901234567890 is no float


def test_responses_encode_as_the_stdlib_would_print_them() -> None:
    """NaN and infinities stay NaN / Infinity, non-string keys become strings, lone surrogates U+FFFD: whatever the
    fast encoder would print otherwise goes the stdlib's way."""
    assert json.loads(encode({"a": [1.5, 1e-05, 10**30], "b": None, "c": "\u00e9"})) == {
        "a": [1.5, 1e-05, 10**30], "b": None, "c": "\u00e9"}
    assert encode({"s": float("nan"), "i": float("inf")}) == '{"s": NaN, "i": Infinity}'
    assert encode({1: "x"}) == '{"1": "x"}'
    assert encode({"v": "a\ud800"}) == '{"v": "a\ufffd"}'


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
    (b'{"v": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}", "parse_exception", "nests deeper"),
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
