"""``_source`` filtering (includes / excludes with wildcards), as search and get apply it."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

from opensearch_contract.errors import ParsingError

from .storage import load_stored


def parse_source_param(spec: Any, includes: str | None = None, excludes: str | None = None
                       ) -> tuple[bool, list[str], list[str]]:
    """(fetch, includes, excludes) from a ``_source`` body value and/or URL parameters."""
    inc: list[str] = []
    exc: list[str] = []
    fetch = True
    if spec is False or (isinstance(spec, str) and spec.lower() == "false"):
        fetch = False
    elif spec is True or spec is None or (isinstance(spec, str) and spec.lower() == "true"):
        pass
    elif isinstance(spec, str):
        inc = [s for s in spec.split(",") if s]
    elif isinstance(spec, list):
        inc = _patterns(spec, "_source")
    elif isinstance(spec, dict):
        inc = _patterns(spec.get("includes", spec.get("include")) or [], "includes")
        exc = _patterns(spec.get("excludes", spec.get("exclude")) or [], "excludes")
    if includes:
        inc += [s for s in includes.split(",") if s]
    if excludes:
        exc += [s for s in excludes.split(",") if s]
    return fetch, inc, exc


def _token(value: Any) -> str:
    """The name of the JSON token OpenSearch's parser reports for ``value``."""
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, bool):
        return "VALUE_BOOLEAN"
    if value is None:
        return "VALUE_NULL"
    return "VALUE_NUMBER" if isinstance(value, (int, float)) else "VALUE_STRING"


def _patterns(value: Any, name: str) -> list[str]:
    """``_source`` patterns: a string or an array of strings, as OpenSearch's FetchSourceContext reads them."""
    values = value if isinstance(value, list) else [value]
    for v in values:
        if not isinstance(v, str):
            raise ParsingError(f"Unknown key for a {_token(v)} in [{name}].")
    return list(values)


def _matches(path: str, patterns: list[str], *, prefix_ok: bool) -> bool:
    for pattern in patterns:
        if fnmatch.fnmatchcase(path, pattern) or path.startswith(pattern + "."):
            return True
        if prefix_ok and (pattern.startswith(path + ".") or fnmatch.fnmatchcase(path, pattern.split(".")[0])
                          and "." in pattern and pattern.split(".")[0] != pattern):
            return True
    return False


def filter_source(source: Any, includes: list[str], excludes: list[str], prefix: str = "") -> Any:
    if not includes and not excludes:
        return source
    if not isinstance(source, dict):
        return source
    if not includes and not any(ch in pattern for pattern in excludes for ch in "*?["):
        return _drop_paths(source, excludes, prefix)
    out: dict[str, Any] = {}
    for key, value in source.items():
        path = prefix + key
        if excludes and _matches(path, excludes, prefix_ok=False):
            continue
        if includes and not _matches(path, includes, prefix_ok=True):
            continue
        fully_included = not includes or _matches(path, includes, prefix_ok=False)
        if isinstance(value, dict):
            inner = filter_source(value, [] if fully_included else includes, excludes, path + ".")
            if inner or fully_included:
                out[key] = inner
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            items = [filter_source(v, [] if fully_included else includes, excludes, path + ".")
                     if isinstance(v, dict) else v for v in value]
            items = [v for v in items if v != {} or fully_included]
            if items:
                out[key] = items
        elif fully_included:
            out[key] = value
    return out


def _drop_paths(source: dict[str, Any], excludes: list[str], prefix: str) -> dict[str, Any]:
    """``filter_source`` for excludes without wildcards (e.g. the vector fields a reindex skips): the same result,
    but only the objects an exclude reaches into are walked (a 100-token sparse map is copied, not matched key by
    key)."""
    out: dict[str, Any] = {}
    for key, value in source.items():
        path = prefix + key
        if any(path == e or path.startswith(e + ".") for e in excludes):
            continue
        below = path + "."
        if not any(e.startswith(below) for e in excludes):
            out[key] = value
        elif isinstance(value, dict):
            out[key] = _drop_paths(value, excludes, below)
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            out[key] = [_drop_paths(v, excludes, below) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out


# --- decoding stored sources without the vectors a filter drops ------------------------------------------------------
_NUMBER_ARRAY = r'\[[-+0-9.eE,\s]*\]'
_PLACEHOLDER = "\u0000neuralpipe-dropped-vector\u0000"
_PLACEHOLDER_JSON = json.dumps(_PLACEHOLDER)


def droppable_vectors(vector_paths: list[str], includes: list[str], excludes: list[str]) -> list[str]:
    """Which ``knn_vector`` paths a ``_source`` filter removes (decoding them would be wasted work)."""
    if not vector_paths or (not includes and not excludes):
        return []
    skeleton: dict[str, Any] = {}
    for path in vector_paths:
        node = skeleton
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = 0
    kept = filter_source(skeleton, includes, excludes)

    def present(tree: Any, parts: list[str]) -> bool:
        for part in parts:
            if not isinstance(tree, dict) or part not in tree:
                return False
            tree = tree[part]
        return True

    return [path for path in vector_paths if not present(kept, path.split("."))]


class SourceDecoder:
    """Decodes stored source JSON for one ``_source`` filter: flat number arrays under the key of a vector the
    filter drops are skipped by a regex before ``json.loads`` (a 384-d vector is most of a document's JSON).

    Exact: a skipped array reads as a placeholder string; the filter decides by keys only, so its output is the same
    unless a kept value is a placeholder (the same key elsewhere in the document), and then the source is decoded
    in full."""

    def __init__(self, includes: list[str], excludes: list[str], drop: list[str]) -> None:
        self.includes, self.excludes = includes, excludes
        names = sorted({path.rsplit(".", 1)[-1] for path in drop})
        self._pattern = (re.compile(r'([{,]\s*"(?:' + "|".join(re.escape(json.dumps(n)[1:-1]) for n in names)
                                    + r')"\s*:\s*)' + _NUMBER_ARRAY) if names else None)

    def decode(self, raw: str) -> Any:
        """The filtered ``_source`` of one stored document."""
        if self._pattern is not None:
            light, skipped = self._pattern.subn(self._skip, raw)
            if skipped:
                out = filter_source(load_stored(light), self.includes, self.excludes)
                if not _holds_placeholder(out):
                    return out
        return filter_source(load_stored(raw), self.includes, self.excludes)

    @staticmethod
    def _skip(match: re.Match[str]) -> str:
        return match.group(1) + _PLACEHOLDER_JSON


def _holds_placeholder(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_placeholder(v) for v in value)
    return value == _PLACEHOLDER
