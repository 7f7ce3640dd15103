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
