"""Chunking algorithms of ``text_chunking`` (neural-search's chunker package), one small class per algorithm.

``fixed_token_length`` needs word offsets from an OpenSearch tokenizer. Without Lucene we tokenize with regular
expressions close to each whitelisted tokenizer: ``standard``/``classic``/``thai`` split on Unicode word boundaries
(letters, digits and ``_`` joined by inner ``.``, ``'`` or ``:``, as UAX#29 does), ``uax_url_email`` also keeps
URLs and e-mail addresses whole, ``letter``/``lowercase`` take runs of letters, ``whitespace`` runs of non-space.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

DEFAULT_MAX_CHUNK_LIMIT = 100
DISABLED_MAX_CHUNK_LIMIT = -1
MAX_TOKEN_COUNT = 10000  # index.analyze.max_token_count default

# one ideograph / hiragana per token, katakana runs whole (as UAX#29 and Lucene's StandardTokenizer emit CJK), else
# word runs joined by inner
# "." "'" ":" (and "," ";" between digits: 1,000)
_IDEOGRAPH = r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
_NOT_IDEOGRAPH_WORD_CHAR = r"(?:(?!" + _IDEOGRAPH + r")\w)"
_WORD = (r"[\u30a0-\u30ff]+|" + _IDEOGRAPH + "|" + _NOT_IDEOGRAPH_WORD_CHAR + r"+(?:(?:[.'\u2019:]|(?<=\d)[,;](?=\d))"
         + _NOT_IDEOGRAPH_WORD_CHAR + "+)*")
TOKENIZERS: dict[str, re.Pattern[str]] = {
    "standard": re.compile(_WORD),
    "classic": re.compile(_WORD),
    "thai": re.compile(_WORD),
    "uax_url_email": re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|" + _WORD),
    "letter": re.compile(r"[^\W\d_]+"),
    "lowercase": re.compile(r"[^\W\d_]+"),
    "whitespace": re.compile(r"\S+"),
}
SUPPORTED_TOKENIZERS = "[" + ", ".join(sorted(TOKENIZERS)) + "]"


class ChunkerError(ValueError):
    pass


def _number(params: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    if name not in params:
        return default
    value = params[name]
    try:
        if isinstance(value, bool):
            raise ValueError
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(str(value)) if not isinstance(value, float) else int(value)
        return float(str(value))
    except ValueError:
        java = "java.lang.Integer" if kind is int else "java.lang.Double"
        raise ChunkerError(f"Parameter [{name}] must be of {java} type") from None


def _positive_int(params: dict[str, Any], name: str, default: int) -> int:
    value = _number(params, name, int, default)
    if value <= 0:
        raise ChunkerError(f"Parameter [{name}] must be positive.")
    return value


def _string(params: dict[str, Any], name: str, default: str) -> str:
    if name not in params:
        return default
    value = params[name]
    if not isinstance(value, str):
        raise ChunkerError(f"Parameter [{name}] must be of java.lang.String type")
    if not value:
        raise ChunkerError(f"Parameter [{name}] should not be empty.")
    return value


def parse_max_chunk_limit(params: dict[str, Any]) -> int:
    limit = _number(params, "max_chunk_limit", int, DEFAULT_MAX_CHUNK_LIMIT)
    if limit <= 0 and limit != DISABLED_MAX_CHUNK_LIMIT:
        raise ChunkerError("Parameter [max_chunk_limit] must be positive or -1 to disable this parameter")
    return limit


def limit_reached(produced: int, runtime_limit: int, strings_left: int) -> bool:
    """neural-search's checkRunTimeMaxChunkLimit: keep one chunk in reserve for every string still to chunk."""
    return runtime_limit != DISABLED_MAX_CHUNK_LIMIT and produced + strings_left >= runtime_limit


class Chunker:
    NAME: ClassVar[str] = ""
    PARAMS: ClassVar[frozenset[str]] = frozenset({"max_chunk_limit"})

    def __init__(self, params: dict[str, Any]) -> None:
        """``params``: the algorithm's parameters from the processor config; each algorithm reads and checks its own
        (``PARAMS``), raising ChunkerError for a bad value."""

    def chunk(self, content: str, runtime_limit: int, strings_left: int) -> list[str]:
        raise NotImplementedError


class FixedTokenLengthChunker(Chunker):
    NAME = "fixed_token_length"
    PARAMS = frozenset({"max_chunk_limit", "token_limit", "overlap_rate", "tokenizer"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.token_limit = _positive_int(params, "token_limit", 384)
        self.overlap_rate = _number(params, "overlap_rate", float, 0.0)
        self.tokenizer = _string(params, "tokenizer", "standard")
        if not 0.0 <= self.overlap_rate <= 0.5:
            raise ChunkerError("Parameter [overlap_rate] must be between 0.0 and 0.5")
        if self.tokenizer not in TOKENIZERS:
            raise ChunkerError(f"Tokenizer [{self.tokenizer}] is not supported for [{self.NAME}] algorithm. "
                               f"Supported tokenizers are {SUPPORTED_TOKENIZERS}")

    def chunk(self, content: str, runtime_limit: int, strings_left: int) -> list[str]:
        starts = [m.start() for m in TOKENIZERS[self.tokenizer].finditer(content)]
        if len(starts) > MAX_TOKEN_COUNT:
            raise ChunkerError(f"The number of tokens produced by calling _analyze has exceeded the allowed maximum of "
                               f"[{MAX_TOKEN_COUNT}]. This limit can be set by changing the "
                               f"[index.analyze.max_token_count] index-level setting.")
        chunks: list[str] = []
        step = self.token_limit - math.floor(self.token_limit * self.overlap_rate)
        start_token = 0
        while start_token < len(starts):
            start_char = 0 if start_token == 0 else starts[start_token]
            if limit_reached(len(chunks), runtime_limit, strings_left):
                chunks.append(content[start_char:])
                break
            if start_token + self.token_limit >= len(starts):
                chunks.append(content[start_char:])
                break
            chunks.append(content[start_char:starts[start_token + self.token_limit]])
            start_token += step
        return chunks


class DelimiterChunker(Chunker):
    NAME = "delimiter"
    PARAMS = frozenset({"max_chunk_limit", "delimiter"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.delimiter = _string(params, "delimiter", "\n\n")

    def chunk(self, content: str, runtime_limit: int, strings_left: int) -> list[str]:
        chunks: list[str] = []
        start = 0
        pos = content.find(self.delimiter)
        while pos != -1:
            if limit_reached(len(chunks), runtime_limit, strings_left):
                break
            end = pos + len(self.delimiter)  # the delimiter stays at the end of its chunk
            chunks.append(content[start:end])
            start = end
            pos = content.find(self.delimiter, start)
        if start < len(content):
            chunks.append(content[start:])
        return chunks


class FixedCharLengthChunker(Chunker):
    NAME = "fixed_char_length"
    PARAMS = frozenset({"max_chunk_limit", "char_limit", "overlap_rate"})

    def __init__(self, params: dict[str, Any]) -> None:
        self.char_limit = _positive_int(params, "char_limit", 2048)
        self.overlap_rate = _number(params, "overlap_rate", float, 0.0)
        if not 0.0 <= self.overlap_rate <= 0.5:
            raise ChunkerError(f"Parameter [overlap_rate] must be between 0.0 and 0.5, but was {self.overlap_rate}")

    def chunk(self, content: str, runtime_limit: int, strings_left: int) -> list[str]:
        chunks: list[str] = []
        step = self.char_limit - math.floor(self.char_limit * self.overlap_rate)
        start = 0
        while start < len(content):
            if limit_reached(len(chunks), runtime_limit, strings_left):
                chunks.append(content[start:])
                break
            if start + self.char_limit >= len(content):
                chunks.append(content[start:])
                break
            chunks.append(content[start:start + self.char_limit])
            start += step
        return chunks


CHUNKERS: dict[str, type[Chunker]] = {
    c.NAME: c for c in (FixedTokenLengthChunker, DelimiterChunker, FixedCharLengthChunker)
}
