"""``text_embedding``: dense vectors from a TEXT_EMBEDDING model into ``knn_vector`` fields."""

from __future__ import annotations

from typing import Any

from processors.config import ConfigReader
from processors.ingest.base import CommonOptions
from processors.ingest.inference import InferenceProcessor
from processors.mlclient import MLClient


class TextEmbeddingProcessor(InferenceProcessor):
    TYPE = "text_embedding"
    LIST_KEY = "knn"

    @classmethod
    def from_config(cls, r: ConfigReader, options: CommonOptions) -> TextEmbeddingProcessor:
        return cls(options, **cls.read_common(r))

    async def infer(self, ml: MLClient, texts: list[str]) -> list[Any]:
        return await ml.text_embedding(self.model_id, texts, content_type="passage")
