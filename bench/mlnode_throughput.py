"""Bench 1: ML node predict throughput vs the same runtime called in-process, 32-text requests (goal >= 0.9).

For all-MiniLM-L6-v2 packaged as ONNX and as TorchScript: the ML node (``neuralpipe serve --roles ml``, its own
process, loopback HTTP, one keep-alive connection, requests sent one after another) and ``load_runtime`` on the
same unpacked zip in this process run the same batches of SciFact passages, alternating round by round. The ratio
is server texts/s over in-process texts/s; the median over the rounds is reported.

    .venv/bin/python bench/mlnode_throughput.py [--texts 320] [--batch 32] [--rounds 5] [--formats ONNX,TORCH_SCRIPT]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MLNodeServer, batches, in_process_runtime, median, package, passages, predict_path, report, timed  # noqa: E402


class PredictClient:
    """One keep-alive HTTP connection to the ML node's predict route."""

    def __init__(self, url: str, algorithm: str, model_id: str) -> None:
        u = urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        self.path = predict_path(algorithm, model_id)

    def predict(self, texts: list[str], extra: dict | None = None) -> dict:
        body = json.dumps({"text_docs": texts, **(extra or {})})
        self.conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        payload = json.loads(resp.read())
        if resp.status != 200:
            raise RuntimeError(f"predict answered {resp.status}: {payload}")
        return payload

    def close(self) -> None:
        self.conn.close()


def measure(model_format: str, texts: list[str], batch: int, rounds: int) -> dict:
    packaged = package("dense", model_format)
    runtime = in_process_runtime(packaged)
    chunks = batches(texts, batch)
    with MLNodeServer() as server:
        model_id = server.register_and_deploy(packaged)
        client = PredictClient(server.url, "text_embedding", model_id)
        extra = {"target_response": ["sentence_embedding"]}
        runtime.infer(chunks[0])  # warm-up both sides
        client.predict(chunks[0], extra)
        in_proc, served, ratios = [], [], []
        for r in range(rounds):
            run_in = lambda: [runtime.infer(c) for c in chunks]  # noqa: E731
            run_srv = lambda: [client.predict(c, extra) for c in chunks]  # noqa: E731
            if r % 2 == 0:
                t_in, t_srv = timed(run_in), timed(run_srv)
            else:
                t_srv, t_in = timed(run_srv), timed(run_in)
            in_proc.append(len(texts) / t_in)
            served.append(len(texts) / t_srv)
            ratios.append(t_in / t_srv)
        client.close()
    runtime.close()
    return {"in_process_texts_per_s": round(median(in_proc), 1), "ml_node_texts_per_s": round(median(served), 1),
            "ratio_median": round(median(ratios), 3), "ratios": [round(x, 3) for x in ratios]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=320)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--formats", default="ONNX,TORCH_SCRIPT")
    parser.add_argument("--intra-op-threads", type=int,
                        help="NEURALPIPE_INTRA_OP_THREADS for the ML node (default: library's)")
    args = parser.parse_args(argv)
    if args.intra_op_threads is not None:
        os.environ["NEURALPIPE_INTRA_OP_THREADS"] = str(args.intra_op_threads)  # inherited by the server processes
    texts = passages(args.texts)
    rows = []
    for fmt in [f.strip().upper() for f in args.formats.split(",") if f.strip()]:
        result = measure(fmt, texts, args.batch, args.rounds)
        rows.append((f"MiniLM {fmt}", result))
        line = {"bench": "mlnode_throughput", "format": fmt, "texts": len(texts), "batch": args.batch, **result}
        print(json.dumps(line), flush=True)
    report(f"ML node vs in-process runtime, {len(texts)} SciFact passages in {args.batch}-text requests, "
           f"median of {args.rounds} alternating rounds (goal ratio >= 0.9)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
