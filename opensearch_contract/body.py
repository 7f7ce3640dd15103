"""Request and response bodies: JSON in, JSON out, with OpenSearch's errors for what cannot be a request body.

Plain functions with no event loop, so a node can parse, run and encode in one worker-thread hand-off. A body is
refused (400, nothing changes) when it is not valid UTF-8 JSON, is not an object, nests deeper than OpenSearch's
parser allows, holds a number no float can carry (``1e309``) or an integer of more digits than Python parses, or a
string with a lone surrogate escape (``"\\ud800"``), which no later step could encode.

A response is always encodable: a lone surrogate that reached a value anyway (a document stored by an older version)
is rendered as U+FFFD, the replacement character, rather than failing the request.

Both directions try orjson first (a 384-float vector costs the stdlib ~1 us a float each way) and fall back to the
stdlib wherever orjson would answer differently: whatever orjson refuses or may read otherwise (integers past 64 bits,
deep nesting) is parsed by the stdlib, which gives the error its message, and a response that holds NaN or an
infinity (orjson prints ``null``) or anything orjson cannot print is encoded by the stdlib.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

import orjson

from .errors import ParseError

# OpenSearch's XContent parser refuses objects nested deeper than this (``MAX_DEPTH`` of its JSON parser settings).
MAX_DEPTH = 1000


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str, a valid pair is one code point already


def encode(body: Any) -> str:
    try:
        fast = orjson.dumps(body)
    except TypeError:  # non-string keys, integers past 64 bits, lone surrogates, ...: the stdlib's way below
        pass
    else:
        if b"null" not in fast:  # orjson prints NaN and infinities as null, the stdlib as NaN / Infinity
            return fast.decode("utf-8")
    text = json.dumps(body, ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(scrub_surrogates(body), ensure_ascii=False)
    return text


def scrub_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {scrub_surrogates(k): scrub_surrogates(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_surrogates(v) for v in value]
    return value


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number [{text}] is out of range for a double")
    return value


def _reject_constant(name: str) -> float:
    raise ValueError(f"[{name}] is not a JSON number")


def _check(value: Any, depth: int = 0) -> None:
    """Depth and lone surrogates, walked once after parsing (json's own recursion limit is the interpreter's)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"the body nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string holds a lone surrogate escape (invalid UTF-16)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, depth + 1)
            _check(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)


# orjson reads an integer past 64 bits as a float, where the stdlib keeps it an int. In a body's bytes mapped by
# _DIGIT_CLASSES, such an integer is a space and 19 ones: digits -> "1", "." "e" "E" -> "x" (so a fraction's digits
# follow an "x"), anything else -> " ". A float or a string with a long digit run may match too: it is only slower.
_DIGIT_CLASSES = bytes(0x31 if chr(b).isdigit() and b < 128 else 0x78 if b in b".eE" else 0x20 for b in range(256))
_LONG_INTEGER = b" " + b"1" * 19


def _long_integer(raw: bytes | str) -> bool:
    """Whether ``raw`` may hold an integer of 19 digits or more (C-speed: no per-number Python work)."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    return _LONG_INTEGER in b" " + data.translate(_DIGIT_CLASSES)


def _fast_parse(raw: bytes | str, *, depth_checked: bool = False) -> Any:
    """The body parsed by orjson, or ``_SLOW`` when the stdlib must parse it: orjson refuses it (malformed, NaN, out
    of range, lone surrogates, invalid UTF-8, ...: the stdlib then names the fault), it may nest deeper than
    ``MAX_DEPTH`` or it may hold an integer past 64 bits. What orjson accepts otherwise is what the stdlib reads."""
    if not depth_checked:
        nesting = raw.count(b"[") + raw.count(b"{") if isinstance(raw, bytes) else raw.count("[") + raw.count("{")
        if nesting > MAX_DEPTH:
            return _SLOW
    if _long_integer(raw):
        return _SLOW
    try:
        return orjson.loads(raw)
    except (ValueError, RecursionError):
        return _SLOW


_SLOW = object()


def loads(raw: bytes | str) -> Any:
    """What ``json.loads`` returns for a text this code wrote itself (stored documents: parsed before they were
    stored, so never nested past ``MAX_DEPTH``), orjson's way when that reads the same."""
    value = _fast_parse(raw, depth_checked=True)
    return json.loads(raw) if value is _SLOW else value


def parse_json(raw: bytes | str) -> Any:
    """Any JSON value, or a ``parse_exception`` naming what is wrong with it (as OpenSearch answers a body it cannot
    turn into a map)."""
    value = _fast_parse(raw)
    if value is not _SLOW:
        return value
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_float=_finite, parse_constant=_reject_constant)
        _check(value)
    except json.JSONDecodeError as exc:
        raise ParseError(f"Failed to parse request body as JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                           ) from None
    except UnicodeDecodeError as exc:
        raise ParseError(f"Failed to parse request body as JSON: not UTF-8 ({exc.reason})") from None
    except RecursionError:
        raise ParseError(f"Failed to parse request body as JSON: the body nests deeper than {MAX_DEPTH} levels"
                           ) from None
    except ValueError as exc:  # out-of-range numbers, over-long integers, NaN/Infinity, lone surrogates
        reason = str(exc)
        if "integer string conversion" in reason:
            reason = f"an integer has more than {sys.get_int_max_str_digits()} digits"
        raise ParseError(f"Failed to parse request body as JSON: {reason}") from None
    return value


def parse_object(raw: bytes | str, *, required: bool = False) -> dict[str, Any]:
    """A request body as a JSON object; ``{}`` when empty and not ``required``."""
    if not raw.strip():
        if required:
            raise ParseError("request body is required")
        return {}
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ParseError(f"request body must be a JSON object, got a {_json_kind(body)}")
    return body


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
