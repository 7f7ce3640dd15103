"""Pooling modes of the huggingface_transformers / ONNX path, on hand-made token embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from mlnode.packaging.tracing import pool as torch_pool
from mlnode.runtimes.pooling import POOLING_MODES, l2_normalize, pool

pytestmark = [pytest.mark.unit]

HIDDEN = np.array([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]], dtype=np.float32)  # third token is padding
MASK = np.array([[1, 1, 0]])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("mean", [2.0, 4.0]),
        ("mean_sqrt_len", [4.0 / np.sqrt(2), 8.0 / np.sqrt(2)]),
        ("max", [3.0, 6.0]),
        ("cls", [1.0, 2.0]),
        ("lasttoken", [3.0, 6.0]),
        ("weightedmean", [(1 * 1 + 2 * 3) / 3, (1 * 2 + 2 * 6) / 3]),
    ],
)
def test_pooling_ignores_padding(mode, expected):
    assert np.allclose(pool(HIDDEN, MASK, mode)[0], expected)


def test_unknown_mode_names_valid_ones():
    with pytest.raises(ValueError, match=r"unsupported pooling_mode \[median\].*mean_sqrt_len"):
        pool(HIDDEN, MASK, "median")
    assert "none" in POOLING_MODES


def test_normalize():
    assert np.allclose(l2_normalize(np.array([[3.0, 4.0]])), [[0.6, 0.8]])


def test_traced_pooling_matches_runtime_pooling():
    torch = pytest.importorskip("torch")
    for mode in ["mean", "mean_sqrt_len", "max", "cls", "lasttoken", "weightedmean"]:
        got = torch_pool(torch.from_numpy(HIDDEN), torch.from_numpy(MASK), mode).numpy()
        assert np.allclose(got, pool(HIDDEN, MASK, mode)), mode
