"""``neuralpipe eval`` when its ingest fails: the error names the index, the summary and the first failures.

This path once read ``runner.dead_letter.first``, which DeadLetter does not have: a failed eval ingest raised
AttributeError instead of telling the user what went wrong. mypy finds that class of bug now; this test runs the
path. The pipeline is a stand-in (an error path; inference itself is tested with real models elsewhere).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from neuralpipe.eval.methods import EvalModels
from neuralpipe.eval.metrics import BeirDataset
from neuralpipe.eval.run import EvalContext, EvalError, _ingest
from neuralpipe.local import make_client, make_ml_client
from opensearch_contract.errors import OpenSearchError
from tests.neuralpipe.busy_cluster import BusyCluster, BusyClusterServer

pytestmark = pytest.mark.integration


class RejectingPipeline:
    """Answers every document with the error an ingest processor gives a document it cannot embed."""

    async def run(self, docs, *, lookup=None):
        return [OpenSearchError(f"document [{d.id}] has no text to embed", status=400,
                                error_type="illegal_argument_exception") for d in docs]


async def test_a_failed_eval_ingest_reports_its_first_failures(tmp_path: Path) -> None:
    corpus = {f"d{n}": {"title": f"T{n}", "text": f"passage {n}"} for n in range(1, 6)}
    dataset = BeirDataset(corpus=corpus, queries={}, qrels={}, path=tmp_path / "tiny")
    cluster = BusyCluster()
    cluster.indices.add("evalidx")
    with BusyClusterServer(cluster):
        client = make_client(cluster.url)
        ml = make_ml_client("http://127.0.0.1:9")  # never called: the stand-in pipeline does no inference
        ctx = EvalContext(dataset, "evalidx", EvalModels("dense", "sparse", "tok"), client, ml, ml, k=10,
                          concurrency=2, state_dir=tmp_path / "state")
        try:
            with pytest.raises(EvalError) as info:
                await _ingest(ctx, RejectingPipeline(), batch_size=2)
        finally:
            await client.close()
            await ml.close()
    message = str(info.value)
    assert message.startswith("ingest into [evalidx] failed: {")
    assert "'pipeline': 5" in message  # the summary: every document failed in the pipeline
    first = message.split("; first failures: ", 1)[1]
    assert re.findall(r"'line': (\d+), 'stage': 'pipeline', 'id': '(d\d)', 'status': 400", first) == [
        ("1", "d1"), ("2", "d2"), ("3", "d3")]
    assert "'type': 'illegal_argument_exception', 'reason': 'document [d1] has no text to embed'" in first
    assert not cluster.docs
