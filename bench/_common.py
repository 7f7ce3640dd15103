"""Shared pieces of the benchmark scripts: texts, packaged models, an ML node in its own process, timing.

Every script measures its two sides in the same run, alternating them round by round on the same inputs,
and reports the median of the per-round ratios: the machine is shared, so absolute times mean little,
ratios measured side by side do.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "data" / "scifact"
CACHE = Path(os.environ.get("NEURALPIPE_BENCH_CACHE", Path(tempfile.gettempdir()) / "neuralpipe-bench"))


# ------------------------------------------------------------------------------------------------ texts


def passages(n: int | None = None, corpus: Path | None = None) -> list[str]:
    """BEIR passages (``title + " " + text``) of the first ``n`` documents of a corpus.jsonl (SciFact's by default)."""
    from neuralpipe.eval.metrics import beir_passage

    path = corpus or SCIFACT / "corpus.jsonl"
    out: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(beir_passage(json.loads(line)))
                if n is not None and len(out) >= n:
                    break
    return out


def queries(n: int | None = None, path: Path | None = None) -> list[str]:
    out = []
    with open(path or SCIFACT / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line)["text"])
                if n is not None and len(out) >= n:
                    break
    return out


def batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


# ----------------------------------------------------------------------------------------------- models


def package(kind: str, model_format: str, *, idf_corpus: Path | None = None) -> Any:
    """Package an offline model once (cached under CACHE): kind = dense | sparse | tokenizer."""
    from mlnode import offline
    from mlnode.packaging import package_model
    from mlnode.packaging.core import packaging_code_hash

    # keyed by the packaging code too: a zip packaged by older code (another graph) is never reused
    out = CACHE / "models" / f"{kind}-{model_format.lower()}-{packaging_code_hash()[:12]}"
    config = out / "config.json"
    if config.exists():
        from mlnode.packaging import PackagedModel

        cfg = json.loads(config.read_text())
        zips = list(out.glob("*.zip"))
        if zips:
            return PackagedModel(zip_path=zips[0], config=cfg)
    out.mkdir(parents=True, exist_ok=True)
    if kind == "dense":
        return package_model(offline.minilm_dir(), out, function_name="TEXT_EMBEDDING", model_format=model_format,
                             name="all-MiniLM-L6-v2", version="1.0.0")
    if kind == "sparse":
        return package_model(offline.splade_dir(), out, function_name="SPARSE_ENCODING", model_format=model_format,
                             name="splade-tiny", version="1.0.0")
    if kind == "tokenizer":
        if idf_corpus is None:
            idf_corpus = CACHE / "idf-corpus.txt"
            if not idf_corpus.exists():
                idf_corpus.write_text("\n".join(p.replace("\n", " ") for p in passages(2000)) + "\n")
        return package_model(offline.splade_dir(), out, function_name="SPARSE_TOKENIZE", model_format=model_format,
                             name="splade-tiny-tokenizer", version="1.0.0", idf_corpus=idf_corpus)
    raise ValueError(f"unknown model kind [{kind}]")


def unpack(packaged: Any) -> Path:
    """The zip unpacked next to it (what the ML node's store does before ``load_runtime``)."""
    target = packaged.zip_path.parent / "unpacked"
    if not target.exists():
        tmp = Path(tempfile.mkdtemp(dir=packaged.zip_path.parent))
        with zipfile.ZipFile(packaged.zip_path) as zf:
            zf.extractall(tmp)
        tmp.rename(target)
    return target


def in_process_runtime(packaged: Any) -> Any:
    """``mlnode.runtimes.load_runtime`` on the unpacked zip: the same runtime the ML node runs, in this process."""
    from mlnode.runtimes import load_runtime

    return load_runtime(unpack(packaged), dict(packaged.config))


# ------------------------------------------------------------------------------------------------ HTTP


def http_json(method: str, url: str, body: Any = None, *, timeout: float = 600.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            return exc.code, json.loads(payload)
        except ValueError:
            return exc.code, payload.decode(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, *, timeout: float = 180.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


@dataclass
class MLNodeServer:
    """``neuralpipe serve --roles ml`` (or ``ml,data``) in its own process on loopback."""

    roles: str = "ml"
    neuralpipe_settings: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    data_dir: Path | None = None
    proc: subprocess.Popen | None = None
    url: str = ""
    log_path: Path | None = None

    def __enter__(self) -> MLNodeServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        import yaml

        work = Path(tempfile.mkdtemp(prefix="np-bench-node-", dir=CACHE))
        self.data_dir = self.data_dir or work / "data"
        config = work / "mlnode.yaml"
        config.write_text(yaml.safe_dump({
            "plugins.ml_commons": {"allow_registering_model_via_url": True,
                                   "allow_registering_model_via_local_file": True,
                                   "native_memory_threshold": 100},
            "neuralpipe": {"cache_dir": str(CACHE / "catalog-cache"), "file_url_folders": [str(CACHE)],
                           **self.neuralpipe_settings},
        }))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = work / "server.log"
        cmd = [sys.executable, "-m", "neuralpipe.cli", "serve", "--roles", self.roles, "--host", "127.0.0.1",
               "--port", str(port), "--data-dir", str(self.data_dir), "--config", str(config)]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env}, cwd=str(REPO))
        wait_http(self.url + "/", proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    # ---- ML Commons REST ---------------------------------------------------------------------------------
    def wait_task(self, task_id: str, *, timeout: float = 900.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, task = http_json("GET", f"{self.url}/_plugins/_ml/tasks/{task_id}")
            if status == 200 and task.get("state") in ("COMPLETED", "FAILED", "COMPLETED_WITH_ERROR", "CANCELLED"):
                if task["state"] != "COMPLETED":
                    raise RuntimeError(f"task {task_id}: {task}")
                return task
            time.sleep(0.3)
        raise TimeoutError(f"task {task_id} not done within {timeout:.0f}s")

    def register_and_deploy(self, packaged: Any, name: str | None = None) -> str:
        """Register a packaged zip by file:// URL (ML Commons' custom-model flow) and deploy it;
        returns the model id."""
        body = dict(packaged.config)
        body["url"] = packaged.zip_path.resolve().as_uri()
        if name:
            body["name"] = name
        status, resp = http_json("POST", f"{self.url}/_plugins/_ml/models/_register", body)
        if status != 200:
            raise RuntimeError(f"register {body.get('name')}: {status} {resp}")
        model_id = self.wait_task(resp["task_id"])["model_id"] if resp.get("task_id") else resp["model_id"]
        status, resp = http_json("POST", f"{self.url}/_plugins/_ml/models/{model_id}/_deploy")
        if status != 200:
            raise RuntimeError(f"deploy {model_id}: {status} {resp}")
        self.wait_task(resp["task_id"])
        return model_id

    def peak_rss_bytes(self) -> int:
        """Peak resident set size of the server process (VmHWM)."""
        return _proc_status_kb(self.proc.pid, "VmHWM") * 1024 if self.proc else 0

    def rss_bytes(self) -> int:
        return _proc_status_kb(self.proc.pid, "VmRSS") * 1024 if self.proc else 0


def _proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def predict_path(algorithm: str, model_id: str) -> str:
    return f"/_plugins/_ml/_predict/{algorithm}/{model_id}"


# ------------------------------------------------------------------------------------------------ timing


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def report(title: str, rows: list[tuple[str, Any]]) -> None:
    print(f"== {title}")
    print(f"   machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for label, value in rows:
        print(f"   {label}: {value}")


# ------------------------------------------------------------------------------------------- load driver


def drive(url: str, bodies: list[Any], *, concurrency: int, timeout: float = 600.0,
          method: str = "POST") -> dict[str, Any]:
    """POST every body to ``url`` with ``concurrency`` requests in flight (aiohttp, keep-alive); bounded by the
    number of bodies. Returns elapsed seconds, per-request latencies (ms) and the non-200 answers."""
    import asyncio

    import aiohttp

    async def run() -> dict[str, Any]:
        latencies: list[float] = []
        errors: list[str] = []
        queue: asyncio.Queue = asyncio.Queue()
        # bodies are encoded before the clock starts: the client's own JSON encoding (1.1 ms for a 384-float knn
        # body here) is no cost of the server's, and the HTTP ceiling it is compared with has none
        for b in bodies:
            queue.put_nowait(None if method == "GET" else json.dumps(b).encode())
        headers = {"Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:

            async def worker() -> None:
                while True:
                    try:
                        body = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    t0 = time.perf_counter()
                    async with session.request(method, url, data=body,
                                               headers=headers if body is not None else None) as resp:
                        payload = await resp.read()
                        if resp.status != 200:
                            errors.append(f"{resp.status}: {payload[:200]!r}")
                    latencies.append((time.perf_counter() - t0) * 1000)

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - start
        return {"elapsed": elapsed, "latencies_ms": latencies, "errors": errors}

    return asyncio.run(run())


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q)) if values else float("nan")
