"""What every runtime shares: the unpacked model folder, its tokenizer, its backend, and the ML
Commons tensor shapes of the results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding

from mlnode.runtimes.backends import Backend, open_backend
from mlnode.runtimes.tokenization import TextTokenizer

_DATA_TYPES = {"f": "FLOAT32", "i": "INT64", "u": "INT64", "b": "BOOLEAN"}


class RuntimeLoadError(ValueError):
    """The unpacked model cannot be served (files missing, unsupported format or function)."""


class PredictInputError(ValueError):
    """A predict body this runtime cannot answer (missing or ill-typed fields)."""


def find_model_file(model_dir: Path, model_format: str) -> Path:
    suffix = {"TORCH_SCRIPT": ".pt", "ONNX": ".onnx"}.get(model_format)
    if suffix is None:
        raise RuntimeLoadError(f"unsupported model_format [{model_format}]: valid values are ['TORCH_SCRIPT', 'ONNX']")
    files = sorted(p for p in Path(model_dir).rglob(f"*{suffix}") if p.is_file())
    if len(files) != 1:
        raise RuntimeLoadError(f"expected one {suffix} file in [{model_dir}], found {len(files)}")
    return files[0]


def find_file(model_dir: Path, name: str, *, required: bool = True) -> Path | None:
    direct = Path(model_dir) / name
    if direct.is_file():
        return direct
    found = sorted(Path(model_dir).rglob(name))
    if found:
        return found[0]
    if required:
        raise RuntimeLoadError(f"no {name} in the model folder [{model_dir}]")
    return None


def tensor(name: str, values: np.ndarray) -> dict[str, Any]:
    """One ML Commons ModelTensor."""
    array = np.asarray(values)
    kind = _DATA_TYPES.get(array.dtype.kind, "FLOAT32")
    data = array.astype(np.float32 if kind == "FLOAT32" else array.dtype).ravel().tolist()
    return {"name": name, "data_type": kind, "shape": list(array.shape), "data": data}


class BaseRuntime:
    """Common state. Batchable subclasses implement ``forward`` (and ``tokenize`` when the text is changed before it
    is tokenized), the others ``predict``."""

    function_name = ""
    batchable = False
    needs_model_file = True
    token_output_size = 0  # floats per input token in a vocab-sized intermediate (SPARSE_ENCODING); 0 = none

    def __init__(self, model_dir: Path, model_doc: dict[str, Any]) -> None:
        self.model_dir = Path(model_dir)
        self.model_doc = model_doc
        self.model_format = str(model_doc.get("model_format") or "TORCH_SCRIPT").upper()
        self.model_config: dict[str, Any] = dict(model_doc.get("model_config") or {})
        configured = self.model_config.get("model_max_length")
        tokenizer_json = find_file(self.model_dir, "tokenizer.json")
        assert tokenizer_json is not None
        try:
            self.tokenizer = TextTokenizer(tokenizer_json, int(configured) if configured else None)
        except Exception as exc:  # not a Hugging Face tokenizer.json
            raise RuntimeLoadError(f"cannot load the model's tokenizer.json: {exc}") from exc
        self.max_length = self.tokenizer.max_length
        self.truncates = self.tokenizer.truncates
        self.backend: Backend | None = None
        if self.needs_model_file:
            try:
                self.backend = open_backend(find_model_file(self.model_dir, self.model_format), self.model_format)
            except RuntimeLoadError:
                raise
            except Exception as exc:  # a corrupt graph: report it as a load failure
                raise RuntimeLoadError(f"cannot load the {self.model_format} model: {exc}") from exc

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Untruncated token counts, for scripts (the batching queue reads lengths from ``tokenize``)."""
        return self.tokenizer.count_tokens(texts)

    def tokenize(self, texts: list[str], parameters: dict | None = None) -> list[Encoding]:
        """Each text's encoding, truncated at ``max_length`` (``overflowing`` is non-empty when it was cut)."""
        return self.tokenizer.encodings(texts)

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.backend is None:
            raise RuntimeError("the runtime is closed")
        return self.backend.run(feed)

    def forward(self, encodings: list[Encoding], parameters: dict | None = None) -> list[dict]:
        raise PredictInputError(f"{self.function_name} models take a predict body, not a text batch")

    def infer(self, texts: list[str], parameters: dict | None = None) -> list[dict]:
        """``forward(tokenize(texts))``: one call for scripts and tests; the batching queue runs the two apart."""
        return self.forward(self.tokenize(texts, parameters), parameters)

    def predict(self, body: dict) -> list[dict]:
        raise PredictInputError(f"{self.function_name} models are predicted with text_docs through forward()")

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None


def texts_of(body: dict, field: str) -> list[str]:
    value = body.get(field)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise PredictInputError(f"[{field}] must be a non-empty list of strings")
    return value


def text_of(body: dict, field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise PredictInputError(f"[{field}] must be a non-empty string")
    return value
