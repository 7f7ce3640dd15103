"""``sparse_encoding``: token weights from a SPARSE_ENCODING model into ``rank_features`` fields, optionally pruned."""

from __future__ import annotations

from typing import Any

from processors import prune
from processors.config import ConfigReader
from processors.ingest.base import CommonOptions
from processors.ingest.inference import InferenceProcessor
from processors.mlclient import MLClient


class SparseEncodingProcessor(InferenceProcessor):
    TYPE = "sparse_encoding"
    LIST_KEY = "sparse_encoding"

    def __init__(self, options: CommonOptions, *, prune_type: str = "none", prune_ratio: float = 0.0,
                 **common: Any) -> None:
        super().__init__(options, **common)
        self.prune_type = prune_type
        self.prune_ratio = prune_ratio

    @classmethod
    def from_config(cls, r: ConfigReader, options: CommonOptions) -> SparseEncodingProcessor:
        common = cls.read_common(r)
        prune_type = r.optional_string("prune_type") or "none"
        if prune_type not in prune.PRUNE_TYPES:
            raise r.illegal(f"Unknown prune type: {prune_type}", "prune_type")
        ratio = 0.0
        if prune_type != "none":
            ratio = r.double("prune_ratio")
            if not prune.is_valid_ratio(prune_type, ratio):
                raise r.illegal(f"Illegal prune_ratio {ratio:f} for prune_type: {prune_type}. "
                                f"{prune.ratio_description(prune_type)}", "prune_ratio")
        elif "prune_ratio" in r.config:
            raise r.illegal("prune_ratio field is not supported when prune_type is not provided", "prune_ratio")
        return cls(options, prune_type=prune_type, prune_ratio=ratio, **common)

    async def infer(self, ml: MLClient, texts: list[str]) -> list[Any]:
        vectors = await ml.sparse_encoding(self.model_id, texts)
        return [prune.prune(self.prune_type, self.prune_ratio, v) for v in vectors]
