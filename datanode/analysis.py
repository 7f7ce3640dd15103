"""OpenSearch's ``standard`` analyzer: UAX#29-style word split, then lowercase.

Approximates Lucene's StandardTokenizer closely enough for BM25 parity on ordinary prose:
runs of letters/digits/underscore form a token; a single ``. ' ’ :`` between two word
characters, or ``, ;`` between two digits, joins them ("don't", "e.g", "3.14", "1,000");
each CJK ideograph, Hiragana or Katakana character is its own token; tokens are cut at 255
characters (the analyzer's ``max_token_length``).
"""

from __future__ import annotations

import re

MAX_TOKEN_LENGTH = 255

_IDEOGRAPHIC = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = rf"[^\W{_IDEOGRAPHIC}]"
_TOKEN = re.compile(
    rf"[{_IDEOGRAPHIC}]|{_WORD}+(?:[.'\u2019:]{_WORD}+|(?<=\d)[,;]\d+)*"
)


def analyze(text: str) -> list[str]:
    """Tokens of ``text`` as the ``standard`` analyzer emits them (lowercased)."""
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        tok = m.group(0).lower()
        while len(tok) > MAX_TOKEN_LENGTH:
            out.append(tok[:MAX_TOKEN_LENGTH])
            tok = tok[MAX_TOKEN_LENGTH:]
        out.append(tok)
    return out
