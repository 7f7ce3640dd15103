"""Issue 11, item 1: a long text does not exhaust the ML node's memory. Before the fix one 20 MB text to `_predict`
peaked at 5.9 GB and kept 4.5 GB; here the text is cut to what the model can use before it is tokenized. The node
runs in this process (the session ``ml_node``), so its peak is this process' peak RSS, reset before the request
(``/proc/self/clear_refs``). The bounds are generous: the body and its parsed text are a few copies of 8 MB."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]
MB = 1024 * 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _predict(url: str, model_id: str, texts: list[str]) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        f"{url}/_plugins/_ml/_predict/text_embedding/{model_id}", method="POST",
        data=json.dumps({"text_docs": texts}).encode(), headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=300) as resp:
        return resp.status, dict(resp.headers), json.loads(resp.read())


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to read peak RSS")
def test_a_long_text_keeps_rss_bounded(ml_node):
    model_id = ml_node.model_ids["dense"]
    _predict(ml_node.url, model_id, ["warm up the model and its tokenizer"])
    text = "The quick brown fox jumps over the lazy dog. " * (8 * MB // 45)
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS (VmHWM) := current RSS
    status, headers, body = _predict(ml_node.url, model_id, [text, "a short one"])
    peak = _status_kb("VmHWM")
    after = _status_kb("VmRSS")
    assert status == 200
    assert headers["X-Neuralpipe-Truncated"] == "0"
    assert [len(r["output"][0]["data"]) for r in body["inference_results"] if r["output"][0]["name"]
            == "sentence_embedding"] == [384, 384]
    # the 8 MB body, its text and the JSON of the request: well under 400 MB at the peak, and given back after
    assert (peak - before) * 1024 < 400 * MB, f"peak grew by {(peak - before) // 1024} MB"
    assert (after - before) * 1024 < 150 * MB, f"RSS grew by {(after - before) // 1024} MB and stayed"
