"""Request and response bodies: JSON in, JSON out, with OpenSearch's errors for bodies that are not objects.

Plain functions with no event loop, so a search can parse, run and encode in one worker-thread hand-off."""

from __future__ import annotations

import json
from typing import Any

from .errors import IllegalArgument, OpenSearchError


def encode(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False)


def parse_object(raw: bytes, *, required: bool = False) -> dict[str, Any]:
    """A request body as a JSON object ({} when empty and not ``required``)."""
    if not raw.strip():
        if required:
            raise IllegalArgument("request body is required")
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise OpenSearchError(f"Failed to parse request body: {exc.msg} at line {exc.lineno} column {exc.colno}",
                              status=400, error_type="parse_exception") from None
    except UnicodeDecodeError as exc:
        raise OpenSearchError(f"Failed to parse request body: not UTF-8 ({exc.reason})", status=400,
                              error_type="parse_exception") from None
    if not isinstance(body, dict):
        raise OpenSearchError(f"request body must be a JSON object, got a {type(body).__name__}", status=400,
                              error_type="parse_exception")
    return body
