"""OpenSearch setting values: nested and dotted forms, booleans and bounded integers, with OpenSearch's messages.

Index settings a node reads are checked when they are written (index creation, ``_settings``) with the messages
OpenSearch's ``Setting`` parsers give, and read back with :func:`read_index_int`, which falls back to the default for
a value that no longer parses (a data dir written before the check), so one bad stored value cannot fail a request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
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


log = logging.getLogger("neuralpipe.settings")

# index.* settings whose values a node reads: key -> (default, low, high) for integers
INDEX_INT_SETTINGS: dict[str, tuple[int, int, int]] = {
    "index.number_of_shards": (1, 1, 1024),
    "index.number_of_replicas": (1, 0, 2**31 - 1),
    "index.max_result_window": (MAX_RESULT_WINDOW, 1, 2**31 - 1),
    "index.knn.algo_param.ef_search": (100, 2, 2**31 - 1),  # k-NN's intSetting, minimum 2
}
INDEX_BOOL_SETTINGS = ("index.knn",)
INDEX_STRING_SETTINGS = ("index.default_pipeline", "index.final_pipeline", "index.search.default_pipeline")
_TIME_VALUE = re.compile(r"^(?:-1|0|\d+(?:\.\d+)?(?:nanos|micros|ms|s|m|h|d))$")


def _time_value(value: Any, key: str) -> str:
    text = setting_string(value).strip().lower()
    if not _TIME_VALUE.match(text):
        raise IllegalArgument(f"failed to parse setting [{key}] with value [{setting_string(value)}] as a time value: "
                              f"unit is missing or unrecognized")
    return setting_string(value)


def _scalar(value: Any, key: str) -> None:
    if isinstance(value, (dict, list)):
        raise IllegalArgument(f"Failed to parse value [{value}] for setting [{key}]: expected a single value")


def check_index_settings(flat: dict[str, Any]) -> dict[str, Any]:
    """Flat ``index.*`` settings as they will be stored (known values normalised to OpenSearch's strings), or the
    ``illegal_argument_exception`` OpenSearch gives for the first bad value. ``None`` (a reset) passes through."""
    out: dict[str, Any] = {}
    checks: dict[str, Callable[[Any, str], Any]] = {"index.refresh_interval": _time_value}
    for key, value in flat.items():
        if value is None:
            out[key] = None
            continue
        if key in INDEX_INT_SETTINGS:
            _scalar(value, key)
            _, low, high = INDEX_INT_SETTINGS[key]
            out[key] = str(parse_int(value, key, low, high))
        elif key in INDEX_BOOL_SETTINGS:
            _scalar(value, key)
            out[key] = setting_string(parse_bool(value))
        elif key in INDEX_STRING_SETTINGS:
            _scalar(value, key)
            out[key] = setting_string(value)
        elif key in checks:
            _scalar(value, key)
            out[key] = checks[key](value, key)
        else:
            out[key] = value
    return out


def read_index_int(settings: dict[str, Any], key: str) -> int:
    """An integer index setting as stored, or its default when the stored value does not parse (written before
    settings were checked): logged, never raised."""
    default, low, high = INDEX_INT_SETTINGS[key]
    value = settings.get(key)
    if value is None:
        return default
    try:
        return parse_int(value, key, low, high)
    except IllegalArgument:
        log.warning("ignoring the stored value [%s] of setting [%s]: using its default [%s]", value, key, default)
        return default


def read_index_bool(settings: dict[str, Any], key: str, default: bool = False) -> bool:
    """A boolean index setting as stored, or ``default`` when the stored value does not parse."""
    value = settings.get(key)
    if value is None:
        return default
    try:
        return parse_bool(value if isinstance(value, bool) else str(value).lower())
    except IllegalArgument:
        log.warning("ignoring the stored value [%s] of setting [%s]: using its default [%s]", value, key, default)
        return default
