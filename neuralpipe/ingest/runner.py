"""The ingest runner: input records -> ingest pipeline (batched, concurrent) -> streaming bulk.

Three stages connected by a bounded queue:

1. the reader takes ``batch_size`` records at a time (in a worker thread: file reads never block
   the event loop), dead-letters lines it cannot parse and skips offsets the checkpoint already has;
2. up to ``concurrency`` batches run through the ingest pipeline at once (each inference processor
   makes one predict call per batch); 429/5xx answers of the ML node are retried with backoff;
3. one consumer feeds opensearch-py's ``async_streaming_bulk(..., raise_on_error=False,
   max_retries=N)``, which retries 429s; whole-request 5xx and connection errors are retried with
   backoff by :class:`RetryingBulkClient`. Each acknowledged document marks its input offset in
   the checkpoint; each failed one goes to the dead-letter file with its reason.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import NotFoundError, TransportError
from opensearchpy.helpers import async_streaming_bulk

from neuralpipe.ingest.checkpoint import Checkpoint
from neuralpipe.ingest.deadletter import DeadLetter, Failure, is_retryable
from neuralpipe.ingest.progress import Progress
from neuralpipe.ingest.readers import Item, ParseFailure, Record
from opensearch_contract.errors import OpenSearchError
from processors.document import IngestDocument
from processors.pipeline import IngestPipeline

log = logging.getLogger(__name__)

_DONE = object()


@dataclass
class IngestOptions:
    index: str
    batch_size: int = 32
    concurrency: int = 4
    bulk_size: int = 200
    max_retries: int = 5
    initial_backoff: float = 1.0
    max_backoff: float = 30.0
    progress: bool = True


@dataclass
class IngestStats:
    read: int = 0
    skipped: int = 0
    indexed: int = 0
    failed: dict[str, int] = field(default_factory=lambda: {"parse": 0, "pipeline": 0, "bulk": 0})
    retried_429: int = 0
    retried_5xx: int = 0
    retried_ml: int = 0
    elapsed: float = 0.0
    aborted: str | None = None
    first_failures: list[Failure] = field(default_factory=list)

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    def to_json(self) -> dict[str, Any]:
        rate = self.indexed / self.elapsed if self.elapsed > 0 else 0.0
        return {"read": self.read, "skipped_already_done": self.skipped, "indexed": self.indexed,
                "failed": dict(self.failed), "failed_total": self.failed_total,
                "retried": {"bulk_429": self.retried_429, "bulk_5xx": self.retried_5xx, "ml": self.retried_ml},
                "elapsed_seconds": round(self.elapsed, 3), "docs_per_second": round(rate, 1),
                "aborted": self.aborted}


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): initial * 2**(attempt-1), capped."""
    return min(maximum, initial * 2 ** (attempt - 1))


@dataclass
class RetryingBulkClient:
    """Wraps an AsyncOpenSearch client for ``async_streaming_bulk``: retries a whole ``_bulk``
    request that failed with 5xx or a connection error, with exponential backoff, and counts the
    429 answers the helper itself retries. Everything else is delegated to the client."""

    client: Any
    stats: IngestStats
    max_retries: int = field(kw_only=True)
    initial_backoff: float = field(kw_only=True)
    max_backoff: float = field(kw_only=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    async def bulk(self, *args: Any, **kwargs: Any) -> Any:
        for attempt in itertools.count():
            try:
                resp = await self.client.bulk(*args, **kwargs)
            except TransportError as exc:
                status = exc.status_code
                transient = isinstance(exc, OSConnectionError) or (isinstance(status, int) and status >= 500)
                if isinstance(status, int) and status == 429:
                    self.stats.retried_429 += 1  # the helper retries it
                    raise
                if not transient or attempt >= self.max_retries:
                    raise
                self.stats.retried_5xx += 1
                delay = backoff_delay(attempt + 1, self.initial_backoff, self.max_backoff)
                log.info("bulk request failed (%s), retry %d in %.1fs", status, attempt + 1, delay)
                await asyncio.sleep(delay)
                continue
            if resp.get("errors"):
                self.stats.retried_429 += sum(
                    1 for it in resp.get("items", []) for v in it.values() if v.get("status") == 429)
            return resp
        raise AssertionError("unreachable")


Lookup = Callable[[str, list[str]], Awaitable[dict[str, dict[str, Any]]]]


def _take(it: Iterator[Item], n: int) -> list[Item]:
    return list(itertools.islice(it, n))


class IngestRunner:
    def __init__(self, client: Any, *, options: IngestOptions, checkpoint: Checkpoint,
                 dead_letter: DeadLetter, pipeline: IngestPipeline | None = None) -> None:
        self.client = client
        self.options = options
        self.checkpoint = checkpoint
        self.dead_letter = dead_letter
        self.pipeline = pipeline
        self.stats = IngestStats()
        self._pending: dict[str, deque[tuple[int, dict[str, Any]]]] = {}
        self._progress: Progress | None = None

    # ---- failures and acknowledgements -------------------------------------------------------
    def _fail(self, failure: Failure) -> None:
        failure.retryable = is_retryable(failure.status) if failure.status is not None else failure.retryable
        self.dead_letter.write(failure)
        self.stats.failed[failure.stage] = self.stats.failed.get(failure.stage, 0) + 1
        if len(self.stats.first_failures) < 10:
            self.stats.first_failures.append(failure)
        if not failure.retryable:
            self.checkpoint.mark(failure.line)  # permanent: a re-run would fail the same way
        if self._progress:
            if failure.stage == "bulk":
                self._progress.acknowledged(failed=1)
            else:
                self._progress.failed_early()

    def _ack(self, offset: int) -> None:
        self.stats.indexed += 1
        self.checkpoint.mark(offset)
        if self._progress:
            self._progress.acknowledged(ok=1)

    def _save(self, force: bool = False) -> None:
        self.dead_letter.flush()  # failures are on disk before the checkpoint names their offsets
        self.checkpoint.flush(min_interval=0.0 if force else 0.5)

    # ---- stage 1: read --------------------------------------------------------------------------
    async def _batches(self, items: Iterable[Item]) -> Any:
        it = iter(items)
        while True:
            chunk = await asyncio.to_thread(_take, it, self.options.batch_size)
            if not chunk:
                return
            records: list[Record] = []
            for item in chunk:
                self.stats.read += 1
                if self.checkpoint.is_done(item.offset):
                    self.stats.skipped += 1
                    continue
                if isinstance(item, ParseFailure):
                    self._fail(Failure(line=item.offset, stage="parse", reason=item.reason,
                                       error_type="parse_exception", status=400, raw=item.raw))
                    continue
                records.append(item)
            if records:
                yield records

    # ---- stage 2: pipeline ----------------------------------------------------------------------
    async def _lookup(self, index: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stored sources by id, for ``skip_existing``."""
        try:
            resp = await self.client.mget(index=index, body={"ids": ids})
        except NotFoundError:
            return {}
        return {d["_id"]: d.get("_source", {}) for d in resp.get("docs", []) if d.get("found")}

    async def _run_pipeline(self, pipeline: IngestPipeline, records: list[Record]
                            ) -> list[IngestDocument | OpenSearchError]:
        results: dict[int, IngestDocument | OpenSearchError] = {}  # every index gets its last attempt's result
        todo = list(range(len(records)))
        for attempt in range(self.options.max_retries + 1):
            if attempt:
                self.stats.retried_ml += len(todo)
                await asyncio.sleep(backoff_delay(attempt, self.options.initial_backoff, self.options.max_backoff))
            docs = [IngestDocument(self.options.index, records[i].id, copy.deepcopy(records[i].source))
                    for i in todo]
            out: list[IngestDocument | OpenSearchError]
            try:
                out = await pipeline.run(docs, lookup=self._lookup)
            except OpenSearchError as exc:
                out = [exc] * len(docs)
            except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                out = [OpenSearchError(f"ML node unreachable: {exc}", status=503,
                                       error_type="connection_exception")] * len(docs)
            retry = []
            for i, res in zip(todo, out, strict=False):
                if (isinstance(res, OpenSearchError) and is_retryable(res.status)
                        and attempt < self.options.max_retries):
                    retry.append(i)
                else:
                    results[i] = res
            if not retry:
                break
            todo = retry
        return [results[i] for i in range(len(records))]

    async def _process(self, records: list[Record], queue: asyncio.Queue) -> None:
        if self.pipeline is None:
            for r in records:
                await queue.put((r, r.source))
            if self._progress:
                self._progress.prepared(len(records))
            return
        results = await self._run_pipeline(self.pipeline, records)
        for record, res in zip(records, results, strict=False):
            if isinstance(res, OpenSearchError):
                self._fail(Failure(line=record.offset, stage="pipeline", reason=res.reason,
                                   error_type=res.error_type, status=res.status, id=record.id,
                                   document=record.source))
            else:
                await queue.put((record, res.source))
                if self._progress:
                    self._progress.prepared(1)

    async def _produce(self, items: Iterable[Item], queue: asyncio.Queue) -> None:
        sem = asyncio.Semaphore(self.options.concurrency)
        tasks: set[asyncio.Task] = set()
        crashed: list[BaseException] = []

        async def one(batch: list[Record]) -> None:
            try:
                await self._process(batch, queue)
            except Exception as exc:  # noqa: BLE001 - a bug, not a document's fault: stop the run (below)
                crashed.append(exc)
            finally:
                sem.release()

        try:
            async for batch in self._batches(items):
                await sem.acquire()
                if crashed:  # its documents were neither written nor dead-lettered: abort, a re-run retries them
                    raise crashed[0]
                task = asyncio.create_task(one(batch))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
            if crashed:
                raise crashed[0]
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            raise
        except BaseException:
            for t in tasks:
                t.cancel()
            await queue.put(_DONE)  # the consumer is alive: let it finish what was acknowledged
            raise
        await queue.put(_DONE)

    # ---- stage 3: bulk --------------------------------------------------------------------------
    async def _actions(self, queue: asyncio.Queue) -> Any:
        while True:
            entry = await queue.get()
            if entry is _DONE:
                return
            record, source = entry
            self._pending.setdefault(record.id, deque()).append((record.offset, record.source))
            yield {"_op_type": "index", "_index": self.options.index, "_id": record.id, "_source": source}

    def _result(self, ok: bool, info: dict[str, Any]) -> None:
        (_, item), = info.items()
        doc_id = str(item.get("_id"))
        waiting = self._pending.get(doc_id)
        if not waiting:
            log.warning("bulk answered for an id it was not sent: %s", doc_id)
            return
        offset, original = waiting.popleft()
        if not waiting:
            del self._pending[doc_id]
        if ok:
            self._ack(offset)
            return
        status = item.get("status")
        error = item.get("error")
        if isinstance(error, dict):
            etype, reason = error.get("type", "exception"), error.get("reason", str(error))
        else:
            etype, reason = "transport_error", str(error)
        self._fail(Failure(line=offset, stage="bulk", reason=reason, error_type=etype,
                           status=status if isinstance(status, int) else 503, id=doc_id, document=original))

    async def run(self, items: Iterable[Item], *, total: int | None = None) -> IngestStats:
        start = time.monotonic()
        self._progress = Progress(total, initial=self.checkpoint.done_count, enabled=self.options.progress)
        queue: asyncio.Queue = asyncio.Queue(maxsize=max(self.options.bulk_size * 2,
                                                         self.options.batch_size * self.options.concurrency))
        producer = asyncio.create_task(self._produce(items, queue))
        bulk_client = RetryingBulkClient(self.client, self.stats, max_retries=self.options.max_retries,
                                         initial_backoff=self.options.initial_backoff,
                                         max_backoff=self.options.max_backoff)
        complete = False
        try:
            async for ok, info in async_streaming_bulk(
                    bulk_client, self._actions(queue), chunk_size=self.options.bulk_size,
                    raise_on_error=False, raise_on_exception=True, max_retries=self.options.max_retries,
                    initial_backoff=self.options.initial_backoff, max_backoff=self.options.max_backoff):
                self._result(ok, info)
                self._save()
            await producer
            complete = True
        except asyncio.CancelledError:
            self.stats.aborted = "interrupted"
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the user, checkpoint kept consistent
            self.stats.aborted = _describe(exc)
            log.debug("ingest aborted", exc_info=True)
        finally:
            if not producer.done():
                producer.cancel()
                await asyncio.gather(producer, return_exceptions=True)
            self._save(force=True)
            self.dead_letter.close()
            self._progress.close(complete=complete)
            self.stats.elapsed = time.monotonic() - start
        return self.stats


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSConnectionError):
        return f"cannot reach the target: {exc.info}"
    if isinstance(exc, TransportError):
        return f"the target answered {exc.status_code}: {exc.error}"
    return f"{type(exc).__name__}: {exc}"
