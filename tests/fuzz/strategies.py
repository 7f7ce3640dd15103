"""Hypothesis strategies for abusive requests: JSON text with values Python's json module cannot even write
(``1e309``, 5,000-digit integers, ``NaN``, lone surrogates as escapes, 1,500 levels of nesting), valid-shaped bodies
with one value mutated, malformed bytes and NDJSON, odd path parameters and query strings.

Bodies are built as JSON *text* so that every odd literal reaches the node exactly as written.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

DEEP = 1500
ODD_LITERALS = [
    "NaN", "-NaN", "Infinity", "-Infinity", "1e309", "-1e309", "1e-400", "1" + "0" * 5000, "-" + "9" * 5000,
    "9223372036854775808", "-9223372036854775809", "18446744073709551616", "2147483648", "-1", "0", "-0", "0.5",
    "1e9", "1000000000", "100000000000000000000", "1.7976931348623157e308", "4.9e-324",
    '"\\ud800"', '"a\\udc00b"', '"\\udfff\\ud800"', '"\\u0000"', '"\\u0000\\u001f"', '""', '" "', '"50%"', '"x"',
    '"-1"', '"1e309"', '"true"', '"null"', '"\\u202e"', '"\u00e9\u4e2d\U0001f600"',
    "null", "true", "false", "[]", "{}", '[1, "a"]', '{"doc": 5}', "[null]", "[[[]]]", '{"": ""}',
    "[" * DEEP + "]" * DEEP, '{"a":' * DEEP + "1" + "}" * DEEP, '[{"a":' * (DEEP // 2) + "1" + "}]" * (DEEP // 2),
    '"' + "x" * 100_000 + '"', '"' + "word " * 20_000 + '"', "[" + ",".join(["1.5"] * 20_000) + "]",
    '"' + "\\ud83d\\ude00" * 1000 + '"',
]
UNKNOWN_KEYS = ["fz_unknown", "", "\u00e9", "a.b", "_source", "__proto__", "x" * 300]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


def _leaf_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(ODD_LITERALS),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(dumps),
        st.text(max_size=40).map(lambda s: json.dumps(s, ensure_ascii=False)),
        st.text(max_size=40).map(json.dumps),  # \\u escapes, surrogates escaped
        st.booleans().map(dumps),
    )


json_fragment: st.SearchStrategy[str] = st.recursive(
    _leaf_text(),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.dictionaries(st.text(max_size=8), inner, max_size=4).map(
            lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}"),
    ),
    max_leaves=8,
)


def paths_of(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (dict keys / list indices) into a JSON value, the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths_of(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += paths_of(item, prefix + (i,))
    return out


def render(value: Any, target: tuple, action: str, fragment: str, here: tuple = ()) -> str:
    """``value`` as JSON text, with the value at ``target`` replaced by ``fragment`` (action ``replace``), removed
    (``drop``: from its dict or list) or, for a dict, given an extra key (``add``: the fragment's key is odd)."""
    if here == target and action == "replace":
        return fragment
    if isinstance(value, dict):
        parts = [f"{json.dumps(k)}:{render(v, target, action, fragment, here + (k,))}" for k, v in value.items()
                 if not (action == "drop" and here + (k,) == target)]
        if here == target and action == "add":
            parts.append(f"{fragment}")
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list):
        parts = [render(v, target, action, fragment, here + (i,)) for i, v in enumerate(value)
                 if not (action == "drop" and here + (i,) == target)]
        return "[" + ",".join(parts) + "]"
    return dumps(value)


@st.composite
def mutated_json(draw: st.DrawFn, template: Any) -> str:
    """``template`` with one value replaced by an odd fragment, a key dropped, or an unknown key added; sometimes
    unchanged (the valid request must keep working too)."""
    action = draw(st.sampled_from(["replace", "replace", "tweak", "tweak", "drop", "add", "keep"]))
    targets = paths_of(template)
    if action == "tweak":  # a value of the same type, at its edges: reaches the code behind the type checks
        leaves = [p for p in targets if isinstance(_at(template, p), (int, float, str)) and p]
        if leaves:
            target = draw(st.sampled_from(leaves))
            return render(template, target, "replace", draw(_same_type(_at(template, target))))
        action = "replace"
    if action == "add":
        targets = [p for p in targets if _at(template, p).__class__ is dict] or [()]
    elif action == "drop":
        targets = [p for p in targets if p] or [()]
    target = draw(st.sampled_from(targets))
    if action == "keep":
        return render(template, (None,), "keep", "")
    fragment = draw(json_fragment)
    if action == "add":
        fragment = f"{json.dumps(draw(st.sampled_from(UNKNOWN_KEYS)))}:{fragment}"
    if action == "drop" and not target:
        action = "replace"
    return render(template, target, action, fragment)


def _same_type(value: Any) -> st.SearchStrategy[str]:
    if isinstance(value, bool):
        return st.sampled_from(["true", "false"])
    if isinstance(value, int):
        return st.one_of(st.sampled_from(["0", "-1", "1", "2147483647", "2147483648", "1000000000", "10000",
                                          "10001", "-2147483648", "9" * 30]),
                         st.integers(-(2**40), 2**40).map(str))
    if isinstance(value, float):
        return st.one_of(st.sampled_from(["0.0", "-0.0", "1e38", "1e39", "-1e39", "1e-45", "3.4028235e38",
                                          "1e308", "-1.5"]),
                         st.floats(allow_nan=False, allow_infinity=False).map(dumps))
    return st.one_of(st.sampled_from(['""', '" "', '"' + "a" * 10_000 + '"', '"\\ud800"', '"*"', '"_all"',
                                      '"fz-x"', '"\\u0000"', '"' + "word " * 20_000 + '"', '"\u00e9\u4e2d"']),
                     st.text(max_size=30).map(json.dumps))


def _at(value: Any, path: tuple) -> Any:
    for step in path:
        value = value[step]
    return value


@st.composite
def malformed_bytes(draw: st.DrawFn, text: str) -> bytes:
    """Bytes that are not a JSON document: truncated, spliced with junk, invalid UTF-8, a BOM, two documents..."""
    raw = text.encode("utf-8", errors="surrogatepass")
    kind = draw(st.sampled_from(["truncate", "junk", "binary", "bom", "two", "utf16", "empty", "ws", "latin1"]))
    if kind == "truncate":
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    if kind == "junk":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"\xff\xfe", b"\x00", b"}", b",,", b"'", b"\xc3(", b"\xed\xa0\x80"]))\
            + raw[at:]
    if kind == "binary":
        return draw(st.binary(max_size=64))
    if kind == "bom":
        return b"\xef\xbb\xbf" + raw
    if kind == "two":
        return raw + b" " + raw
    if kind == "utf16":
        return text.encode("utf-16", errors="surrogatepass")
    if kind == "empty":
        return b""
    if kind == "ws":
        return b" \n\t "
    return text.encode("latin-1", errors="replace")


@st.composite
def ndjson(draw: st.DrawFn, pairs: list[tuple[Any, Any | None]]) -> bytes:
    """NDJSON from (header, body) templates (body None: a header-only line, as a _bulk delete); some lines
    mutated, some dropped or duplicated, the trailing newline sometimes missing."""
    lines: list[str] = []
    for header, body in draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=4)):
        lines.append(draw(mutated_json(header)) if draw(st.booleans()) else render(header, (None,), "keep", ""))
        if body is not None:
            lines.append(draw(mutated_json(body)) if draw(st.booleans()) else render(body, (None,), "keep", ""))
    shape = draw(st.sampled_from(["ok", "ok", "no-final-newline", "drop-line", "blank-lines", "junk-line", "crlf"]))
    if shape == "drop-line" and len(lines) > 1:
        del lines[draw(st.integers(0, len(lines) - 1))]
    elif shape == "junk-line":
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["{", "x", "[]", "null", "\ufeff{}"])))
    elif shape == "blank-lines":
        lines.insert(draw(st.integers(0, len(lines))), "")
    sep = "\r\n" if shape == "crlf" else "\n"
    text = sep.join(lines) + ("" if shape == "no-final-newline" else sep)
    return text.encode("utf-8", errors="surrogatepass")


def pct(text: str) -> str:
    """Percent-encode what an HTTP request line cannot carry raw (non-ASCII, controls, space, '#', '?', '%')."""
    return quote(text, safe="!$&'()*+,;=:@-._~/", errors="surrogatepass")


ODD_SEGMENTS_SAFE = [  # odd path values that cannot name or match a sentinel (used on routes that change things)
    "..", ".", "%00", "%2e%2e", "%2E", "%", "%zz", "%ff", "%c3%28", "%ed%a0%80", "-x", "+x", "UPPER", "a" * 300,
    "x" * 5000, "fz%00x", "fz..", "fz%20x", "fz%0d%0ax", "%E2%80%AE", "%F0%9F%98%80", "fz%2Fx", "%5C", "fz:x",
    "fz\"x".replace('"', "%22"), "fz<x>".replace("<", "%3C").replace(">", "%3E"), "_x", "_doc", "_search", "fz#x"
    .replace("#", "%23"), "0", "-1", "99999999999999999999",
]
ODD_SEGMENTS_READONLY = ODD_SEGMENTS_SAFE + ["_all", "*", "%2A", "sentinel*", "*,-*", "fz*,sentinel-idx", ",", "_"]


@st.composite
def segment(draw: st.DrawFn, named: list[str], *, destructive: bool) -> str:
    """A path parameter: mostly a name the test allows (victims; the sentinel on read-only routes) so requests reach
    the handlers' inner code; else a generated ``fz`` name with an odd tail, or a fixed odd value."""
    odd = ODD_SEGMENTS_SAFE if destructive else ODD_SEGMENTS_READONLY
    kind = draw(st.sampled_from(["named"] * 5 + ["generated", "odd", "odd"])) if named else \
        draw(st.sampled_from(["generated", "odd"]))
    if kind == "named":
        return draw(st.sampled_from(named))
    if kind == "odd":
        return draw(st.sampled_from(odd))
    tail = draw(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="*,/?#%"), max_size=12))
    return "fz-" + pct(tail)


QUERY_KEYS = ["pretty", "refresh", "pipeline", "size", "from", "format", "v", "deploy", "verbose", "q",
              "search_pipeline", "routing", "_source", "_source_includes", "timeout", "op_type", "if_seq_no",
              "if_primary_term", "return_all_models", "track_total_hits", "error_trace", "filter_path", "wait_for",
              "master_timeout", "include_defaults", "flat_settings", "scroll", "allow_no_indices", "human", "k",
              "version", "stored_fields", "preference", "fz_unknown", "", "\u00e9", "a[b]"]
QUERY_VALUES = ["", "true", "false", "1", "-1", "0", "1e309", "9" * 5000, "NaN", "x", "%00", "wait_for",
                "\u00e9\u4e2d", "\ud800", "json", "1,2", "*", "_all", "fz-pipeline", "50%", " ", "a" * 3000]


@st.composite
def query_string(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return ""
    pairs = draw(st.lists(st.tuples(st.sampled_from(QUERY_KEYS), st.one_of(st.sampled_from(QUERY_VALUES),
                                                                             st.text(max_size=10))), max_size=3))
    if not pairs:
        return ""
    return "?" + "&".join(pct(k).replace("&", "%26").replace("=", "%3D") + "=" + pct(v).replace("&", "%26")
                          for k, v in pairs)
