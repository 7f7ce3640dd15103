"""``_source`` filtering (includes / excludes with wildcards), as search and get apply it."""

from __future__ import annotations

import fnmatch
from typing import Any


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
        inc = [str(s) for s in spec]
    elif isinstance(spec, dict):
        raw_inc = spec.get("includes", spec.get("include", []))
        raw_exc = spec.get("excludes", spec.get("exclude", []))
        inc = [raw_inc] if isinstance(raw_inc, str) else list(raw_inc)
        exc = [raw_exc] if isinstance(raw_exc, str) else list(raw_exc)
    if includes:
        inc += [s for s in includes.split(",") if s]
    if excludes:
        exc += [s for s in excludes.split(",") if s]
    return fetch, inc, exc


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
