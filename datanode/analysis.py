"""OpenSearch's built-in analyzers for ``text`` fields: standard, simple, whitespace, keyword, stop and english.

Each is a tokenizer and a chain of filters, as Lucene builds them:

- ``standard``: StandardTokenizer, lowercase (OpenSearch's default stop set is empty).
- ``simple``: LetterTokenizer (runs of letters), lowercase.
- ``whitespace``: WhitespaceTokenizer, nothing else (case is kept).
- ``keyword``: the whole input as one token.
- ``stop``: LetterTokenizer, lowercase, English stop words.
- ``english`` (Lucene's EnglishAnalyzer): StandardTokenizer, EnglishPossessiveFilter (a trailing ``'s``),
  lowercase, English stop words, PorterStemFilter (Martin Porter's reference implementation, which Lucene's
  PorterStemmer is; here NLTK's ``MARTIN_EXTENSIONS`` mode of it).

A removed stop word keeps its position (the next token's position increment grows), so phrases see the gap; the
field length Lucene's BM25 norm reads counts only the tokens indexed (FieldInvertState.length).

The StandardTokenizer is approximated closely enough for BM25 parity on ordinary prose: runs of
letters/digits/underscore form a token; one of ``. ' ‘ ’ ․ ﹒ ＇ ．`` (UAX#29 MidNumLet) or ``:`` between two word
characters, or ``, ;`` between two digits, joins them ("don't", "e.g", "3.14", "1,000"); each CJK ideograph or
Hiragana character is its own token, a run of Katakana is one; tokens are cut at 255 characters (the analyzer's
``max_token_length``). Offsets count Python characters (code points), where Lucene counts UTF-16 units.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nltk.stem.porter import PorterStemmer

MAX_TOKEN_LENGTH = 255

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (also StopAnalyzer's and OpenSearch's ``_english_``)
ENGLISH_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they "
    "this to was will with".split())

_HAN_HIRAGANA = "\u3040-\u309f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KATAKANA = "\u30a0-\u30ff\u31f0-\u31ff"
_IDEOGRAPHIC = _HAN_HIRAGANA + _KATAKANA
_WORD = rf"[^\W{_IDEOGRAPHIC}]"
_MID = ".'\u2018\u2019\u2024\ufe52\uff07\uff0e:"
_STANDARD = re.compile(
    rf"[{_HAN_HIRAGANA}]|[{_KATAKANA}]+|{_WORD}+(?:[{_MID}]{_WORD}+|(?<=\d)[,;]\d+)*"
)
_LETTERS = re.compile(r"[^\W\d_]+")
_NON_SPACE = re.compile(r"\S+")
_POSSESSIVE = re.compile("['\u2019\uff07][sS]$")


@dataclass(frozen=True)
class Token:
    term: str
    start: int
    end: int
    type: str
    position: int

    def to_body(self) -> dict[str, object]:
        """The token as ``_analyze`` reports it."""
        return {"token": self.term, "start_offset": self.start, "end_offset": self.end, "type": self.type,
                "position": self.position}


Span = tuple[str, int, int, str]  # (text, start, end, type) as a tokenizer emits it


def _standard_type(raw: str) -> str:
    if re.match(f"[{_IDEOGRAPHIC}]", raw):
        return "<IDEOGRAPHIC>"
    return "<NUM>" if raw[0].isdigit() and not any(c.isalpha() for c in raw) else "<ALPHANUM>"


def _split(pattern: re.Pattern[str], text: str, kind: Callable[[str], str]) -> Iterator[Span]:
    """Matches of ``pattern``, each cut into pieces of at most ``MAX_TOKEN_LENGTH`` characters."""
    for m in pattern.finditer(text):
        raw = m.group(0)
        for start in range(0, len(raw), MAX_TOKEN_LENGTH):
            piece = raw[start:start + MAX_TOKEN_LENGTH]
            yield piece, m.start() + start, m.start() + start + len(piece), kind(raw)


def standard_tokenizer(text: str) -> Iterator[Span]:
    return _split(_STANDARD, text, _standard_type)


def letter_tokenizer(text: str) -> Iterator[Span]:
    return _split(_LETTERS, text, lambda _: "word")


def whitespace_tokenizer(text: str) -> Iterator[Span]:
    return _split(_NON_SPACE, text, lambda _: "word")


def keyword_tokenizer(text: str) -> Iterator[Span]:
    if text:
        yield text, 0, len(text), "word"


@functools.lru_cache(maxsize=1 << 18)
def porter_stem(word: str) -> str:
    """Lucene's PorterStemmer on one lowercased term (terms of 1 or 2 characters are kept, as Lucene keeps them)."""
    return _porter().stem(word, to_lowercase=False)


@functools.lru_cache(maxsize=1)
def _porter() -> PorterStemmer:
    # imported on first use: importing nltk takes seconds, and only the english analyzer stems
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer(mode=PorterStemmer.MARTIN_EXTENSIONS)


@dataclass(frozen=True)
class Analyzer:
    name: str
    tokenizer: Callable[[str], Iterator[Span]]
    lowercase: bool = True
    possessive: bool = False
    stop_words: frozenset[str] = frozenset()
    stem: bool = False

    def tokens(self, text: str) -> list[Token]:
        """The tokens of ``text`` with Lucene's positions (a removed stop word leaves a gap)."""
        return self.run(text)[0]

    def run(self, text: str) -> tuple[list[Token], int]:
        """The tokens of ``text`` and how many positions it spans (trailing stop words included)."""
        out: list[Token] = []
        position = -1
        for position, (raw, start, end, kind) in enumerate(self.tokenizer(text)):
            term = self._filter(raw)
            if term is not None:
                out.append(Token(term, start, end, kind, position))
        return out, position + 1

    def _filter(self, term: str) -> str | None:
        """The token filters on one token's text: the term indexed, or None for a stop word."""
        if self.possessive:
            term = _POSSESSIVE.sub("", term)
        if self.lowercase:
            term = term.lower()
        if term in self.stop_words:
            return None
        return porter_stem(term) if self.stem else term

    def terms(self, text: str) -> list[str]:
        return [t.term for t in self.tokens(text)]

    def index_terms(self, text: str) -> tuple[list[str], list[int], int]:
        """What indexing reads of ``run(text)``: the kept terms, their positions and the span, without building a
        ``Token`` (offsets, type) per term: the same terms at the same positions, several times faster."""
        raw = _pieces(self.tokenizer, text)
        if self.lowercase and not (self.possessive or self.stop_words or self.stem):
            return list(map(str.lower, raw)), list(range(len(raw))), len(raw)
        terms: list[str] = []
        where: list[int] = []
        for position, piece in enumerate(raw):
            term = self._filter(piece)
            if term is not None:
                terms.append(term)
                where.append(position)
        return terms, where, len(raw)


_PATTERNS: dict[Callable[[str], Iterator[Span]], re.Pattern[str]] = {
    standard_tokenizer: _STANDARD, letter_tokenizer: _LETTERS, whitespace_tokenizer: _NON_SPACE}


def _pieces(tokenizer: Callable[[str], Iterator[Span]], text: str) -> list[str]:
    """The texts ``tokenizer`` emits for ``text`` (matches cut at ``MAX_TOKEN_LENGTH``), from one ``findall``."""
    pattern = _PATTERNS.get(tokenizer)
    if pattern is None:
        return [span[0] for span in tokenizer(text)]
    raw = pattern.findall(text)
    if len(text) > MAX_TOKEN_LENGTH and max(map(len, raw), default=0) > MAX_TOKEN_LENGTH:
        raw = [piece[i:i + MAX_TOKEN_LENGTH] for piece in raw for i in range(0, len(piece), MAX_TOKEN_LENGTH)]
    return raw


ANALYZERS: dict[str, Analyzer] = {
    "standard": Analyzer("standard", standard_tokenizer),
    "simple": Analyzer("simple", letter_tokenizer),
    "whitespace": Analyzer("whitespace", whitespace_tokenizer, lowercase=False),
    "keyword": Analyzer("keyword", keyword_tokenizer, lowercase=False),
    "stop": Analyzer("stop", letter_tokenizer, stop_words=ENGLISH_STOP_WORDS),
    "english": Analyzer("english", standard_tokenizer, possessive=True, stop_words=ENGLISH_STOP_WORDS, stem=True),
}
ANALYZERS["default"] = ANALYZERS["standard"]


def get(name: str) -> Analyzer:
    """The analyzer called ``name``; ``KeyError`` if this data node has none of that name."""
    return ANALYZERS[name]


def analyze(text: str, analyzer: str = "standard") -> list[str]:
    """The terms ``analyzer`` indexes for ``text``."""
    return ANALYZERS[analyzer].terms(text)
