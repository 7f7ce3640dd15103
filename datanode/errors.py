"""OpenSearch error types the data node raises; shared classes come from ``processors.errors``."""

from __future__ import annotations

from typing import Any

from processors.errors import (  # noqa: F401  (re-exported for the data node's modules)
    IllegalArgument,
    IndexNotFound,
    MapperParsingError,
    OpenSearchError,
    ParsingError,
    ResourceAlreadyExists,
    ResourceNotFound,
)


class VersionConflict(OpenSearchError):
    status = 409
    error_type = "version_conflict_engine_exception"


class DocumentMissing(OpenSearchError):
    status = 404
    error_type = "document_missing_exception"


class InvalidIndexName(OpenSearchError):
    status = 400
    error_type = "invalid_index_name_exception"


class StrictDynamicMapping(OpenSearchError):
    status = 400
    error_type = "strict_dynamic_mapping_exception"


class ActionRequestValidation(OpenSearchError):
    status = 400
    error_type = "action_request_validation_exception"


def with_cause(error: OpenSearchError, cause: OpenSearchError) -> OpenSearchError:
    """Attach ``cause`` as OpenSearch's ``caused_by``."""
    error.extra = {**error.extra, "caused_by": {"type": cause.error_type, "reason": cause.reason}}
    return error


def item_error(error: OpenSearchError) -> dict[str, Any]:
    """The ``error`` object of a failed ``_bulk`` item (no root_cause, as OpenSearch sends it)."""
    return {"type": error.error_type, "reason": error.reason, **error.extra}
