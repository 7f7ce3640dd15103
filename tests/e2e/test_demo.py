"""`neuralpipe demo`, as a user runs it: ranked results for neural, neural_sparse and hybrid queries,
and a second run that reuses the models and the index the first one built.

Real everything, in a subprocess: the embedded ML node + data node, the offline models (MiniLM by its
pretrained name, SPLADE-tiny, the IDF tokenizer), the demo corpus, the ingest runner."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


def _demo(data_dir: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "COLUMNS": "160"}
    proc = subprocess.run([sys.executable, "-m", "neuralpipe.cli", "demo", "--data-dir", str(data_dir), "--size", "5"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _ranked(out: str, kind: str) -> list[tuple[int, float, str]]:
    """(rank, score, id) rows of one query's table."""
    section = out.split(f"== {kind}:", 1)[1].split("\n== ", 1)[0]
    rows = re.findall(r"^\s+(\d+)\s+(\d+\.\d+)\s+(\S+)\s", section, re.M)
    return [(int(r), float(s), i) for r, s, i in rows]


def test_demo_ranks_all_three_query_kinds_and_reuses_its_work(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    out = _demo(data_dir)
    for kind in ("neural", "sparse", "hybrid"):
        rows = _ranked(out, kind)
        assert [r for r, _, _ in rows] == [1, 2, 3, 4, 5], (kind, out)
        scores = [s for _, s, _ in rows]
        assert scores == sorted(scores, reverse=True) and scores[0] > 0, (kind, scores)
    # the answers a Python user expects near the top
    assert any(i.startswith("json.") for _, _, i in _ranked(out, "neural")[:3]), out
    assert any(i.split(".")[0] in ("zipfile", "tarfile", "gzip", "bz2", "lzma", "shutil")
               for _, _, i in _ranked(out, "sparse")[:3]), out
    assert any(i.startswith("subprocess") for _, _, i in _ranked(out, "hybrid")[:3]), out
    n_docs = int(re.search(r"^\s+(\d+) documents$", out, re.M).group(1))
    assert 300 <= n_docs <= 700
    assert f"the index holds {n_docs} documents" in out

    # second run: models found by name, nothing ingested again, same answers
    again = _demo(data_dir)
    assert again.count(": reusing ") == 3, again
    assert f"indexed 0, already there {n_docs}, failed 0; the index holds {n_docs} documents" in again
    for kind in ("neural", "sparse", "hybrid"):
        assert [i for _, _, i in _ranked(again, kind)] == [i for _, _, i in _ranked(out, kind)]

    # the README's next step: `neuralpipe search` on the demo's data dir (embedded ML + data node, no flags
    # beyond the index: fields and models come from what ingest recorded in the mapping)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    search = subprocess.run([sys.executable, "-m", "neuralpipe.cli", "search", "--data-dir", str(data_dir),
                             "--index", "neuralpipe-demo", "--hybrid", "read a CSV file", "--size", "3"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert search.returncode == 0, search.stderr
    top = re.findall(r"^\s+1\s+\d+\.\d+\s+(\S+)\s", search.stdout, re.M)
    assert top and top[0].startswith("csv"), search.stdout

    # the demo's closing hint runs as printed, from the directory the demo ran in
    hint = re.search(r"Try: (.+)$", again, re.M).group(1)
    printed = subprocess.run(hint, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr
    top = re.findall(r"^\s+1\s+\d+\.\d+\s+(\S+)\s", printed.stdout, re.M)
    assert top and top[0].startswith("csv"), printed.stdout

    # and `neuralpipe ingest` of the user's own documents into the same data dir, models named in the
    # shipped pipeline file and resolved on the embedded ML node
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps({"_id": "note-1", "text": "Brew green tea at 80 degrees for two minutes."}) + "\n")
    ingest = subprocess.run([sys.executable, "-m", "neuralpipe.cli", "ingest", str(mine), "--index", "notes",
                             "--pipeline", "pipelines/ingest/dense-sparse.yaml", "--data-dir", str(data_dir),
                             "--state-dir", str(tmp_path / "state"), "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["indexed"] == 1
    found = subprocess.run([sys.executable, "-m", "neuralpipe.cli", "search", "--data-dir", str(data_dir),
                            "--index", "notes", "--neural", "how hot should the water be for tea", "--json"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["hits"]["hits"][0]["_id"] == "note-1"
