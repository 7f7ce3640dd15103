"""TEXT_SIMILARITY and QUESTION_ANSWERING runtimes over tiny random BERTs (no such model ships offline),
checked against transformers' own forward of the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertForQuestionAnswering, BertForSequenceClassification

from mlnode.runtimes import PredictInputError
from mlnode.runtimes.similarity import best_span
from tests.fixtures.models import tiny_model_dir

pytestmark = [pytest.mark.integration]

QUERY = "what is the capital of france"
DOCS = ["Paris is the capital of France.", "The quick brown fox.", "Coffee is brewed from roasted beans. " * 80]


def test_cross_encoder_scores_equal_transformers(model_runtimes):
    folder = tiny_model_dir("cross-encoder")
    model = BertForSequenceClassification.from_pretrained(str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    batch = tokenizer(
        [QUERY] * len(DOCS), DOCS, padding=True, truncation="longest_first", max_length=512, return_tensors="pt"
    )
    with torch.no_grad():
        expected = model(**batch).logits[:, 0].numpy()

    results = model_runtimes["tiny-cross-encoder-onnx"].predict({"query_text": QUERY, "text_docs": DOCS})
    assert len(results) == len(DOCS)
    for result, logit in zip(results, expected, strict=True):
        (tensor,) = result["output"]
        assert tensor["name"] == "similarity" and tensor["shape"] == [1] and tensor["data_type"] == "FLOAT32"
        assert tensor["data"][0] == pytest.approx(float(logit), abs=1e-4)


def test_cross_encoder_feeds_token_type_ids(model_runtimes):
    runtime = model_runtimes["tiny-cross-encoder-onnx"]
    assert "token_type_ids" in runtime.backend.input_names
    assert not runtime.batchable


@pytest.mark.parametrize("body", [{"text_docs": ["a"]}, {"query_text": "q", "text_docs": []}, {"query_text": "q"}])
def test_cross_encoder_rejects_bad_bodies(model_runtimes, body):
    with pytest.raises(PredictInputError, match=r"query_text|text_docs"):
        model_runtimes["tiny-cross-encoder-onnx"].predict(body)


def test_question_answering_equals_transformers_span(model_runtimes):
    question, context = "Where is the Eiffel tower?", "The Eiffel tower stands in Paris, the capital of France."
    folder = tiny_model_dir("qa")
    model = BertForQuestionAnswering.from_pretrained(str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    batch = tokenizer(question, context, return_tensors="pt", return_offsets_mapping=True)
    offsets = batch.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        out = model(**batch)
    in_context = np.array([sid == 1 for sid in batch.sequence_ids(0)])
    start, end = best_span(out.start_logits[0].numpy(), out.end_logits[0].numpy(), in_context)
    expected = context[offsets[start][0] : offsets[end][1]]

    result = model_runtimes["tiny-qa-torchscript"].predict({"question": question, "context": context})
    assert result == [{"output": [{"result": expected}]}]
    assert expected and expected in context


def test_best_span_respects_order_and_context():
    start = np.array([9.0, 0.0, 1.0, 5.0, 0.0])
    end = np.array([9.0, 0.0, 2.0, 0.0, 3.0])
    allowed = np.array([False, True, True, True, True])  # token 0 is the question
    assert best_span(start, end, allowed) == (3, 4)
    assert best_span(start, end, np.zeros(5, dtype=bool)) is None
