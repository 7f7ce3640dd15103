"""The processors' own error types (pipeline configuration, inference); the shared ones come from
``opensearch_contract.errors``."""

from __future__ import annotations

from typing import Any

from opensearch_contract.errors import OpenSearchError


class ProcessorConfigError(OpenSearchError):
    """A pipeline definition error; ``errors`` holds every processor's problem found in one load."""

    status = 400
    error_type = "parse_exception"

    def __init__(self, reason: str, errors: list[OpenSearchError] | None = None) -> None:
        super().__init__(reason)
        self.errors = errors or []

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        if len(self.errors) > 1:
            body["error"]["root_cause"] = [e.to_body()["error"]["root_cause"][0] for e in self.errors]
        return body


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
