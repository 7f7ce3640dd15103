"""Tokenizer wrapper over a model zip's ``tokenizer.json`` (Hugging Face ``tokenizers``).

Truncation happens at ``max_length`` (LongestFirst, right side); batches are padded to their longest
member here, not by ``tokenizer.json``. The tokenizers are configured once at load and only read
afterwards, so ``encode`` may be called from several threads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

DEFAULT_MAX_LENGTH = 512
_PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>", "<|endoftext|>")


def tokenizer_max_length(tokenizer_json: Path) -> int | None:
    data = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    truncation = data.get("truncation") or {}
    value = truncation.get("max_length")
    return int(value) if value else None


class TextTokenizer:
    def __init__(self, tokenizer_json: Path, max_length: int | None = None) -> None:
        from_file = tokenizer_max_length(tokenizer_json)
        self.max_length = int(max_length or from_file or DEFAULT_MAX_LENGTH)
        # The model's truncation policy, as ML Commons reads it: a tokenizer.json with a truncation section (what
        # opensearch-py-ml writes, "auto-truncation") or a model_config.model_max_length truncates; without either
        # a text longer than the model's positions is an error there, and a 400 here.
        self.truncates = bool(max_length or from_file)
        self._full = Tokenizer.from_file(str(tokenizer_json))
        padding = self._full.padding
        self._full.no_truncation()
        self._full.no_padding()
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.enable_truncation(self.max_length, strategy="longest_first", direction="right")
        self.pad_id = self._pad_id(padding)
        self._tok.no_padding()
        self.special_ids = frozenset(
            tok_id for tok_id, tok in self._full.get_added_tokens_decoder().items() if tok.special
        )
        self._decode_lock = threading.Lock()
        self._decode_table: list[str] | None = None

    def _pad_id(self, padding: dict | None) -> int:
        if padding and padding.get("pad_id") is not None:
            return int(padding["pad_id"])
        for token in _PAD_TOKENS:
            token_id = self._full.token_to_id(token)
            if token_id is not None:
                return int(token_id)
        return 0

    def encodings(self, texts: Sequence[str] | Sequence[tuple[str, str]]) -> list[Encoding]:
        return self._tok.encode_batch(list(texts))

    def batch(self, encodings: Sequence[Encoding]) -> dict[str, np.ndarray]:
        """Right-padded int64 ``input_ids``, ``attention_mask``, ``token_type_ids``."""
        width = max((len(e.ids) for e in encodings), default=0)
        shape = (len(encodings), width)
        ids = np.full(shape, self.pad_id, dtype=np.int64)
        mask = np.zeros(shape, dtype=np.int64)
        types = np.zeros(shape, dtype=np.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            mask[row, :n] = 1
            types[row, :n] = encoding.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def encode(self, texts: Sequence[str] | Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        return self.batch(self.encodings(texts))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Untruncated token counts including special tokens."""
        return [len(e.ids) for e in self._full.encode_batch(list(texts))]

    @property
    def vocab_size(self) -> int:
        return int(self._full.get_vocab_size(with_added_tokens=True))

    def token(self, token_id: int) -> str | None:
        """The vocabulary string of an id (``##ing`` style, as idf.json keys it)."""
        return self._full.id_to_token(int(token_id))

    def token_id(self, token: str) -> int | None:
        return self._full.token_to_id(token)

    def decoded(self) -> list[str]:
        """Each vocabulary id decoded alone with special tokens skipped ('' for special tokens)."""
        if self._decode_table is None:
            with self._decode_lock:
                if self._decode_table is None:
                    size = self.vocab_size
                    self._decode_table = [
                        "" if i in self.special_ids else self._full.decode([i], skip_special_tokens=True)
                        for i in range(size)
                    ]
        return self._decode_table
