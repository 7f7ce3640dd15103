"""ML Commons' own exception types; the shared ones and the error body come from ``opensearch_contract.errors``.

The error middleware in ``mlnode.app`` renders every ``OpenSearchError`` as OpenSearch's error body.
"""

from __future__ import annotations

from opensearch_contract.errors import OpenSearchError


class NotFound(OpenSearchError):
    """ML Commons raises OpenSearchStatusException(..., NOT_FOUND), rendered as ``status_exception``."""

    status = 404
    error_type = "status_exception"


class MLResourceNotFound(OpenSearchError):
    """ML Commons' MLResourceNotFoundException (OpenSearch derives the type name from the class name)."""

    status = 404
    error_type = "m_l_resource_not_found_exception"


class Conflict(OpenSearchError):
    status = 409
    error_type = "status_exception"


class GroupNameTaken(OpenSearchError):
    """A model group name already used (ML Commons' message and 400); ``group_id`` is the group that has it, so a
    registration that auto-creates its group can join the one another node created a moment earlier."""

    status = 400
    error_type = "illegal_argument_exception"

    def __init__(self, group_id: str) -> None:
        super().__init__(f"The name you provided is already being used by a model group with ID: {group_id}.")
        self.group_id = group_id
