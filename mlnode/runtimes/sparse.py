"""SPARSE_ENCODING and SPARSE_TOKENIZE: ``{token: weight}`` maps in ML Commons' shape
``{"name": "output", "dataAsMap": {"response": [{token: weight}]}}``.

* Encoder: the model's ``output`` [batch, vocab]; every non-zero entry, keyed by the id decoded alone
  with special tokens skipped (empty keys dropped), heaviest first.
* ``parameters.sparse_embedding_format``: ``WORD`` (default; also ``lexical``) keys by token text,
  ``TOKEN_ID`` by the token id as a string (ML Commons 3.2).
* Tokenizer: the text's token ids (truncated at max_length, special tokens skipped) de-duplicated,
  weighted by ``idf.json[token]`` or 1.0 when the token is missing from it (or there is no idf.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding

from mlnode.runtimes.base import BaseRuntime, PredictInputError, find_file

_FORMAT_ENUM = "org.opensearch.ml.common.input.parameter.textembedding.SparseEmbeddingFormat"


def token_id_keys(parameters: dict | None) -> bool:
    """True when ``sparse_embedding_format`` asks for token-id keys."""
    value = str((parameters or {}).get("sparse_embedding_format") or "WORD").upper()
    if value in {"WORD", "LEXICAL"}:
        return False
    if value == "TOKEN_ID":
        return True
    raise PredictInputError(f"No enum constant {_FORMAT_ENUM}.{value}")


def sparse_result(weights: dict[str, float]) -> dict:
    return {"output": [{"name": "output", "dataAsMap": {"response": [weights]}}]}


class SparseEncodingRuntime(BaseRuntime):
    function_name = "SPARSE_ENCODING"
    batchable = True

    def __init__(self, model_dir: Path, model_doc: dict[str, Any]) -> None:
        super().__init__(model_dir, model_doc)
        # the MLM head makes a [tokens, vocab] float32 logits tensor: the batching queue sizes batches by it
        self.token_output_size = self.tokenizer.vocab_size

    def forward(self, encodings: list[Encoding], parameters: dict | None = None) -> list[dict]:
        by_id = token_id_keys(parameters)
        if not encodings:
            return []
        outputs = self.run(self.tokenizer.batch(encodings))
        matrix = outputs["output"] if "output" in outputs else next(iter(outputs.values()))
        table = self.tokenizer.decoded()
        results = []
        for row in np.asarray(matrix, dtype=np.float32):
            ids = np.flatnonzero(row)
            ids = ids[np.argsort(-row[ids], kind="stable")]
            weights: dict[str, float] = {}
            for token_id in ids.tolist():
                token = table[token_id] if token_id < len(table) else ""
                if token and by_id:
                    weights[str(token_id)] = float(row[token_id])
                elif token and token not in weights:
                    weights[token] = float(row[token_id])
            results.append(sparse_result(weights))
        return results


class SparseTokenizeRuntime(BaseRuntime):
    function_name = "SPARSE_TOKENIZE"
    batchable = True
    needs_model_file = False

    def __init__(self, model_dir: Path, model_doc: dict[str, Any]) -> None:
        super().__init__(model_dir, model_doc)
        idf_path = find_file(self.model_dir, "idf.json", required=False)
        self.idf: dict[str, float] = (
            {str(k): float(v) for k, v in json.loads(idf_path.read_text(encoding="utf-8")).items()} if idf_path else {}
        )

    def forward(self, encodings: list[Encoding], parameters: dict | None = None) -> list[dict]:
        by_id = token_id_keys(parameters)
        table = self.tokenizer.decoded()
        results = []
        for encoding in encodings:
            weights: dict[str, float] = {}
            for token_id in dict.fromkeys(encoding.ids):
                if token_id in self.tokenizer.special_ids:
                    continue
                key = table[token_id]
                vocab_token = self.tokenizer.token(token_id) or key
                if key and by_id:
                    weights[str(token_id)] = float(self.idf.get(vocab_token, 1.0))
                elif key and key not in weights:
                    weights[key] = float(self.idf.get(vocab_token, 1.0))
            results.append(sparse_result(weights))
        return results
