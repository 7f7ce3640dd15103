"""TEXT_SIMILARITY (cross-encoder) and QUESTION_ANSWERING: non-batchable ``predict(body)``.

* Similarity: each ``(query_text, doc)`` pair is encoded as one sequence pair (token_type_ids fed only
  when the model declares them), truncated LongestFirst at max_length; the raw first logit is the
  score: ``{"name": "similarity", "data_type": "FLOAT32", "shape": [1], "data": [logit]}`` per doc.
* Question answering: ``(question, context)``; the answer is the context span (tokens of the second
  sequence, at most ``max_answer_length`` = 30 tokens) maximising start + end logits, cut from the
  context by the tokenizer's character offsets: ``[{"output": [{"result": answer}]}]``.
"""

from __future__ import annotations

import numpy as np

from mlnode.runtimes.base import BaseRuntime, PredictInputError, tensor, text_of, texts_of

_PAIR_BATCH = 32
MAX_ANSWER_LENGTH = 30


class TextSimilarityRuntime(BaseRuntime):
    function_name = "TEXT_SIMILARITY"

    def scores(self, query: str, docs: list[str]) -> list[float]:
        result: list[float] = []
        for start in range(0, len(docs), _PAIR_BATCH):
            pairs = [(query, doc) for doc in docs[start : start + _PAIR_BATCH]]
            outputs = self.run(self.tokenizer.encode(pairs))
            logits = outputs["logits"] if "logits" in outputs else next(iter(outputs.values()))
            result.extend(float(v) for v in np.asarray(logits, dtype=np.float32).reshape(len(pairs), -1)[:, 0])
        return result

    def predict(self, body: dict) -> list[dict]:
        query = text_of(body, "query_text")
        docs = texts_of(body, "text_docs")
        return [{"output": [tensor("similarity", np.array([s], dtype=np.float32))]} for s in self.scores(query, docs)]


def best_span(
    start: np.ndarray, end: np.ndarray, allowed: np.ndarray, max_length: int = MAX_ANSWER_LENGTH
) -> tuple[int, int] | None:
    """(i, j) maximising start[i] + end[j] over allowed tokens with i <= j < i + max_length."""
    index = np.flatnonzero(allowed)
    if index.size == 0:
        return None
    s, e = start[index], end[index]
    scores = s[:, None] + e[None, :]
    offsets = index[None, :] - index[:, None]
    valid = (offsets >= 0) & (offsets < max_length)
    scores = np.where(valid, scores, -np.inf)
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(index[i]), int(index[j])


class QuestionAnsweringRuntime(BaseRuntime):
    function_name = "QUESTION_ANSWERING"

    def answer(self, question: str, context: str) -> str:
        encoding = self.tokenizer.encodings([(question, context)])[0]
        outputs = self.run(self.tokenizer.batch([encoding]))
        if "start_logits" in outputs and "end_logits" in outputs:
            start, end = outputs["start_logits"][0], outputs["end_logits"][0]
        else:
            values = list(outputs.values())
            if len(values) < 2:
                raise PredictInputError("the question answering model must output start and end logits")
            start, end = values[0][0], values[1][0]
        allowed = np.array([sid == 1 for sid in encoding.sequence_ids], dtype=bool)
        span = best_span(np.asarray(start, np.float32), np.asarray(end, np.float32), allowed)
        if span is None:
            return ""
        begin, finish = encoding.offsets[span[0]][0], encoding.offsets[span[1]][1]
        return context[begin:finish]

    def predict(self, body: dict) -> list[dict]:
        return [{"output": [{"result": self.answer(text_of(body, "question"), text_of(body, "context"))}]}]
