"""Bench 7: peak memory of the ML node with both models deployed, against the models' file sizes.

Starts ``neuralpipe serve --roles ml`` in its own process, reads its resident memory when idle, deploys
all-MiniLM-L6-v2 (dense) and SPLADE-tiny (sparse doc encoder), runs 32-text predicts of SciFact passages
through both, and reports the peak resident set (VmHWM) and its growth over the idle process, next to the
size of the model files in the zips. Once per model format.

    .venv/bin/python bench/mlnode_memory.py [--formats ONNX,TORCH_SCRIPT]
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MLNodeServer, batches, http_json, package, passages, predict_path, report  # noqa: E402

MB = 1024 * 1024


def model_file_bytes(zip_path: Path) -> int:
    with zipfile.ZipFile(zip_path) as zf:
        return sum(i.file_size for i in zf.infolist() if i.filename.endswith((".onnx", ".pt")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default="ONNX,TORCH_SCRIPT")
    parser.add_argument("--texts", type=int, default=256)
    args = parser.parse_args(argv)
    texts = batches(passages(args.texts), 32)
    rows = []
    for fmt in [f.strip().upper() for f in args.formats.split(",") if f.strip()]:
        dense, sparse = package("dense", fmt), package("sparse", fmt)
        files = model_file_bytes(dense.zip_path) + model_file_bytes(sparse.zip_path)
        with MLNodeServer() as node:
            idle = node.rss_bytes()
            ids = {"text_embedding": node.register_and_deploy(dense),
                   "sparse_encoding": node.register_and_deploy(sparse)}
            deployed = node.rss_bytes()
            for algorithm, model_id in ids.items():
                for chunk in texts:
                    status, resp = http_json("POST", node.url + predict_path(algorithm, model_id), {"text_docs": chunk})
                    if status != 200:
                        raise RuntimeError(f"{algorithm}: {status} {resp}")
            peak = node.peak_rss_bytes()
        out = {"bench": "mlnode_memory", "format": fmt, "model_files_mb": round(files / MB, 1),
               "idle_rss_mb": round(idle / MB, 1), "deployed_rss_mb": round(deployed / MB, 1),
               "peak_rss_mb": round(peak / MB, 1), "peak_over_idle_mb": round((peak - idle) / MB, 1),
               "peak_over_idle_per_model_mb": round((peak - idle) / files, 2)}
        print(json.dumps(out), flush=True)
        rows.append((fmt, out))
    report("ML node memory with MiniLM + SPLADE-tiny deployed and predicting (32-text batches)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
