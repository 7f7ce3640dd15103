"""OpenSearch's ``standard`` analyzer: UAX#29-style word split, then lowercase.

Approximates Lucene's StandardTokenizer closely enough for BM25 parity on ordinary prose:
runs of letters/digits/underscore form a token; a single ``. ' ’ :`` between two word
characters, or ``, ;`` between two digits, joins them ("don't", "e.g", "3.14", "1,000");
each CJK ideograph or Hiragana character is its own token, a run of Katakana is one; tokens are cut at 255
characters (the analyzer's ``max_token_length``).
"""

from __future__ import annotations

import re

MAX_TOKEN_LENGTH = 255

_HAN_HIRAGANA = "\u3040-\u309f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KATAKANA = "\u30a0-\u30ff\u31f0-\u31ff"
_IDEOGRAPHIC = _HAN_HIRAGANA + _KATAKANA
_WORD = rf"[^\W{_IDEOGRAPHIC}]"
_TOKEN = re.compile(
    rf"[{_HAN_HIRAGANA}]|[{_KATAKANA}]+|{_WORD}+(?:[.'\u2019:]{_WORD}+|(?<=\d)[,;]\d+)*"
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


def analyze_tokens(text: str) -> list[dict[str, object]]:
    """``_analyze`` output of the standard analyzer: token, offsets, type and position."""
    out: list[dict[str, object]] = []
    for m in _TOKEN.finditer(text):
        raw = m.group(0)
        kind = ("<IDEOGRAPHIC>" if re.match(f"[{_IDEOGRAPHIC}]", raw)
                else "<NUM>" if raw[0].isdigit() and not any(c.isalpha() for c in raw) else "<ALPHANUM>")
        for start in range(0, len(raw), MAX_TOKEN_LENGTH):
            piece = raw[start:start + MAX_TOKEN_LENGTH]
            out.append({"token": piece.lower(), "start_offset": m.start() + start,
                        "end_offset": m.start() + start + len(piece), "type": kind, "position": len(out)})
    return out
