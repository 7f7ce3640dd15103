"""nDCG@k / recall@k and the BEIR reader, checked on examples computed by hand (and against trec_eval when present)."""

from __future__ import annotations

import json
import math
import random

import pytest

from neuralpipe.eval.metrics import (
    BeirFormatError,
    beir_passage,
    evaluate,
    load_beir,
    ndcg_at_k,
    ranked,
    recall_at_k,
)

pytestmark = pytest.mark.unit


def test_ndcg_binary_relevant_at_rank_two():
    # one relevant doc, found at rank 2: DCG = 1/log2(3); ideal = 1/log2(2) = 1
    assert ndcg_at_k({"d2": 1}, ["d1", "d2", "d3"], 10) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k({"d2": 1}, ["d1", "d2", "d3"], 10) == pytest.approx(0.6309297535714575)


def test_ndcg_graded_uses_linear_gain_and_ideal_from_qrels():
    judged = {"a": 2, "b": 1, "c": 3}  # c is never retrieved: it still counts in the ideal DCG
    ranking = ["b", "x", "a"]
    dcg = 1 / math.log2(2) + 0 + 2 / math.log2(4)  # = 1 + 1 = 2
    ideal = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)  # = 3 + 1.26186 + 0.5
    assert ndcg_at_k(judged, ranking, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(judged, ranking, 10) == pytest.approx(2 / 4.761859507142915)


def test_ndcg_cut_ignores_ranks_past_k_and_ideal_is_cut_too():
    judged = {"a": 1, "b": 1, "c": 1}
    # k=2: retrieved [a, x] -> DCG 1; ideal of 2 relevant = 1 + 1/log2(3)
    assert ndcg_at_k(judged, ["a", "x", "b", "c"], 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(judged, ["x", "y", "a"], 2) == 0.0


def test_ndcg_perfect_and_zero_and_nonpositive_grades():
    assert ndcg_at_k({"a": 1}, ["a"], 10) == 1.0
    assert ndcg_at_k({"a": 1}, [], 10) == 0.0
    assert ndcg_at_k({"a": 0}, ["a"], 10) == 0.0  # no positive judgement: nothing to find
    assert ndcg_at_k({"a": 1, "z": -1}, ["z", "a"], 10) == pytest.approx(1 / math.log2(3))


def test_recall_at_k():
    judged = {"a": 1, "b": 2, "c": 1, "n": 0}
    assert recall_at_k(judged, ["a", "x", "b", "n"], 100) == pytest.approx(2 / 3)
    assert recall_at_k(judged, ["x", "a", "b", "c"], 1) == 0.0
    assert recall_at_k(judged, ["c", "a", "b"], 3) == 1.0


def test_ties_ranked_like_trec_eval_doc_id_descending():
    assert ranked({"d1": 0.5, "d3": 0.5, "d2": 0.9}) == ["d2", "d3", "d1"]
    # so a tie with an irrelevant doc of larger id puts the relevant one second
    result = evaluate({"q": {"a": 1}}, {"q": {"a": 1.0, "b": 1.0}})
    assert result.means["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_evaluate_means_over_judged_queries_and_drops_identical_ids():
    qrels = {"q1": {"d1": 1}, "q2": {"d9": 1}, "q3": {"dx": 0}}
    run = {"q1": {"q1": 9.0, "d1": 1.0}, "q2": {"d8": 1.0}}  # q1's own id ranks first and is dropped (BEIR)
    res = evaluate(qrels, run)
    assert set(res.per_query) == {"q1", "q2"}  # q3 has no relevant doc: not in the mean
    assert res.per_query["q1"] == {"ndcg@10": 1.0, "recall@100": 1.0}
    assert res.means == {"ndcg@10": 0.5, "recall@100": 0.5}
    kept = evaluate(qrels, run, ignore_identical_ids=False)
    assert kept.per_query["q1"]["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_query_with_no_hits_counts_as_zero():
    res = evaluate({"q1": {"d1": 1}, "q2": {"d2": 1}}, {"q1": {"d1": 1.0}})
    assert res.means["ndcg@10"] == 0.5


def test_agrees_with_pytrec_eval_on_random_graded_runs():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(300)]
    qrels = {f"q{i}": {d: rng.choice([1, 1, 2, 3]) for d in rng.sample(docs, rng.randint(1, 6))} for i in range(40)}
    # scores with deliberate ties (rounded) to exercise trec_eval's tie order
    run = {q: {d: round(rng.random(), 2) for d in rng.sample(docs, 150)} for q in qrels}
    ours = evaluate(qrels, run)
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    for q in qrels:
        assert ours.per_query[q]["ndcg@10"] == pytest.approx(ref[q]["ndcg_cut_10"], abs=1e-12)
        assert ours.per_query[q]["recall@100"] == pytest.approx(ref[q]["recall_100"], abs=1e-12)


def _write_beir(root, corpus, queries, qrels_rows, split="test"):
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    lines = ["query-id\tcorpus-id\tscore"] + ["\t".join(map(str, r)) for r in qrels_rows]
    (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")


def test_load_beir_keeps_judged_queries_and_builds_the_passage(tmp_path):
    _write_beir(
        tmp_path,
        [{"_id": "1", "title": "Cats", "text": "Cats purr."}, {"_id": "2", "title": "", "text": " Dogs bark. "}],
        [{"_id": "q1", "text": "purring"}, {"_id": "q2", "text": "unjudged"}],
        [("q1", "1", 2)],
        split="dev",
    )
    ds = load_beir(tmp_path, "dev")
    assert ds.queries == {"q1": "purring"}
    assert ds.qrels == {"q1": {"1": 2}}
    assert ds.passage("1") == "Cats Cats purr."
    assert ds.passage("2") == "Dogs bark."
    assert beir_passage({"text": "x"}) == "x"


def test_load_beir_errors_name_the_file_and_the_splits(tmp_path):
    _write_beir(tmp_path, [{"_id": "1", "text": "a"}], [{"_id": "q", "text": "b"}], [("q", "1", 1)], split="train")
    with pytest.raises(BeirFormatError, match=r"qrels/test.tsv not found.*splits present: \['train'\]"):
        load_beir(tmp_path, "test")
    (tmp_path / "corpus.jsonl").write_text('{"_id": "1", "text": "a"}\n{oops\n')
    with pytest.raises(BeirFormatError, match=r"corpus.jsonl:2: not a JSON object"):
        load_beir(tmp_path, "train")
