"""Bench 3: the ML node against infinity-emb serving the same model on the same machine (goal >= 1.0).

infinity-emb runs in its own venv (``bench/infinity_venv.sh`` creates it), started here on loopback, offline,
pointed at the local all-MiniLM-L6-v2 folder (torch engine, batch size 32). Our ML node serves the same model as
ONNX and as TorchScript. Two workloads, alternating the servers round by round on the same texts:

- ``batch32``: SciFact passages in 32-text requests, 2 in flight (bulk ingest pattern);
- ``single``: SciFact queries as one-text requests, 64 in flight (search pattern).

The figure is texts/s of the ML node over texts/s of infinity (median of the per-round ratios).

    bash bench/infinity_venv.sh && .venv/bin/python bench/vs_infinity.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CACHE,
    MLNodeServer,
    batches,
    drive,
    free_port,
    median,
    package,
    passages,
    predict_path,
    queries,
    report,
    wait_http,
)

INFINITY_VENV = Path(os.environ.get("INFINITY_VENV", "/tmp/neuralpipe-infinity-venv"))


class InfinityServer:
    def __init__(self, model_dir: Path, *, batch_size: int = 32, engine: str = "torch") -> None:
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.engine = engine
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> InfinityServer:
        exe = INFINITY_VENV / "bin" / "infinity_emb"
        if not exe.exists():
            raise SystemExit(f"{exe} not found: run `bash bench/infinity_venv.sh` first")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(Path(tempfile.mkdtemp(dir=CACHE)) / "infinity.log", "w")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
               "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
        self.proc = subprocess.Popen(
            [str(exe), "v2", "--model-id", str(self.model_dir), "--served-model-name", "minilm",
             "--engine", self.engine, "--device", "cpu", "--batch-size", str(self.batch_size),
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_http(self.url + "/health", proc=self.proc, timeout=300)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passages", type=int, default=512)
    parser.add_argument("--queries", type=int, default=512)
    parser.add_argument("--formats", default="ONNX,TORCH_SCRIPT")
    parser.add_argument("--intra-op-threads", type=int,
                        help="NEURALPIPE_INTRA_OP_THREADS for the ML node (default: library's)")
    args = parser.parse_args(argv)
    if args.intra_op_threads is not None:
        os.environ["NEURALPIPE_INTRA_OP_THREADS"] = str(args.intra_op_threads)  # inherited by the server processes
    from mlnode import offline

    docs = passages(args.passages)
    qs = queries(args.queries)
    workloads = {
        "batch32": {"texts": len(docs), "concurrency": 2,
                    "ours": [{"text_docs": b, "target_response": ["sentence_embedding"]} for b in batches(docs, 32)],
                    "theirs": [{"model": "minilm", "input": b} for b in batches(docs, 32)]},
        "single": {"texts": len(qs), "concurrency": 64,
                   "ours": [{"text_docs": [q], "target_response": ["sentence_embedding"]} for q in qs],
                   "theirs": [{"model": "minilm", "input": [q]} for q in qs]},
    }
    formats = [f.strip().upper() for f in args.formats.split(",") if f.strip()]
    rows, outputs = [], []
    with InfinityServer(offline.minilm_dir()) as peer, MLNodeServer() as node:
        targets = {"infinity": peer.url + "/embeddings"}
        for fmt in formats:
            model_id = node.register_and_deploy(package("dense", fmt), name=f"all-MiniLM-L6-v2-{fmt.lower()}")
            targets[fmt] = node.url + predict_path("text_embedding", model_id)
        for w in workloads.values():  # warm-up
            drive(targets["infinity"], w["theirs"][:8], concurrency=2)
            for fmt in formats:
                drive(targets[fmt], w["ours"][:8], concurrency=2)
        for wname, w in workloads.items():
            rates: dict[str, list[float]] = {k: [] for k in targets}
            for r in range(args.rounds):
                order = list(targets) if r % 2 == 0 else list(reversed(list(targets)))
                for key in order:
                    bodies = w["theirs"] if key == "infinity" else w["ours"]
                    res = drive(targets[key], bodies, concurrency=w["concurrency"])
                    if res["errors"]:
                        raise RuntimeError(f"{key} {wname}: {res['errors'][:2]}")
                    rates[key].append(w["texts"] / res["elapsed"])
            for fmt in formats:
                ratios = [a / b for a, b in zip(rates[fmt], rates["infinity"])]
                out = {"bench": "vs_infinity", "workload": wname, "format": fmt,
                       "ml_node_texts_per_s": round(median(rates[fmt]), 1),
                       "infinity_texts_per_s": round(median(rates["infinity"]), 1),
                       "ratio_median": round(median(ratios), 3), "ratios": [round(x, 3) for x in ratios]}
                outputs.append(out)
                print(json.dumps(out), flush=True)
                headline = ("ml_node_texts_per_s", "infinity_texts_per_s", "ratio_median")
                rows.append((f"{wname} {fmt}", {k: out[k] for k in headline}))
    report(f"ML node vs infinity-emb (torch engine, batch 32), MiniLM, median of {args.rounds} alternating rounds "
           "(goal ratio >= 1.0)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
