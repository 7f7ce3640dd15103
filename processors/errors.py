"""OpenSearch's error shape, shared by every layer that answers or raises OpenSearch-style errors.

The body is the one OpenSearch sends for every failed request:
``{"error": {"root_cause": [{"type", "reason"}], "type", "reason"}, "status": N}``.
"""

from __future__ import annotations

from typing import Any


class OpenSearchError(Exception):
    """An error with an OpenSearch exception type, a reason and an HTTP status."""

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
    status = 400
    error_type = "parsing_exception"


class MapperParsingError(OpenSearchError):
    status = 400
    error_type = "mapper_parsing_exception"


class ResourceNotFound(OpenSearchError):
    status = 404
    error_type = "resource_not_found_exception"


class IndexNotFound(OpenSearchError):
    status = 404
    error_type = "index_not_found_exception"

    def __init__(self, index: str) -> None:
        super().__init__(f"no such index [{index}]", extra={"index": index, "resource.type": "index_or_alias",
                                                            "resource.id": index})


class ResourceAlreadyExists(OpenSearchError):
    status = 400
    error_type = "resource_already_exists_exception"


class ProcessorConfigError(OpenSearchError):
    """A pipeline definition error; ``errors`` holds every processor's problem found in one load."""

    status = 400
    error_type = "parse_exception"

    def __init__(self, reason: str, errors: list["OpenSearchError"] | None = None) -> None:
        super().__init__(reason)
        self.errors = errors or []

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        if len(self.errors) > 1:
            body["error"]["root_cause"] = [e.to_body()["error"]["root_cause"][0] for e in self.errors]
        return body


def error_body(status: int, error_type: str, reason: str) -> dict[str, Any]:
    return OpenSearchError(reason, status=status, error_type=error_type).to_body()
