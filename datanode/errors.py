"""OpenSearch error types only the data node raises; the shared ones come from ``opensearch_contract.errors``."""

from __future__ import annotations

from typing import Any

from opensearch_contract.errors import OpenSearchError


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


def item_error(error: OpenSearchError) -> dict[str, Any]:
    """The ``error`` object of a failed ``_bulk`` item (no root_cause, as OpenSearch sends it)."""
    return {"type": error.error_type, "reason": error.reason, **error.extra}


class SearchPhaseError(OpenSearchError):
    """A query that parsed but failed on the shard, as a cluster reports it: ``search_phase_execution_exception``
    ("all shards failed") whose root cause is a ``query_shard_exception`` naming the real reason."""

    status = 400
    error_type = "search_phase_execution_exception"

    def __init__(self, index: str, index_uuid: str, cause: OpenSearchError) -> None:
        super().__init__("all shards failed", status=cause.status)
        self.index = index
        self.index_uuid = index_uuid
        self.cause = cause

    def to_body(self) -> dict[str, Any]:
        shard = {"type": "query_shard_exception", "reason": f"failed to create query: {self.cause.reason}",
                 "index": self.index, "index_uuid": self.index_uuid}
        caused_by = {"type": self.cause.error_type, "reason": self.cause.reason}
        return {"error": {"root_cause": [shard], "type": self.error_type, "reason": self.reason, "phase": "query",
                          "grouped": True,
                          "failed_shards": [{"shard": 0, "index": self.index, "node": "neuralpipe-data",
                                             "reason": {**shard, "caused_by": caused_by}}],
                          "caused_by": caused_by},
                "status": self.status}
