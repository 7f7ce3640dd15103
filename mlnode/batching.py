"""Deployed models and their bounded, cross-request batching queues.

One ``ModelWorker`` per deployed model. Predict requests for that model wait in one bounded FIFO queue; a full queue
answers 429 at once. A batcher takes requests from the head of the queue while they share inference parameters, fit
``batch_max_size`` texts and the model's token budget (after truncation), and hands the batch to a worker thread; up
to ``concurrency`` batches per model run at once (one at a time while no other model has work, see below), and
requests arriving while a batch runs are merged into the next one. A batch reaches the runtime as calls of texts of
similar length (``plan_chunks``), so short texts are not padded to a long neighbour. The token budget (padded tokens
a call) is ``batch_token_budget``, lowered for models whose per-token output is as wide as the vocabulary
(``Runtime.token_output_size``: SPARSE_ENCODING logits) to what ``batch_memory_budget`` bytes hold, so one call
never allocates more than that for them. Requests whose client has left are dropped before they reach the runtime.
Token counting and inference run in thread pools, never on the event loop. Each text is tokenized once, when its
request is admitted: the queue carries the encodings, which give the token counts batches are packed by and which
the runtime runs.

Threads per call adapt to the work waiting (``CallLoad``, one per node, over all models). While only one model has
work, its batches run one at a time (requests arriving meanwhile merge into the next batch) and a batch runs as
calls one after another, each on every usable core (the thread plan's ``alone`` count): one 32-text call on two
cores beats two 16-text calls on one core each. While other models' calls run or their requests wait, a model's
batches and the calls of a batch run side by side on its inference threads (up to ``concurrency``), each with its
share of the cores (``shared``: cores / worker_threads), so calls never ask for more threads than the cores. The
count is chosen per call when it starts (``call_threads_for``); a call already running keeps its threads.

One model cannot stall the others: each model runs its calls on ``worker_threads`` threads of its own
(``ModelThreads``); models busy at the same time share the cores through the OS scheduler instead of queueing for
shared threads, so a model whose forward never returns holds only its own threads. A runtime call that does not
return within ``call_timeout`` seconds fails its requests with 408; its thread is abandoned (a thread cannot be
stopped: it keeps its core until it returns or the process exits), the model gets fresh threads, and once
``parallelism`` calls of a model are left behind the model refuses predicts at once. Undeploy waits at most a short
grace for running calls, then leaves them behind, so it returns even when a forward hangs."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tokenizers import Encoding

from mlnode.metrics import Metrics
from mlnode.runtimes import PredictInputError, Runtime
from mlnode.runtimes.backends import call_threads
from opensearch_contract.errors import IllegalArgument, InternalError, OpenSearchError, TooManyRequests

log = logging.getLogger(__name__)

FLOAT_BYTES = 4
UNDEPLOY_GRACE_SECONDS = 5.0  # undeploy waits this long (at most the call timeout) for running calls, then leaves them


# A runtime call pads every text to the call's longest. Texts join a call while its padding stays within
# PAD_SLACK_TOKENS or PAD_SLACK_RATIO of its real tokens, whichever is larger: on CPU inference cost grows with the
# padded tokens while a call's fixed cost is worth a few dozen tokens (MiniLM: ~0 with onnxruntime, ~20 with
# TorchScript).
PAD_SLACK_TOKENS = 32
PAD_SLACK_RATIO = 0.25


def plan_chunks(tokens: Sequence[int], max_size: int, token_budget: int, min_chunks: int = 1) -> list[list[int]]:
    """Indices of ``tokens`` grouped into runtime calls: sorted by length, at most ``max_size`` texts and
    ``token_budget`` padded tokens (texts x longest) a call, padding bounded as above. A text longer than the budget
    runs alone. With ``min_chunks`` > 1 the largest calls are halved until there are that many (or every call holds
    one text), so a big request that runs beside other work can keep every inference thread busy: such calls run
    with ``cores // worker_threads`` intra-op threads each, and a lone call would leave the other cores idle."""
    chunks: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in sorted(range(len(tokens)), key=tokens.__getitem__):
        n = tokens[i]  # the longest in ``current`` once added (ascending order)
        padded = (len(current) + 1) * n
        slack = max(PAD_SLACK_TOKENS, PAD_SLACK_RATIO * (real + n))
        if current and (len(current) >= max_size or padded > token_budget or padded - (real + n) > slack):
            chunks.append(current)
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        chunks.append(current)
    while len(chunks) < min_chunks:
        largest = max(range(len(chunks)), key=lambda c: len(chunks[c]))
        chunk = chunks[largest]
        if len(chunk) < 2:
            break
        half = (len(chunk) + 1) // 2  # sorted by length: each half keeps texts of similar lengths
        chunks[largest : largest + 1] = [chunk[:half], chunk[half:]]
    return chunks


def call_threads_for(alone: int, shared: int, others: int) -> int:
    """Intra-op threads for a runtime call that starts while ``others`` calls are running or ready to run (any
    model's; requests waiting in a queue count): every core it may use when it is alone, its share otherwise, so
    calls side by side never ask for more threads than the cores (2 cores: one call x 2 threads or 2 x 1)."""
    return max(1, alone) if others <= 0 else max(1, shared)


class CallLoad:
    """What runs or waits on this node's inference threads, over all deployed models: calls running (started and not
    returned, including calls left behind by a timeout: they hold their cores) and requests waiting in the models'
    queues. ``running`` drops from the inference threads, hence the lock."""

    def __init__(self, alone: int = 1, shared: int = 1) -> None:
        self.alone = max(1, alone)
        self.shared = max(1, shared)
        self._lock = threading.Lock()
        self._running: collections.Counter[object] = collections.Counter()  # calls running, by model (worker)
        self._workers: list[Any] = []  # ModelWorker, or anything with a ``queue_size``

    @property
    def adapts(self) -> bool:
        """Whether a lone call gets more threads than calls side by side (not when one count is fixed for all: then
        a model's batches and a batch's calls always run side by side, one per inference thread)."""
        return self.alone > self.shared

    @property
    def running(self) -> int:
        with self._lock:  # inference threads remove entries
            return sum(self._running.values())

    def others(self, worker: object = None) -> int:
        """A new call's competition for the cores: every call running (``worker``'s own included: a sibling call of
        its batch, or one left behind by a timeout) plus the requests waiting in the other models' queues
        (``worker``'s own wait for its running batch: see ``busy_besides``)."""
        waiting = sum(other.queue_size for other in self._workers if other is not worker)
        return self.running + waiting

    def busy_besides(self, worker: object) -> int:
        """Calls running and requests waiting of the models other than ``worker``."""
        with self._lock:
            running = sum(n for owner, n in self._running.items() if owner is not worker)
        return running + sum(other.queue_size for other in self._workers if other is not worker)

    def attach(self, worker: object) -> None:
        self._workers.append(worker)

    def detach(self, worker: object) -> None:
        if worker in self._workers:
            self._workers.remove(worker)

    def started(self, worker: object = None) -> None:
        with self._lock:
            self._running[worker] += 1

    def finished(self, worker: object = None) -> None:
        with self._lock:
            self._running[worker] -= 1
            if self._running[worker] <= 0:
                del self._running[worker]


def model_token_budget(runtime: Runtime, token_budget: int, memory_budget: int) -> int:
    """Most tokens in one batch of ``runtime``: ``token_budget``, or fewer when each token makes the model allocate a
    vocab-sized float32 row (``token_output_size``), so those rows stay within ``memory_budget`` bytes. A single
    text longer than the budget still runs (alone)."""
    width = int(runtime.token_output_size or 0)
    if width <= 0 or memory_budget <= 0:
        return max(1, token_budget)
    return max(1, min(token_budget, memory_budget // (width * FLOAT_BYTES)))


def _client_left() -> OpenSearchError:
    return OpenSearchError("The client closed the connection", status=499, error_type="client_closed_exception")


def _not_deployed() -> OpenSearchError:
    return OpenSearchError(
        "Model not ready yet. Please deploy the model first.", status=400, error_type="illegal_argument_exception"
    )


def _timed_out(model_id: str, seconds: float) -> OpenSearchError:
    return OpenSearchError(
        f"Predict of model [{model_id}] timed out: an inference call did not return within [{seconds:g}s] "
        f"(setting neuralpipe.predict_timeout_seconds)",
        status=408, error_type="timeout_exception",
    )


class ModelThreads(concurrent.futures.Executor):
    """Up to ``max_workers`` threads for one model's runtime calls, started on demand. The threads are daemons and,
    unlike ``ThreadPoolExecutor``'s, not joined at interpreter exit, so a call that never returns can be abandoned
    (``shutdown(wait=False)``) without keeping the process alive."""

    def __init__(self, max_workers: int, name: str) -> None:
        self._max_workers = max(1, max_workers)
        self._name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            future: concurrent.futures.Future = concurrent.futures.Future()
            self._queue.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # reaches the caller through its future
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                    del result
            del future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            for _ in self._threads:
                self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


def _run_with_threads(threads: int, fn: Callable, *args: Any) -> Any:
    with call_threads(threads):
        return fn(*args)


class _Stopped(Exception):
    """A running batch stopped between runtime calls (``reason`` labels the failure metric)."""

    def __init__(self, error: OpenSearchError, reason: str) -> None:
        super().__init__(error.reason)
        self.error = error
        self.reason = reason


@dataclass(frozen=True)
class QueueLimits:
    """The queue settings every model's worker shares (from ``MLSettings``, see mlnode/configs/mlnode.yaml)."""

    batch_max_size: int
    token_budget: int
    memory_budget: int
    capacity: int
    concurrency: int
    stats_window: int
    call_timeout: float = 60.0  # seconds one runtime call may take (settings: predict_timeout_seconds)


@dataclass
class InferOutcome:
    results: list[dict]
    truncated: list[int]  # indices (into the request's texts) of texts longer than the model's max length
    max_length: int


@dataclass
class _Item:
    encodings: list[Encoding] | None
    body: dict | None
    parameters: dict | None
    params_key: str
    tokens: list[int]
    future: asyncio.Future
    alive: Callable[[], bool]
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def batchable(self) -> bool:
        return self.encodings is not None


@dataclass
class LatencyStats:
    """ML Commons' profile stats over the last ``window`` observations, in milliseconds."""

    window: int = 100
    count: int = 0
    values: collections.deque = field(default_factory=collections.deque)

    def add(self, millis: float) -> None:
        self.count += 1
        if self.window <= 0:  # ML Commons: monitoring_request_count 0 clears what is monitored
            self.values.clear()
            return
        if self.values.maxlen != self.window:
            self.values = collections.deque(self.values, maxlen=self.window)
        self.values.append(millis)

    def to_dict(self) -> dict[str, float]:
        if not self.values:
            return {"count": self.count}
        data = sorted(self.values)

        def pct(p: float) -> float:
            return data[min(len(data) - 1, max(0, math.ceil(p / 100.0 * len(data)) - 1))]  # nearest rank

        return {
            "count": self.count,
            "max": data[-1],
            "min": data[0],
            "average": sum(data) / len(data),
            "p50": pct(50),
            "p90": pct(90),
            "p99": pct(99),
        }


class ModelWorker:
    def __init__(
        self,
        model_id: str,
        runtime: Runtime,
        *,
        tokenize_executor: ThreadPoolExecutor,
        metrics: Metrics,
        limits: QueueLimits,
        load: CallLoad | None = None,
    ) -> None:
        self.model_id = model_id
        self.runtime = runtime
        self.parallelism = max(1, limits.concurrency)  # inference threads one batch may use at once
        self._executor = ModelThreads(self.parallelism, f"mlnode-infer-{model_id}")
        self._tokenize_executor = tokenize_executor
        self.call_timeout = limits.call_timeout
        # whether the model's tokenizer truncates (else a longer text is a 400); stand-in runtimes of the queue tests
        # (tests/fixtures) predate the attribute and truncate
        self.truncates = bool(getattr(runtime, "truncates", True))
        self.stuck_calls = 0  # calls left behind (timed out, or cancelled while running) that have not returned
        self.on_timeout: Callable[[str], None] | None = None  # told the model id when a call times out
        self._metrics = metrics
        self._load = load if load is not None else CallLoad()
        self._load.attach(self)
        self.calls_by_threads: collections.Counter[int] = collections.Counter()  # runtime calls by intra-op threads
        self.batch_max_size = max(1, limits.batch_max_size)
        self.token_budget = model_token_budget(runtime, limits.token_budget, limits.memory_budget)
        self.capacity = max(0, limits.capacity)
        self._queue: collections.deque[_Item] = collections.deque()
        self._waiting = 0  # admitted requests not yet taken into a batch (tokenizing or queued)
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(max(1, limits.concurrency))
        self._runs: set[asyncio.Task] = set()
        self._run_done = asyncio.Event()  # set when a batch finishes
        self._batcher: asyncio.Task | None = None
        self._closing = False
        self.predict_stats = LatencyStats(window=limits.stats_window)
        self.inference_stats = LatencyStats(window=limits.stats_window)
        self.batches = 0
        self.batched_texts = 0
        self.max_batch_size = 0
        self.max_batch_requests = 0

    def start(self) -> None:
        self._batcher = asyncio.create_task(self._batch_loop(), name=f"batcher-{self.model_id}")

    @property
    def queue_size(self) -> int:
        return self._waiting

    # ---- public entry points ----------------------------------------------------------------------------------

    async def infer(self, texts: list[str], parameters: dict | None, alive: Callable[[], bool]) -> InferOutcome:
        """Run a batchable function (TEXT_EMBEDDING, SPARSE_*) over ``texts``; merged with other requests."""
        self._admit()
        loop = asyncio.get_running_loop()
        try:
            started = time.perf_counter()
            try:
                encodings = await loop.run_in_executor(
                    self._tokenize_executor, self.runtime.tokenize, texts, parameters
                )
            except Exception:
                log.exception("tokenization failed for model %s", self.model_id)
                self._metrics.failures.labels(self.model_id, "tokenization_error").inc()
                raise InternalError("Failed to tokenize the input") from None
            self._metrics.tokenization_seconds.labels(self.model_id).observe(time.perf_counter() - started)
            truncated = [i for i, encoding in enumerate(encodings) if encoding.overflowing]
            if truncated and not self.truncates:
                self._metrics.failures.labels(self.model_id, "bad_request").inc()
                raise IllegalArgument(
                    f"[text_docs][{truncated[0]}] is longer than the [{self.runtime.max_length}] tokens model "
                    f"[{self.model_id}] takes; its tokenizer does not truncate (no truncation in its tokenizer.json "
                    f"and no model_config.model_max_length), so shorten the text"
                )
        except BaseException:
            self._release()
            raise
        if truncated:
            self._metrics.truncated.labels(self.model_id).inc(len(truncated))
        item = _Item(
            encodings=list(encodings),
            body=None,
            parameters=parameters,
            params_key=json.dumps(parameters or {}, sort_keys=True, default=str),
            tokens=[len(encoding.ids) for encoding in encodings],
            future=loop.create_future(),
            alive=alive,
        )
        results = await self._enqueue(item)
        return InferOutcome(results=results, truncated=truncated, max_length=int(self.runtime.max_length))

    async def predict(self, body: dict, alive: Callable[[], bool]) -> list[dict]:
        """Run a non-batchable function (TEXT_SIMILARITY, QUESTION_ANSWERING) through the same bounded queue."""
        self._admit()
        item = _Item(
            encodings=None,
            body=body,
            parameters=None,
            params_key="",
            tokens=[],
            future=asyncio.get_running_loop().create_future(),
            alive=alive,
        )
        return await self._enqueue(item)

    async def close(self) -> None:
        """Stop taking batches, give running ones a short grace, then leave them behind (their requests get the
        not-deployed error) so this returns even when a forward never does."""
        self._closing = True  # running batches stop before their next runtime call
        if self._batcher is not None:
            self._batcher.cancel()
            await asyncio.gather(self._batcher, return_exceptions=True)
        grace = min(self.call_timeout, UNDEPLOY_GRACE_SECONDS)
        if self._runs:
            _, pending = await asyncio.wait(set(self._runs), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(_not_deployed())
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._load.detach(self)
        try:  # off the model's threads, which may all be stuck
            await asyncio.wait_for(asyncio.to_thread(self.runtime.close), grace)
        except TimeoutError:
            log.error("closing the runtime of model %s did not finish within %.1fs; left behind", self.model_id, grace)

    # ---- queue internals ----------------------------------------------------------------------------------------

    def _admit(self) -> None:
        if self.stuck_calls >= self.parallelism:
            self._metrics.failures.labels(self.model_id, "stuck").inc()
            raise OpenSearchError(
                f"Model [{self.model_id}] has [{self.stuck_calls}] inference calls that did not return within "
                f"[{self.call_timeout:g}s]; it takes no more predicts until it is undeployed and deployed again",
                status=408, error_type="timeout_exception",
            )
        if self._waiting >= self.capacity:
            self._metrics.failures.labels(self.model_id, "queue_full").inc()
            raise TooManyRequests(
                f"Predict queue of model [{self.model_id}] is full ({self.capacity} requests waiting); retry later"
            )
        self._waiting += 1
        self._metrics.queue_size.labels(self.model_id).set(self._waiting)

    def _release(self, n: int = 1) -> None:
        self._waiting -= n
        self._metrics.queue_size.labels(self.model_id).set(self._waiting)

    async def _enqueue(self, item: _Item) -> list[dict]:
        self._queue.append(item)
        self._wakeup.set()
        try:
            return await item.future
        except asyncio.CancelledError:
            item.future.cancel()  # the batcher drops it if it is still queued
            raise

    async def _batch_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            await self._slots.acquire()
            # Only this model has work: its batches run one at a time, each on every core (requests arriving
            # meanwhile merge into the next batch); while other models are busy they run side by side.
            while (self._load.adapts and any(not run.done() for run in self._runs)
                   and self._load.busy_besides(self) == 0):
                self._run_done.clear()
                await self._run_done.wait()
            batch = self._take_batch()
            if not self._queue:
                self._wakeup.clear()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run(batch))
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)

    def _take_batch(self) -> list[_Item]:
        batch: list[_Item] = []
        n_texts = 0
        n_tokens = 0
        while self._queue:
            head = self._queue[0]
            if head.future.done() or not head.alive():
                self._queue.popleft()
                self._release()
                self._metrics.dropped.labels(self.model_id).inc()
                if not head.future.done():
                    head.future.set_exception(_client_left())
                continue
            if batch:
                if not head.batchable or head.params_key != batch[0].params_key:
                    break
                if (
                    n_texts + len(head.encodings or []) > self.batch_max_size
                    or n_tokens + sum(head.tokens) > self.token_budget
                ):
                    break
            self._queue.popleft()
            self._release()
            batch.append(head)
            if not head.batchable:
                break
            n_texts += len(head.encodings or [])
            n_tokens += sum(head.tokens)
        return batch

    async def _call(self, fn: Callable, *args: Any, pending: int = 0) -> Any:
        """One runtime call on the model's threads, within ``call_timeout``, with the intra-op threads
        ``call_threads_for`` gives it now (``pending``: calls of the same batch about to run beside it)."""
        executor = self._executor
        load = self._load
        threads = call_threads_for(load.alone, load.shared, load.others(self) + pending)
        load.started(self)
        try:
            future = executor.submit(_run_with_threads, threads, fn, *args)
        except BaseException:
            load.finished(self)
            raise
        future.add_done_callback(lambda _: load.finished(self))
        self.calls_by_threads[threads] += 1
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.call_timeout)
        except TimeoutError:
            log.error("model %s: an inference call did not return within %.1fs; its thread is abandoned",
                      self.model_id, self.call_timeout)
            self._abandon(executor, future)
            if self.on_timeout is not None:
                self.on_timeout(self.model_id)
            raise _Stopped(_timed_out(self.model_id, self.call_timeout), "timeout") from None
        except asyncio.CancelledError:  # a sibling call failed, or undeploy: a running call is left behind
            if not future.done():
                self._abandon(executor, future)
            raise

    def _abandon(self, executor: ModelThreads, future: concurrent.futures.Future) -> None:
        """A call is left to its thread (counted until it returns, if ever); the model gets fresh threads."""
        self.stuck_calls += 1
        self._metrics.stuck_calls.labels(self.model_id).set(self.stuck_calls)
        loop = asyncio.get_running_loop()

        def returned(_: concurrent.futures.Future) -> None:  # on the abandoned thread, if the call ever returns
            try:
                loop.call_soon_threadsafe(self._unstick)
            except RuntimeError:  # the loop is closed: nothing left to count for
                pass

        future.add_done_callback(returned)
        if executor is self._executor:
            self._executor = ModelThreads(self.parallelism, f"mlnode-infer-{self.model_id}")
            executor.shutdown(wait=False)

    def _unstick(self) -> None:
        self.stuck_calls -= 1
        self._metrics.stuck_calls.labels(self.model_id).set(self.stuck_calls)

    async def _run(self, batch: list[_Item]) -> None:
        now = time.perf_counter()
        for item in batch:
            self._metrics.queue_seconds.labels(self.model_id).observe(now - item.enqueued)
        try:
            if not batch[0].batchable:
                item = batch[0]
                started = time.perf_counter()
                result = await self._call(self.runtime.predict, item.body or {})
                self._record_batch(1, 1, 0, time.perf_counter() - started)
                if not item.future.done():
                    item.future.set_result(result)
                return
            encodings = [e for item in batch for e in item.encodings or []]
            tokens = [n for item in batch for n in item.tokens]
            results = await self._infer_chunked(encodings, tokens, batch[0].parameters, batch)
            offset = 0
            for item in batch:
                n = len(item.encodings or [])
                if not item.future.done():
                    item.future.set_result(results[offset : offset + n])
                offset += n
        except _Stopped as stop:
            self._fail(batch, stop.error, stop.reason)
        except asyncio.CancelledError:  # undeployed while a call ran past the grace: the call is left behind
            self._fail(batch, _not_deployed(), "undeployed")
            raise
        except OpenSearchError as exc:
            self._fail(batch, exc, "runtime_error")
        except PredictInputError as exc:  # the runtime's "your input is wrong" error
            self._fail(
                batch, OpenSearchError(str(exc), status=400, error_type="illegal_argument_exception"), "bad_request"
            )
        except Exception:
            log.exception("inference failed for model %s", self.model_id)
            self._fail(batch, InternalError("Failed to run inference"), "runtime_error")
        finally:
            self._slots.release()
            self._run_done.set()

    async def _infer_chunked(
        self, encodings: list[Encoding], tokens: list[int], parameters: dict | None, batch: list[_Item]
    ) -> list[dict]:
        """Run a batch as the runtime calls ``plan_chunks`` cuts it into (texts of similar lengths together). Between
        calls it stops when the model is being undeployed (or the node stops) or every client of the batch has left."""
        # Nothing else running or waiting: the calls run one after another, each on every core. Otherwise they run
        # side by side on the inference threads (at most ``parallelism`` at once), each on its share of the cores.
        alone = self._load.adapts and self._load.others(self) == 0
        width = 1 if alone else self.parallelism
        chunks = plan_chunks(tokens, self.batch_max_size, self.token_budget, min_chunks=width)
        n_requests = len(batch)
        out: list[dict | None] = [None] * len(encodings)
        lanes = asyncio.Semaphore(width)
        not_started = len(chunks)

        async def run_chunk(chunk: list[int]) -> None:
            nonlocal not_started
            async with lanes:
                if self._closing:
                    raise _Stopped(_not_deployed(), "undeployed")
                if not any(item.alive() and not item.future.done() for item in batch):
                    raise _Stopped(_client_left(), "client_closed")
                started = time.perf_counter()
                chunk_encodings = [encodings[i] for i in chunk]
                not_started -= 1
                beside = not_started if width > 1 else 0  # this batch's calls about to start next to this one
                results = await self._call(self.runtime.forward, chunk_encodings, parameters, pending=beside)
            if len(results) != len(chunk):
                raise InternalError("Runtime returned a wrong number of results")
            self._record_batch(len(chunk), n_requests, sum(tokens[i] for i in chunk), time.perf_counter() - started)
            for i, result in zip(chunk, results):
                out[i] = result

        tasks = [asyncio.ensure_future(run_chunk(chunk)) for chunk in chunks]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:  # one call failed or the batch stopped: the calls not started yet never start
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return [r for r in out if r is not None]

    def _record_batch(self, size: int, n_requests: int, n_tokens: int, seconds: float) -> None:
        self.batches += 1
        self.batched_texts += size
        self.max_batch_size = max(self.max_batch_size, size)
        self.max_batch_requests = max(self.max_batch_requests, n_requests)
        self.inference_stats.add(seconds * 1000.0)
        m = self._metrics
        m.batch_size.labels(self.model_id).observe(size)
        m.batch_requests.labels(self.model_id).observe(n_requests)
        m.batch_tokens.labels(self.model_id).observe(n_tokens)
        m.inference_seconds.labels(self.model_id).observe(seconds)

    def _fail(self, batch: Sequence[_Item], exc: OpenSearchError, reason: str) -> None:
        for item in batch:
            self._metrics.failures.labels(self.model_id, reason).inc()
            if not item.future.done():
                item.future.set_exception(exc)

    def batch_stats(self) -> dict[str, Any]:
        return {
            "batch_count": self.batches,
            "text_count": self.batched_texts,
            "average_batch_size": (self.batched_texts / self.batches) if self.batches else 0.0,
            "max_batch_size": self.max_batch_size,
            "max_requests_per_batch": self.max_batch_requests,
            "token_budget": self.token_budget,
            "queue_size": self.queue_size,
            "stuck_calls": self.stuck_calls,
            # runtime calls by the intra-op threads they ran with (one call alone: every core; side by side: a share)
            "calls_by_intra_op_threads": {str(k): v for k, v in sorted(self.calls_by_threads.items())},
        }


class Deployments:
    """The models deployed on this node, each with its worker and inference threads; tokenization threads are
    shared."""

    def __init__(self, *, metrics: Metrics, worker_threads: int, limits: QueueLimits,
                 load: CallLoad | None = None) -> None:
        self.metrics = metrics
        self.load = load if load is not None else CallLoad()  # shared by every model: calls compete for the cores
        # tokenization has its own threads so requests are counted and queued while a batch runs
        self.tokenize_executor = ThreadPoolExecutor(
            max_workers=max(1, worker_threads), thread_name_prefix="mlnode-tokenize"
        )
        self.limits = limits
        self.on_timeout: Callable[[str], None] | None = None  # given to every worker
        self._workers: dict[str, ModelWorker] = {}

    def get(self, model_id: str) -> ModelWorker | None:
        return self._workers.get(model_id)

    def ids(self) -> list[str]:
        return list(self._workers)

    def __len__(self) -> int:
        return len(self._workers)

    def add(self, model_id: str, runtime: Runtime) -> ModelWorker:
        worker = ModelWorker(
            model_id,
            runtime,
            tokenize_executor=self.tokenize_executor,
            metrics=self.metrics,
            limits=self.limits,
            load=self.load,
        )
        worker.on_timeout = self.on_timeout
        worker.start()
        self._workers[model_id] = worker
        self.metrics.deployed.set(len(self._workers))
        return worker

    async def remove(self, model_id: str) -> bool:
        worker = self._workers.pop(model_id, None)
        self.metrics.deployed.set(len(self._workers))
        if worker is None:
            return False
        await worker.close()
        return True

    async def close(self) -> None:
        """Undeploy every model at once, so stopping takes one undeploy grace however many models hang."""
        results = await asyncio.gather(*(self.remove(model_id) for model_id in list(self._workers)),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("closing a model failed: %r", result)
        self.tokenize_executor.shutdown(wait=False, cancel_futures=True)
