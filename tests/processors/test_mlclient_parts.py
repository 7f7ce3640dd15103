"""The ML client splits a batch larger than one predict call may carry (the ML node refuses more than
max_predict_texts texts or max_predict_body_bytes in one request): several calls, the same answers in order.
Real ML node, real models; the per-call bounds are lowered so a small batch needs several calls."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from processors import mlclient
from tests.processors.test_ml_inference import CountingML

pytestmark = [pytest.mark.integration]

TEXTS = [f"document number {i} is about {word}" for i, word in enumerate(
    ["cats", "dogs", "rivers", "volcanoes", "pasta", "tides", "stars", "trains", "violins", "glaciers"])]


async def _answers(url: str, ids: dict[str, str]) -> tuple[list[Any], list[Any], int]:
    async with CountingML(url) as ml:
        dense = await ml.text_embedding(ids["dense"], TEXTS)
        sparse = await ml.sparse_encoding(ids["sparse"], TEXTS)
        return dense, sparse, len(ml.predicts)


async def test_a_batch_over_the_per_call_bounds_is_several_calls_with_the_same_answers(
        ml_node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    whole_dense, whole_sparse, whole_calls = await _answers(ml_node.url, ml_node.model_ids)
    assert whole_calls == 2  # one call per model
    monkeypatch.setattr(mlclient, "MAX_TEXTS_PER_CALL", 4)
    split_dense, split_sparse, split_calls = await _answers(ml_node.url, ml_node.model_ids)
    assert split_calls == 6  # 10 texts in calls of 4, 4, 2 per model
    np.testing.assert_allclose(np.array(split_dense), np.array(whole_dense), rtol=0, atol=1e-6)
    assert [sorted(m) for m in split_sparse] == [sorted(m) for m in whole_sparse]
    monkeypatch.setattr(mlclient, "MAX_TEXTS_PER_CALL", 1024)
    budget = len(TEXTS[0].encode()) * 3
    monkeypatch.setattr(mlclient, "MAX_TEXT_BYTES_PER_CALL", budget)
    async with CountingML(ml_node.url) as ml:
        vectors = await ml.text_embedding(ml_node.model_ids["dense"], TEXTS)
        sent = [body["text_docs"] for _, body in ml.predicts]
    np.testing.assert_allclose(np.array(vectors), np.array(whole_dense), rtol=0, atol=1e-6)
    assert [t for texts in sent for t in texts] == TEXTS  # every text once, in order
    assert len(sent) > 3 and all(sum(len(t.encode()) for t in texts) <= budget for texts in sent)
