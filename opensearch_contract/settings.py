"""OpenSearch setting values: nested and dotted forms, booleans and bounded integers, with OpenSearch's messages."""

from __future__ import annotations

from typing import Any

from .errors import IllegalArgument


def flatten_settings(settings: Any, prefix: str = "") -> dict[str, Any]:
    """``{"index": {"knn": true}}`` and ``{"index.knn": true}`` both -> ``{"index.knn": True}``."""
    out: dict[str, Any] = {}
    if isinstance(settings, dict):
        for key, value in settings.items():
            full = f"{prefix}{key}"
            if isinstance(value, dict):
                out.update(flatten_settings(value, full + "."))
            else:
                out[full] = value
    return out


def nest_settings(flat: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten_settings`, as OpenSearch prints settings without ``flat_settings``."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # "a": 1 and "a.b": 2 side by side: keep the dotted key as it is
                node[key] = value
                break
            node = child
        else:
            node[parts[-1]] = value
    return nested


def parse_bool(value: Any) -> bool:
    """OpenSearch's ``Booleans.parseBoolean``: only true/false (as JSON booleans or strings)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    raise IllegalArgument(f"Failed to parse value [{value}] as only [true] or [false] are allowed.")


def parse_int(value: Any, key: str, low: int = -(2**31), high: int = 2**31 - 1) -> int:
    """An integer setting within ``[low, high]``, with ``Setting.parseInt``'s messages."""
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise IllegalArgument(f"Failed to parse value [{value}] for setting [{key}]")
    try:
        number = int(str(value).strip()) if not isinstance(value, (int, float)) else int(value)
    except ValueError:
        raise IllegalArgument(f"Failed to parse value [{value}] for setting [{key}]") from None
    if number < low:
        raise IllegalArgument(f"Failed to parse value [{number}] for setting [{key}] must be >= {low}")
    if number > high:
        raise IllegalArgument(f"Failed to parse value [{number}] for setting [{key}] must be <= {high}")
    return number


def setting_string(value: Any) -> str:
    """How OpenSearch prints a setting value in ``_settings`` / ``_cluster/settings`` answers: always a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


MAX_RESULT_WINDOW = 10_000  # index.max_result_window's default: from + size, and hybrid's pagination_depth, stay within
