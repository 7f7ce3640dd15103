"""Lucene's BM25Similarity (the default of OpenSearch 3.x): lossy length norms and the score.

score(term, doc) = boost * idf * (1 - 1 / (1 + freq / (k1 * (1 - b + b * dl / avgdl))))
idf = ln(1 + (docCount - docFreq + 0.5) / (docFreq + 0.5)), avgdl = sumTotalTermFreq / docCount,
where dl is the field length after SmallFloat.intToByte4 / byte4ToInt (Lucene's one-byte norm).
Arithmetic mirrors Lucene's float32 steps so scores agree to float precision.
"""

from __future__ import annotations

import math

import numpy as np

K1 = 1.2
B = 0.75


def _long_to_int4(i: int) -> int:
    num_bits = i.bit_length()
    if num_bits < 4:
        return i
    shift = num_bits - 4
    encoded = (i >> shift) & 0x07
    return encoded | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits = i & 0x07
    shift = (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_MAX_INT4 = _long_to_int4(2**31 - 1)
_NUM_FREE_VALUES = 255 - _MAX_INT4


def int_to_byte4(i: int) -> int:
    """Lucene SmallFloat.intToByte4 (as an unsigned byte)."""
    if i < _NUM_FREE_VALUES:
        return i
    return _NUM_FREE_VALUES + _long_to_int4(i - _NUM_FREE_VALUES)


def byte4_to_int(b: int) -> int:
    """Lucene SmallFloat.byte4ToInt."""
    if b < _NUM_FREE_VALUES:
        return b
    return _NUM_FREE_VALUES + _int4_to_long(b - _NUM_FREE_VALUES)


LENGTH_TABLE = np.array([byte4_to_int(i) for i in range(256)], dtype=np.float32)


def idf(doc_freq: int, doc_count: int) -> float:
    return float(np.float32(math.log(1 + (doc_count - doc_freq + 0.5) / (doc_freq + 0.5))))


def avg_length(sum_total_term_freq: int, doc_count: int) -> float:
    return float(np.float32(sum_total_term_freq / doc_count)) if doc_count else 1.0


def bm25(freqs: np.ndarray, norm_bytes: np.ndarray, *, weight: float, avgdl: float) -> np.ndarray:
    """Scores of one term for docs with term frequencies ``freqs`` and norm bytes ``norm_bytes``."""
    f32 = np.float32
    norm_inverse = f32(1) / (f32(K1) * ((f32(1) - f32(B)) + f32(B) * LENGTH_TABLE[norm_bytes] / f32(avgdl)))
    w = f32(weight)
    return (w - w / (f32(1) + freqs.astype(np.float32) * norm_inverse)).astype(np.float32)


def decode_feature(values: np.ndarray) -> np.ndarray:
    """Lucene FeatureField keeps 9 significant bits of a float: the value a rank_feature query reads."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32) & np.uint32(0xFFFF8000)
    return bits.view(np.float32)
