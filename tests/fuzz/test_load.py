"""Issue 11, "must show": a bounded load test. 64 concurrent clients for LOAD_SECONDS send predicts to the ML node
and searches to the data node (one ``neuralpipe serve --roles ml,data`` subprocess, loopback), mixed. Every answer
must be 200 or 429 (backpressure), both kinds must be served, the node's resident memory must stay bounded, and the
sentinel model and index must answer as before. No timing is asserted.

RSS is read from ``/proc/<pid>/status`` of the node process (VmRSS sampled during the load, VmHWM for the peak).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from tests.fuzz.node import ML, SENTINEL_INDEX, FuzzNode, ServedNode

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS = 64
LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "15"))
# The node after setup holds MiniLM (int8 ONNX), a tokenizer model, faiss and the Python runtime (~0.3 GB here).
# 64 clients with short texts and small searches must not grow it by more than this: batches are bounded by the
# node's token and memory budgets, the queue by its capacity.
RSS_GROWTH_LIMIT_KIB = 1024 * 1024  # 1 GiB
TEXTS = ["alpha bravo", "what is neural search?", "a somewhat longer sentence about vectors and tokens " * 4,
         "charlie", "delta echo foxtrot golf hotel"]


async def _client(session: aiohttp.ClientSession, base: str, model_id: str, stop_at: float, seed: int,
                  statuses: Counter, bodies: list[str]) -> None:
    rng = random.Random(seed)
    while time.monotonic() < stop_at:
        if rng.random() < 0.5:
            kind = "predict"
            url = f"{base}{ML}/_predict/text_embedding/{model_id}"
            body: dict[str, Any] = {"text_docs": rng.sample(TEXTS, rng.randint(1, 3))}
        else:
            kind = "search"
            url = f"{base}/{SENTINEL_INDEX}/_search"
            body = rng.choice([
                {"query": {"match": {"title": rng.choice(["alpha", "bravo charlie", "lima"])}}, "size": 5},
                {"query": {"knn": {"vec": {"vector": [rng.uniform(-5, 5) for _ in range(4)], "k": 5}}}},
            ])
        async with session.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}) as resp:
            text = await resp.text()
            statuses[(kind, resp.status)] += 1
            if resp.status not in (200, 429) and len(bodies) < 5:
                bodies.append(f"{kind} {resp.status} {text[:300]}")
            elif resp.status == 200 and kind == "predict":
                assert len(json.loads(text)["inference_results"]) == len(body["text_docs"])


async def _run_load(base: str, model_id: str, node: ServedNode) -> tuple[Counter, list[str], list[int]]:
    statuses: Counter = Counter()
    bodies: list[str] = []
    samples: list[int] = []
    stop_at = time.monotonic() + LOAD_SECONDS
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def sample_rss() -> None:
            while time.monotonic() < stop_at:
                samples.append(node.rss_kib())
                await asyncio.sleep(0.5)

        await asyncio.gather(sample_rss(), *[
            _client(session, base, model_id, stop_at, seed, statuses, bodies) for seed in range(CLIENTS)])
    return statuses, bodies, samples


def test_64_clients_predict_and_search_get_only_200_or_429(fuzz_node: FuzzNode,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    node = fuzz_node.node
    before = node.rss_kib()
    statuses, bodies, samples = asyncio.run(_run_load(node.url, fuzz_node.ids["sentinel_model"], node))
    after, peak = node.rss_kib(), node.peak_rss_kib()
    with capsys.disabled():
        print(f"\nload: {CLIENTS} clients x {LOAD_SECONDS:.0f} s: {dict(sorted(statuses.items()))}; node RSS "
              f"before {before // 1024} MiB, max sampled {max(samples) // 1024} MiB, after {after // 1024} MiB, "
              f"peak (VmHWM) {peak // 1024} MiB")
    assert node.alive()
    assert {status for _, status in statuses} <= {200, 429}, bodies
    assert statuses[("predict", 200)] > 0 and statuses[("search", 200)] > 0, statuses
    assert peak - before < RSS_GROWTH_LIMIT_KIB, f"peak RSS {peak} KiB vs {before} KiB before the load"
    assert fuzz_node.sentinels.changes(fuzz_node.client) == []
