"""Bench 2: many concurrent one-text requests (the search pattern), cross-request batching on vs off (goal >= 3x).

Two ML nodes in their own processes serve the same MiniLM zip: one with the default batching queue
(``batch_max_size`` 32: requests waiting while a batch runs are merged into the next one), one with
``batch_max_size: 1`` (every request runs alone: batching off). The same SciFact queries are sent as one-text
predict requests with ``--concurrency`` in flight, alternating the two nodes round by round; the figure is the
median ratio of requests/s (on over off), with p50/p99 latencies.

    .venv/bin/python bench/mlnode_batching.py [--requests 512] [--concurrency 64] [--rounds 5] [--format ONNX]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MLNodeServer, drive, median, package, percentile, predict_path, queries, report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--format", default="ONNX")
    parser.add_argument("--intra-op-threads", type=int,
                        help="NEURALPIPE_INTRA_OP_THREADS for the ML node (default: library's)")
    args = parser.parse_args(argv)
    if args.intra_op_threads is not None:
        os.environ["NEURALPIPE_INTRA_OP_THREADS"] = str(args.intra_op_threads)  # inherited by the server processes

    packaged = package("dense", args.format.upper())
    texts = queries(args.requests)
    while len(texts) < args.requests:
        texts += texts[: args.requests - len(texts)]
    bodies = [{"text_docs": [t], "target_response": ["sentence_embedding"]} for t in texts]
    results: dict[str, list[dict]] = {"on": [], "off": []}
    with MLNodeServer() as on, MLNodeServer(neuralpipe_settings={"batch_max_size": 1}) as off:
        urls = {}
        for label, server in (("on", on), ("off", off)):
            model_id = server.register_and_deploy(packaged)
            urls[label] = server.url + predict_path("text_embedding", model_id)
            drive(urls[label], bodies[:64], concurrency=min(16, args.concurrency))  # warm-up
        for r in range(args.rounds):
            order = ("on", "off") if r % 2 == 0 else ("off", "on")
            for label in order:
                res = drive(urls[label], bodies, concurrency=args.concurrency)
                if res["errors"]:
                    raise RuntimeError(f"batching {label}: {len(res['errors'])} failed requests, "
                                       f"e.g. {res['errors'][:2]}")
                results[label].append(res)

    def summary(label: str) -> dict:
        runs = results[label]
        lat = [x for r in runs for x in r["latencies_ms"]]
        return {"requests_per_s": round(median([len(bodies) / r["elapsed"] for r in runs]), 1),
                "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1)}

    ratios = [a["elapsed"] and b["elapsed"] / a["elapsed"] for a, b in zip(results["on"], results["off"])]
    out = {"bench": "mlnode_batching", "format": args.format.upper(), "requests": len(bodies),
           "concurrency": args.concurrency, "on": summary("on"), "off": summary("off"),
           "ratio_median": round(median(ratios), 2), "ratios": [round(x, 2) for x in ratios]}
    print(json.dumps(out), flush=True)
    report(f"cross-request batching on vs off, {len(bodies)} one-text requests, {args.concurrency} in flight, MiniLM "
           f"{args.format.upper()}, median of {args.rounds} alternating rounds (goal >= 3x)",
           [("batching on", out["on"]), ("batching off", out["off"]), ("ratio on/off", out["ratio_median"])])
    return 0


if __name__ == "__main__":
    sys.exit(main())
