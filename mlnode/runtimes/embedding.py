"""TEXT_EMBEDDING: dense vectors, ML Commons semantics.

* TorchScript + sentence_transformers: pooling and normalisation are in the traced graph; every output
  tensor is returned (``sentence_embedding`` among them), token-level ones cut to the text's length.
* TorchScript + huggingface_transformers, and every ONNX model: the first output (the second when
  ``pooling_mode`` is ``none``) is pooled by ``pooling_mode`` (default mean), then L2-normalised when
  ``normalize_result`` is true, and returned as ``sentence_embedding``.
* Given ``parameters`` (an asymmetric model: mlnode.predict_body checks), ``content_type`` ``PASSAGE`` prepends
  ``passage_prefix`` and anything else (``QUERY``, or none: ML Commons' default) ``query_prefix``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding

from mlnode.runtimes.base import BaseRuntime, RuntimeLoadError, tensor
from mlnode.runtimes.pooling import POOLING_MODES, l2_normalize, pool


class TextEmbeddingRuntime(BaseRuntime):
    function_name = "TEXT_EMBEDDING"
    batchable = True

    def __init__(self, model_dir: Path, model_doc: dict[str, Any]) -> None:
        super().__init__(model_dir, model_doc)
        config = self.model_config
        self.framework_type = str(config.get("framework_type") or "sentence_transformers").lower()
        self.pooling_mode = str(config.get("pooling_mode") or "mean").lower()
        if self.pooling_mode not in POOLING_MODES:
            raise RuntimeLoadError(
                f"unsupported pooling_mode [{self.pooling_mode}]: valid values are {list(POOLING_MODES)}"
            )
        self.normalize_result = bool(config.get("normalize_result", False))
        self.pooled_in_graph = self.model_format == "TORCH_SCRIPT" and self.framework_type == "sentence_transformers"

    def _prefixed(self, texts: list[str], parameters: dict | None) -> list[str]:
        if parameters is None:
            return texts
        passage = str(parameters.get("content_type") or "").upper() == "PASSAGE"
        prefix = self.model_config.get("passage_prefix" if passage else "query_prefix")
        return [f"{prefix}{t}" for t in texts] if prefix else texts

    def tokenize(self, texts: list[str], parameters: dict | None = None) -> list[Encoding]:
        return self.tokenizer.encodings(self._prefixed(list(texts), parameters))

    def forward(self, encodings: list[Encoding], parameters: dict | None = None) -> list[dict]:
        if not encodings:
            return []
        feed = self.tokenizer.batch(encodings)
        outputs = self.run(feed)
        if self.pooled_in_graph:
            return [
                {"output": [tensor(name, _row(value, i, len(e.ids), feed)) for name, value in outputs.items()]}
                for i, e in enumerate(encodings)
            ]
        values = list(outputs.values())
        hidden = values[1] if self.pooling_mode == "none" and len(values) > 1 else values[0]
        if hidden.ndim == 3:
            hidden = pool(hidden.astype(np.float32), feed["attention_mask"], self.pooling_mode)
        embeddings = l2_normalize(hidden) if self.normalize_result else hidden
        return [{"output": [tensor("sentence_embedding", row)]} for row in embeddings]


def _row(value: np.ndarray, index: int, length: int, feed: dict[str, np.ndarray]) -> np.ndarray:
    row = value[index]
    if value.ndim >= 2 and value.shape[1] == feed["input_ids"].shape[1]:
        return row[:length]
    return row
