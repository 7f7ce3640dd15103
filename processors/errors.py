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


class ConfigurationError(OpenSearchError):
    """One processor's configuration problem, shaped like OpenSearch's ``ConfigurationUtils.newConfigurationException``.

    The reason reads ``[property] reason`` when a property is named; the processor type, tag and property travel as
    the ``processor_type``, ``processor_tag`` and ``property_name`` fields of the error body, as OpenSearch sends them.
    """

    status = 400
    error_type = "parse_exception"

    def __init__(self, processor_type: str | None, tag: str | None, property_name: str | None, reason: str, *,
                 error_type: str | None = None) -> None:
        message = f"[{property_name}] {reason}" if property_name else reason
        extra: dict[str, Any] = {}
        if processor_type is not None:
            extra["processor_type"] = processor_type
        if tag is not None:
            extra["processor_tag"] = tag
        if property_name is not None:
            extra["property_name"] = property_name
        super().__init__(message, error_type=error_type, extra=extra)
        self.processor_type = processor_type
        self.tag = tag
        self.property_name = property_name


class ModelInferenceError(OpenSearchError):
    """The ML node answered an error (or could not be reached) for a model; the reason names the model id."""

    status = 500
    error_type = "status_exception"


def processor_config_error(errors: list[OpenSearchError]) -> ProcessorConfigError:
    """Bundle every processor's error of one pipeline load; the first error's reason leads, all are listed."""
    if len(errors) == 1:
        reason = errors[0].reason
    else:
        reason = f"{len(errors)} processor configuration errors: " + "; ".join(describe_error(e) for e in errors)
    exc = ProcessorConfigError(reason, errors)
    first = errors[0]
    exc.error_type = first.error_type
    exc.extra = dict(first.extra)
    return exc


def describe_error(error: OpenSearchError) -> str:
    """One line naming the processor type, tag and property of a configuration error (for logs and the CLI)."""
    parts = []
    if error.extra.get("processor_type"):
        parts.append(f"processor [{error.extra['processor_type']}]")
    if error.extra.get("processor_tag"):
        parts.append(f"tag [{error.extra['processor_tag']}]")
    prefix = " ".join(parts)
    return f"{prefix}: {error.reason}" if prefix else error.reason
