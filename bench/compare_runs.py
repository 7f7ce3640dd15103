"""\
Compare two runs of the same queries (e.g. ``neuralpipe eval --save-runs`` dense vs ``reference_dense.py --save-run``).

Prints both runs' nDCG@10 / recall@100, their difference, how many queries' top-10 lists are identical, and the
queries whose nDCG@10 differs.

    .venv/bin/python bench/compare_runs.py ../shared/data/scifact --split train RUN_A.json RUN_B.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from neuralpipe.eval.metrics import evaluate, load_beir, ranked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    qrels = load_beir(args.dataset, args.split).qrels
    a, b = json.loads(args.run_a.read_text()), json.loads(args.run_b.read_text())
    ea, eb = evaluate(qrels, a), evaluate(qrels, b)
    same_top10 = sum(ranked(a.get(q, {}))[:10] == ranked(b.get(q, {}))[:10] for q in qrels)
    differing = sorted(q for q in ea.per_query if abs(ea.per_query[q]["ndcg@10"] - eb.per_query[q]["ndcg@10"]) > 1e-9)
    out = {
        "a": {k: round(v, 5) for k, v in ea.means.items()},
        "b": {k: round(v, 5) for k, v in eb.means.items()},
        "diff": {k: round(ea.means[k] - eb.means[k], 5) for k in ea.means},
        "queries": len(ea.per_query),
        "identical_top10": same_top10,
        "queries_with_different_ndcg@10": len(differing),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
