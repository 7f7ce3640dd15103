"""OpenSearch's error types and its error body.

Every failed request OpenSearch answers carries
``{"error": {"root_cause": [{"type", "reason"}], "type", "reason"}, "status": N}``; the ``type`` is the snake-cased
name of the Java exception. Each package raises these classes (or subclasses of them for its own exception types),
and its HTTP layer renders ``to_body()``.
"""

from __future__ import annotations

from typing import Any


class OpenSearchError(Exception):
    """An error with an OpenSearch exception type, a reason, an HTTP status and optional extra body fields."""

    status: int = 500
    error_type: str = "exception"

    def __init__(self, reason: str, *, status: int | None = None, error_type: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type
        self.extra = extra or {}

    def to_body(self) -> dict[str, Any]:
        cause = {"type": self.error_type, "reason": self.reason, **self.extra}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


class IllegalArgument(OpenSearchError):
    status = 400
    error_type = "illegal_argument_exception"


class ParsingError(OpenSearchError):
    """``parsing_exception``: a body or query that is not of the expected shape."""

    status = 400
    error_type = "parsing_exception"


class ParseError(OpenSearchError):
    """``parse_exception`` (OpenSearchParseException): e.g. a missing request body, a bad pipeline definition."""

    status = 400
    error_type = "parse_exception"


class MapperParsingError(OpenSearchError):
    status = 400
    error_type = "mapper_parsing_exception"


class ResourceNotFound(OpenSearchError):
    status = 404
    error_type = "resource_not_found_exception"


class StatusError(OpenSearchError):
    """``status_exception`` (OpenSearchStatusException), used by plugins with whatever status they choose."""

    error_type = "status_exception"


class IndexNotFound(OpenSearchError):
    status = 404
    error_type = "index_not_found_exception"

    def __init__(self, index: str) -> None:
        super().__init__(f"no such index [{index}]", extra={"index": index, "resource.type": "index_or_alias",
                                                            "resource.id": index})


class ResourceAlreadyExists(OpenSearchError):
    status = 400
    error_type = "resource_already_exists_exception"


class TooManyRequests(OpenSearchError):
    """A bounded queue is full: OpenSearch's rejected-execution shape, 429."""

    status = 429
    error_type = "rejected_execution_exception"


class CircuitBreaking(OpenSearchError):
    status = 429
    error_type = "circuit_breaking_exception"


class InternalError(OpenSearchError):
    """A failure inside a node; the reason never carries the raw exception text."""

    status = 500
    error_type = "exception"


def error_body(status: int, error_type: str, reason: str) -> dict[str, Any]:
    """The error body for a failure that has no exception object (e.g. an HTTP error of the framework)."""
    return OpenSearchError(reason, status=status, error_type=error_type).to_body()


def with_cause(error: OpenSearchError, cause: OpenSearchError) -> OpenSearchError:
    """Attach ``cause`` as OpenSearch's ``caused_by``."""
    error.extra = {**error.extra, "caused_by": {"type": cause.error_type, "reason": cause.reason}}
    return error


class ClusterBlock(OpenSearchError):
    """``cluster_block_exception``: here only the flood-stage block a full disk puts on an index (429, so clients back
    off and retry, as they do against a cluster whose disk filled up)."""

    status = 429
    error_type = "cluster_block_exception"


FLOOD_STAGE_BLOCK = ("TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete "
                     "block")


def flood_stage(indices: list[str]) -> ClusterBlock:
    """The error OpenSearch answers a write to an index the disk watermark has made read-only."""
    if not indices:
        return ClusterBlock(f"blocked by: [{FLOOD_STAGE_BLOCK}];")
    return ClusterBlock("".join(f"index [{name}] blocked by: [{FLOOD_STAGE_BLOCK}];" for name in indices))
