"""Issue 11 item 1: resident memory of the ML node around one predict of a very long text, old code vs new.

For each code tree (``--trees``: folders holding a neuralpipe checkout, e.g. a worktree of main and this branch) and
each text size, starts ``neuralpipe serve --roles ml`` from that tree, deploys all-MiniLM-L6-v2 (TorchScript), warms
it up, resets the process' peak RSS (``/proc/PID/clear_refs``), sends one predict whose only text is SIZE MB of
English, and reports the answer's status, the RSS before, the peak during and the RSS 2 s after. A server passing
``--kill-above-gb`` is killed (reported as such) so a shared machine is not run out of memory.

    .venv/bin/python bench/mlnode_long_text.py --trees /path/to/main,/path/to/branch --sizes 20,50
    .venv/bin/python bench/mlnode_long_text.py --trees /path/to/branch --sizes 50 --max-predict-body-mb 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE, _proc_status_kb, free_port, http_json, package, wait_http  # noqa: E402

MB = 1024 * 1024


def start(tree: Path, work: Path, extra: str = "") -> tuple[subprocess.Popen, str]:
    config = work / "mlnode.yaml"
    neuralpipe = extra or ""
    if "file_url_folders" in (tree / "mlnode" / "configs" / "mlnode.yaml").read_text():  # file:// is confined
        neuralpipe = (neuralpipe or "neuralpipe:\n") + f"  file_url_folders: [{json.dumps(str(CACHE))}]\n"
    config.write_text("plugins.ml_commons:\n  allow_registering_model_via_url: true\n  native_memory_threshold: 100\n"
                      + neuralpipe)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuralpipe.cli", "serve", "--roles", "ml", "--port", str(port), "--data-dir",
         str(work / "data"), "--config", str(config)],
        cwd=str(tree), env={**os.environ, "PYTHONPATH": str(tree)},
        stdout=open(work / "server.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", proc=proc)
    return proc, url


def deploy(url: str, packaged) -> str:
    def wait(task_id: str) -> dict:
        while True:
            _, task = http_json("GET", f"{url}/_plugins/_ml/tasks/{task_id}")
            if task["state"] not in ("CREATED", "RUNNING"):
                assert task["state"] == "COMPLETED", task
                return task
            time.sleep(0.2)

    body = {**packaged.config, "url": packaged.zip_path.resolve().as_uri()}
    _, resp = http_json("POST", f"{url}/_plugins/_ml/models/_register", body)
    model_id = wait(resp["task_id"])["model_id"]
    _, resp = http_json("POST", f"{url}/_plugins/_ml/models/{model_id}/_deploy")
    wait(resp["task_id"])
    return model_id


def measure(tree: Path, size_mb: int, kill_above: int, body_cap_mb: int = 0) -> dict:
    work = Path(tempfile.mkdtemp(prefix="np-long-text-", dir=CACHE))
    extra = f"neuralpipe:\n  max_predict_body_bytes: {body_cap_mb * MB}\n" if body_cap_mb else ""
    proc, url = start(tree, work, extra)
    try:
        model_id = deploy(url, package("dense", "TORCH_SCRIPT"))
        path = f"{url}/_plugins/_ml/_predict/text_embedding/{model_id}"
        http_json("POST", path, {"text_docs": ["warm up"]})
        before = _proc_status_kb(proc.pid, "VmRSS") * 1024
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
        killed = threading.Event()

        def watch() -> None:
            while proc.poll() is None:
                if _proc_status_kb(proc.pid, "VmRSS") * 1024 > kill_above:
                    killed.set()
                    proc.kill()
                    return
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()
        text = "The quick brown fox jumps over the lazy dog. " * (size_mb * MB // 45)
        data = json.dumps({"text_docs": [text]}).encode()
        started = time.perf_counter()
        try:
            request = urllib.request.Request(path, data=data, method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=900) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, ConnectionError):
            status = "killed" if killed.is_set() else "connection lost"
        seconds = time.perf_counter() - started
        if killed.is_set():
            return {"tree": str(tree), "size_mb": size_mb, "status": "killed",
                    "peak_rss_mb": f"> {kill_above // MB}", "before_rss_mb": round(before / MB)}
        peak = _proc_status_kb(proc.pid, "VmHWM") * 1024
        time.sleep(2)
        after = _proc_status_kb(proc.pid, "VmRSS") * 1024
        return {"tree": str(tree), "size_mb": size_mb, "status": status, "seconds": round(seconds, 2),
                "before_rss_mb": round(before / MB), "peak_rss_mb": round(peak / MB), "after_rss_mb": round(after / MB),
                "peak_over_before_mb": round((peak - before) / MB), "kept_mb": round((after - before) / MB)}
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", required=True, help="comma-separated code trees to compare")
    parser.add_argument("--sizes", default="20,50", help="text sizes in MB")
    parser.add_argument("--kill-above-gb", type=float, default=8.0)
    parser.add_argument("--max-predict-body-mb", type=int, default=0,
                        help="set the new code's predict body cap (0: its default); old code does not know it")
    args = parser.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    for size in [int(s) for s in args.sizes.split(",")]:
        for tree in [Path(t) for t in args.trees.split(",")]:
            row = measure(tree, size, int(args.kill_above_gb * 1024 * MB), args.max_predict_body_mb)
            print(json.dumps({**row, "max_predict_body_mb": args.max_predict_body_mb or "default"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
