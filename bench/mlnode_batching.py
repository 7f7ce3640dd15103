"""Bench 2: many concurrent one-text requests (the search pattern): cross-request batching on vs off (goal >= 3x),
and batching on vs its bound, the in-process runtime on the same texts in ``--batch``-text calls (goal >= 0.9).

Two ML nodes in their own processes serve the same MiniLM zip: one with the default batching queue
(``batch_max_size`` 32: requests waiting while a batch runs are merged into the next one), one with
``batch_max_size: 1`` (every request runs alone: batching off). The same SciFact queries are sent as one-text
predict requests with ``--concurrency`` in flight; the third side runs ``load_runtime`` on the same unpacked zip in
this process, the same texts in ``--batch``-text calls one after another (what merging requests can at best reach).
The sides' order rotates round by round; every round's texts/s and ratios are printed, the figures are the median
ratios, with p50/p99 latencies.

    .venv/bin/python bench/mlnode_batching.py [--requests 512] [--concurrency 64] [--rounds 5] [--format ONNX]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    MLNodeServer,
    batches,
    drive,
    in_process_runtime,
    median,
    package,
    percentile,
    predict_path,
    queries,
    report,
    timed,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--format", default="ONNX")
    parser.add_argument("--batch", type=int, default=32, help="texts per in-process call (the bound)")
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
    results: dict[str, list[dict]] = {"on": [], "off": [], "in-process": []}
    runtime = in_process_runtime(packaged)
    calls = batches(texts, args.batch)
    sides = ("on", "off", "in-process")
    with MLNodeServer() as on, MLNodeServer(neuralpipe_settings={"batch_max_size": 1}) as off:
        urls = {}
        for label, server in (("on", on), ("off", off)):
            model_id = server.register_and_deploy(packaged)
            urls[label] = server.url + predict_path("text_embedding", model_id)
            drive(urls[label], bodies[:64], concurrency=min(16, args.concurrency))  # warm-up
        runtime.infer(calls[0])
        for r in range(args.rounds):
            order = sides[r % 3:] + sides[: r % 3]
            for label in order:
                if label == "in-process":
                    results[label].append({"elapsed": timed(lambda: [runtime.infer(c) for c in calls]),
                                           "latencies_ms": []})
                    continue
                res = drive(urls[label], bodies, concurrency=args.concurrency)
                if res["errors"]:
                    raise RuntimeError(f"batching {label}: {len(res['errors'])} failed requests, "
                                       f"e.g. {res['errors'][:2]}")
                results[label].append(res)
            t = {label: results[label][-1]["elapsed"] for label in sides}
            print(json.dumps({"round": r + 1, "order": list(order),
                              **{f"{label}_texts_per_s": round(len(bodies) / t[label], 1) for label in sides},
                              "on_vs_off": round(t["off"] / t["on"], 3),
                              "on_vs_in_process": round(t["in-process"] / t["on"], 3)}), flush=True)
    runtime.close()

    def summary(label: str) -> dict:
        runs = results[label]
        lat = [x for r in runs for x in r["latencies_ms"]]
        out = {"requests_per_s": round(median([len(bodies) / r["elapsed"] for r in runs]), 1)}
        if lat:
            out.update({"p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1)})
        return out

    ratios = [b["elapsed"] / a["elapsed"] for a, b in zip(results["on"], results["off"])]
    bound = [b["elapsed"] / a["elapsed"] for a, b in zip(results["on"], results["in-process"])]
    out = {"bench": "mlnode_batching", "format": args.format.upper(), "requests": len(bodies),
           "concurrency": args.concurrency, "on": summary("on"), "off": summary("off"),
           "in_process": summary("in-process"),
           "ratio_median": round(median(ratios), 2), "ratios": [round(x, 2) for x in ratios],
           "vs_in_process_median": round(median(bound), 2), "vs_in_process": [round(x, 2) for x in bound]}
    print(json.dumps(out), flush=True)
    report(f"{len(bodies)} one-text requests, {args.concurrency} in flight, MiniLM {args.format.upper()}, median of "
           f"{args.rounds} rounds (sides rotate): batching on vs off (goal >= 3x), batching on vs in-process "
           f"{args.batch}-text calls (goal >= 0.9)",
           [("batching on", out["on"]), ("batching off", out["off"]),
            (f"in-process, {args.batch}-text calls", out["in_process"]),
            ("ratio on/off", f"{out['ratio_median']} {out['ratios']}"),
            ("ratio on/in-process", f"{out['vs_in_process_median']} {out['vs_in_process']}")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
