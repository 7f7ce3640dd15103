"""Pooling and normalisation of token embeddings (numpy), as ML Commons applies them for the
huggingface_transformers framework and for ONNX models."""

from __future__ import annotations

import numpy as np

POOLING_MODES = ("mean", "mean_sqrt_len", "max", "cls", "weightedmean", "lasttoken", "none")


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Pool ``hidden`` [batch, seq, dim] under ``mask`` [batch, seq] into [batch, dim]."""
    mode = mode.lower()
    m = mask[..., None].astype(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return np.where(m > 0, hidden, np.float32(-1e9)).max(axis=1)
    if mode == "lasttoken":
        last = mask.sum(axis=1).astype(np.int64) - 1
        return hidden[np.arange(hidden.shape[0]), last]
    if mode == "weightedmean":
        weights = np.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype)[None, :, None] * m
        return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    summed = (hidden * m).sum(axis=1)
    count = np.maximum(m.sum(axis=1), 1e-9)
    if mode == "mean_sqrt_len":
        return summed / np.sqrt(count)
    if mode == "mean":
        return summed / count
    raise ValueError(f"unsupported pooling_mode [{mode}]: valid values are {list(POOLING_MODES)}")


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
