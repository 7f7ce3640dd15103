"""OpenSearch-shaped errors for the ML node.

Every failure a client can see is one of these classes; the error middleware in ``mlnode.app`` turns them into
OpenSearch's body ``{"error": {"root_cause": [{"type", "reason"}], "type", "reason"}, "status": N}``.
(mlnode keeps its own copy of this shape: it may not import ``processors``.)
"""

from __future__ import annotations

from typing import Any


class MLError(Exception):
    """A domain error with an HTTP status and OpenSearch's exception type name."""

    status: int = 500
    error_type: str = "exception"

    def __init__(self, reason: str, *, status: int | None = None, error_type: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type

    def to_body(self) -> dict[str, Any]:
        cause = {"type": self.error_type, "reason": self.reason}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


class IllegalArgument(MLError):
    status = 400
    error_type = "illegal_argument_exception"


class ParsingError(MLError):
    status = 400
    error_type = "parsing_exception"


class NotFound(MLError):
    """ML Commons raises OpenSearchStatusException(..., NOT_FOUND), rendered as ``status_exception``."""

    status = 404
    error_type = "status_exception"


class ResourceNotFound(MLError):
    """ML Commons' MLResourceNotFoundException (OpenSearch derives the type name from the class name)."""

    status = 404
    error_type = "m_l_resource_not_found_exception"


class Conflict(MLError):
    status = 409
    error_type = "status_exception"


class TooManyRequests(MLError):
    """The bounded predict queue is full (OpenSearch's rejected-execution shape)."""

    status = 429
    error_type = "rejected_execution_exception"


class CircuitBreaking(MLError):
    status = 429
    error_type = "circuit_breaking_exception"


class InternalError(MLError):
    """A failure inside the node; the reason never carries the raw exception text."""

    status = 500
    error_type = "exception"


def error_body(reason: str, status: int, error_type: str) -> dict[str, Any]:
    return MLError(reason, status=status, error_type=error_type).to_body()
