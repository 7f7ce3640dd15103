"""Issue 11 item 5: what per-model inference threads with a predict timeout cost on the normal path.

Starts ``neuralpipe serve --roles ml`` from two code trees (``--old``: e.g. a worktree of main, shared inference
threads; ``--new``: this branch, threads per model, every runtime call under ``predict_timeout_seconds``), deploys
all-MiniLM-L6-v2 (TorchScript) on each, and in rounds that alternate the two sides sends the same SciFact passages:
32-text requests one at a time, and one-text requests 32 in flight (cross-request batching). Prints every round's
time for each side and the ratio new / old (1.0 = no cost; below 1 = faster), and the median ratio. First, in this
process, the dispatch alone: a no-op call through ``run_in_executor`` on a ``ThreadPoolExecutor`` (old) and through
``ModelThreads`` under ``wait_for`` (new), 2000 calls a round.

    .venv/bin/python bench/mlnode_isolation_overhead.py --old /path/to/main --new /path/to/branch --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE, batches, drive, median, package, passages, report  # noqa: E402
from mlnode_long_text import deploy, start  # noqa: E402


def _noop(value: int) -> int:
    return value


async def _dispatch(rounds: int, calls: int = 2000) -> list[float]:
    from mlnode.batching import ModelThreads

    loop = asyncio.get_running_loop()
    shared, own = ThreadPoolExecutor(2), ModelThreads(2, "bench")
    ratios = []
    for round_no in range(rounds):
        started = time.perf_counter()
        for i in range(calls):
            await loop.run_in_executor(shared, _noop, i)
        old = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(calls):
            await asyncio.wait_for(asyncio.wrap_future(own.submit(_noop, i)), 60.0)
        new = time.perf_counter() - started
        ratios.append(new / old)
        print(json.dumps({"workload": "dispatch of a no-op call", "round": round_no + 1,
                          "old_us": round(old / calls * 1e6, 1), "new_us": round(new / calls * 1e6, 1),
                          "new_over_old": round(ratios[-1], 3)}), flush=True)
    shared.shutdown()
    own.shutdown()
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, type=Path)
    parser.add_argument("--new", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--texts", type=int, default=512)
    args = parser.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    dispatch = asyncio.run(_dispatch(args.rounds))
    texts = passages(args.texts)
    workloads = {
        "32-text requests, 1 in flight": ([{"text_docs": b} for b in batches(texts, 32)], 1),
        "1-text requests, 32 in flight": ([{"text_docs": [t]} for t in texts], 32),
    }
    packaged = package("dense", "TORCH_SCRIPT")
    servers = {}
    try:
        for side, tree in (("old", args.old), ("new", args.new)):
            proc, url = start(tree, Path(tempfile.mkdtemp(prefix=f"np-overhead-{side}-", dir=CACHE)))
            servers[side] = (proc, url, deploy(url, packaged))
        for _, url, model_id in servers.values():  # warm up both
            warm = workloads["32-text requests, 1 in flight"][0][:4]
            drive(f"{url}/_plugins/_ml/_predict/text_embedding/{model_id}", warm, concurrency=1)
        rows = [("dispatch of a no-op call", f"new/old median {median(dispatch):.3f} over rounds "
                                             f"{[round(r, 3) for r in dispatch]}")]
        for name, (bodies, concurrency) in workloads.items():
            ratios = []
            for round_no in range(args.rounds):
                seconds = {}
                order = ("old", "new") if round_no % 2 == 0 else ("new", "old")
                for side in order:
                    _, url, model_id = servers[side]
                    result = drive(f"{url}/_plugins/_ml/_predict/text_embedding/{model_id}", bodies,
                                   concurrency=concurrency)
                    if result["errors"]:
                        raise RuntimeError(f"{side}: {result['errors'][:3]}")
                    seconds[side] = result["elapsed"]
                ratios.append(seconds["new"] / seconds["old"])
                print(json.dumps({"workload": name, "round": round_no + 1, "old_s": round(seconds["old"], 3),
                                  "new_s": round(seconds["new"], 3), "new_over_old": round(ratios[-1], 3)}),
                      flush=True)
            rows.append((name, f"new/old median {median(ratios):.3f} over rounds {[round(r, 3) for r in ratios]}"))
        report("ML node normal path: per-model threads + predict timeout (new) vs shared threads (old)", rows)
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
