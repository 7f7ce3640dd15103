"""ML Commons model facts both sides of predict need: the ML node that answers it and the client that sends it."""

from __future__ import annotations

from typing import Any


def is_asymmetric(model_config: dict[str, Any] | None) -> bool:
    """A model registered with a ``query_prefix`` or a ``passage_prefix`` needs ``parameters.content_type`` in
    predict (ML Commons' ``TextEmbeddingModel.isAsymmetricModel`` checks for null, not for empty)."""
    config = model_config or {}
    return config.get("query_prefix") is not None or config.get("passage_prefix") is not None
