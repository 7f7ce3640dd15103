"""Model runtimes of the ML node: ``load_runtime(model_dir, model_doc) -> Runtime``.

``model_dir`` is an unpacked model zip, ``model_doc`` the ML Commons model document
(``function_name`` or ``algorithm``, ``model_format``, ``model_config``). All calls block (tokenize +
forward) and are meant for worker threads; one runtime may serve several threads at once (see
``mlnode.runtimes.backends`` for the thread settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tokenizers import Encoding

from mlnode.runtimes.base import BaseRuntime, PredictInputError, RuntimeLoadError
from mlnode.runtimes.embedding import TextEmbeddingRuntime
from mlnode.runtimes.similarity import QuestionAnsweringRuntime, TextSimilarityRuntime
from mlnode.runtimes.sparse import SparseEncodingRuntime, SparseTokenizeRuntime

__all__ = ["PredictInputError", "Runtime", "RuntimeLoadError", "RUNTIMES", "load_runtime"]


@runtime_checkable
class Runtime(Protocol):
    function_name: str
    model_format: str
    max_length: int
    truncates: bool  # the tokenizer cuts texts at max_length (else a longer text is refused)
    batchable: bool
    token_output_size: int  # floats per input token in a vocab-sized intermediate (SPARSE_ENCODING), else 0

    def tokenize(self, texts: list[str], parameters: dict | None = None) -> list[Encoding]: ...

    def forward(self, encodings: list[Encoding], parameters: dict | None = None) -> list[dict]: ...

    def predict(self, body: dict) -> list[dict]: ...

    def close(self) -> None: ...


RUNTIMES: dict[str, type[BaseRuntime]] = {
    "TEXT_EMBEDDING": TextEmbeddingRuntime,
    "SPARSE_ENCODING": SparseEncodingRuntime,
    "SPARSE_TOKENIZE": SparseTokenizeRuntime,
    "TEXT_SIMILARITY": TextSimilarityRuntime,
    "QUESTION_ANSWERING": QuestionAnsweringRuntime,
}


def load_runtime(model_dir: Path, model_doc: dict[str, Any]) -> Runtime:
    """Open the runtime for an unpacked model. Raises ``RuntimeLoadError`` naming what is wrong."""
    function_name = str(model_doc.get("function_name") or model_doc.get("algorithm") or "").upper()
    runtime_class = RUNTIMES.get(function_name)
    if runtime_class is None:
        raise RuntimeLoadError(
            f"unsupported function_name [{function_name or None}]: valid values are {sorted(RUNTIMES)}"
        )
    return runtime_class(Path(model_dir), model_doc)
