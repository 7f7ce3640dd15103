"""ML Commons tasks: registration and deployment run in the background and are tracked as task documents.

Task documents carry ML Commons' fields (task_id, model_id, task_type, function_name, state, worker_node,
create_time, last_update_time, error, is_async) and states (CREATED -> RUNNING -> COMPLETED | FAILED).
A failed registration removes the model it was creating; a failed deploy puts the model back in the state it had,
so a bad zip or a bad deploy leaves the store as it was (the FAILED task stays, with its error, for the user).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yarl

from mlnode import urlgate
from mlnode.batching import Deployments
from mlnode.catalog import Catalog, CatalogError, remove_staging
from mlnode.offline import OfflineModelMissing
from mlnode.packaging.core import PackagingError
from mlnode.runtimes import PredictInputError, Runtime, RuntimeLoadError, load_runtime
from mlnode.settings import MLSettings
from mlnode.store import Store, new_id, now_ms
from mlnode.zipcheck import ZipCheckError, validate_and_extract
from opensearch_contract.errors import CircuitBreaking, IllegalArgument, InternalError, OpenSearchError

log = logging.getLogger(__name__)

FUNCTION_NAMES = ("TEXT_EMBEDDING", "SPARSE_ENCODING", "SPARSE_TOKENIZE", "TEXT_SIMILARITY", "QUESTION_ANSWERING")
MODEL_FORMATS = ("TORCH_SCRIPT", "ONNX")
ACTIVE_TASK_STATES = ("CREATED", "RUNNING")
DEPLOYABLE_STATES = ("REGISTERED", "DEPLOYED", "UNDEPLOYED", "DEPLOY_FAILED", "PARTIALLY_DEPLOYED")

REDIRECT_STATUSES = (301, 302, 303, 307, 308)
MEMORY_CB_MESSAGE = "Memory Circuit Breaker is open, please check your resources!"
MAX_MODELS_MESSAGE = "Exceed max local model per node limit"


class UserFacingError(OpenSearchError):
    """A task failure whose message is meant for the user (bad zip, hash mismatch, unreachable URL)."""

    status = 400
    error_type = "illegal_argument_exception"


@dataclass
class Backends:
    """The model pieces the tasks use (runtimes, zip validation, pretrained catalog); error-path tests swap them."""

    load_runtime: Callable[[Path, dict], Runtime] = load_runtime
    validate_and_extract: Callable[..., Path] = validate_and_extract
    load_catalog: Callable[[MLSettings], Any] = Catalog.for_settings
    _catalog: Any = field(default=None, repr=False)

    def catalog(self, settings: MLSettings) -> Any:
        if self._catalog is None:
            self._catalog = self.load_catalog(settings)
        return self._catalog


def memory_used_percent() -> float:
    """System memory in use, as the native memory circuit breaker measures it (Linux /proc/meminfo)."""
    info: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0])
    except OSError:
        return 0.0
    total = info.get("MemTotal", 0)
    available = info.get("MemAvailable", info.get("MemFree", 0))
    return 100.0 * (total - available) / total if total else 0.0


# The model pieces' "what you gave is wrong" errors: the user sees their message (HTTP 400, or a FAILED task's error).
INPUT_ERRORS: tuple[type[Exception], ...] = (
    ZipCheckError,
    CatalogError,  # UnknownPretrainedModel among them
    PackagingError,
    RuntimeLoadError,
    PredictInputError,
    zipfile.BadZipFile,
)


DISK_FULL_MESSAGE = (
    "index [.plugins-ml-model] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, "
    "index has read-only-allow-delete block];"
)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full() -> OpenSearchError:
    """A full disk while writing a model, as OpenSearch reports one (the flood-stage block on the index ML Commons
    keeps model chunks in): 429 ``cluster_block_exception``."""
    return OpenSearchError(DISK_FULL_MESSAGE, status=429, error_type="cluster_block_exception")


def zip_limits(settings: MLSettings) -> dict[str, Any]:
    """The keyword arguments ``validate_and_extract`` takes from the settings."""
    return {
        "max_bytes": settings.max_zip_bytes,
        "max_entries": settings.max_zip_entries,
        "max_ratio": settings.max_zip_compression_ratio,
    }


def _write_block(fh: Any, data: bytes) -> None:
    """One write of a downloaded model (a seam: the full-disk test makes it raise ENOSPC)."""
    fh.write(data)


def _copy_file(source: Path, dest: Path) -> None:
    with open(source, "rb") as src, open(dest, "wb") as out:
        for block in iter(lambda: src.read(1 << 20), b""):
            _write_block(out, block)


def is_user_error(exc: BaseException) -> bool:
    """Whether a failed task shows the exception's message (else: an opaque internal error, logged)."""
    return isinstance(exc, (*INPUT_ERRORS, OfflineModelMissing, ValueError, FileNotFoundError, UserFacingError))


def input_error(exc: BaseException) -> OpenSearchError:
    """One of ``INPUT_ERRORS`` as the 400 a client gets (``illegal_argument_exception`` with the message)."""
    return IllegalArgument(str(exc))


class TaskRunner:
    """Creates task documents, runs their work in the background and owns the register/deploy operations."""

    def __init__(self, *, store: Store, settings: MLSettings, deployments: Deployments, backends: Backends) -> None:
        self.store = store
        self.settings = settings
        self.deployments = deployments
        self.backends = backends
        self._running: dict[str, asyncio.Task] = {}
        self._running_types: dict[str, str] = {}
        self._deploy_locks: dict[str, asyncio.Lock] = {}
        self.circuit_breaker_trips = 0

    # ---- task documents ----------------------------------------------------------------------------------------

    async def create_task(self, task_type: str, function_name: str | None, model_id: str | None) -> str:
        task_id = new_id()
        now = now_ms()
        doc: dict[str, Any] = {
            "task_type": task_type,
            "function_name": function_name,
            "state": "CREATED",
            "worker_node": [self.settings.node_name],
            "create_time": now,
            "last_update_time": now,
            "is_async": True,
        }
        if model_id is not None:
            doc["model_id"] = model_id
        await self.store.put("tasks", task_id, doc)
        return task_id

    async def _set_task(self, task_id: str, **fields: Any) -> None:
        await self.store.update("tasks", task_id, last_update_time=now_ms(), **fields)

    def spawn(
        self, task_id: str, work: Callable[[], Awaitable[None]], on_failure: Callable[[], Awaitable[None]] | None = None
    ) -> asyncio.Task:
        async def run() -> None:
            try:
                await self._set_task(task_id, state="RUNNING")
                await asyncio.wait_for(work(), timeout=self.settings.get("ml_task_timeout_in_seconds"))
                await self._set_task(task_id, state="COMPLETED")
            except asyncio.CancelledError:
                await asyncio.shield(self._fail_task(task_id, "Task cancelled: the node is shutting down", on_failure))
                raise
            except Exception as exc:
                if isinstance(exc, OpenSearchError):
                    message = exc.reason
                elif is_disk_full(exc):
                    log.error("task %s failed: the disk is full (%s)", task_id, exc)
                    message = DISK_FULL_MESSAGE
                elif isinstance(exc, asyncio.TimeoutError):
                    message = f"Task timed out after {self.settings.get('ml_task_timeout_in_seconds')} seconds"
                elif is_user_error(exc):
                    message = str(exc)
                else:
                    log.exception("task %s failed", task_id)
                    message = "Internal error; see the ML node's log"
                await self._fail_task(task_id, message, on_failure)
            finally:
                self._running.pop(task_id, None)
                self._running_types.pop(task_id, None)

        task = asyncio.create_task(run(), name=f"mltask-{task_id}")
        self._running[task_id] = task
        self._running_types[task_id] = (self.store.get("tasks", task_id) or {}).get("task_type", "")
        return task

    async def _fail_task(self, task_id: str, message: str, on_failure: Callable[[], Awaitable[None]] | None) -> None:
        if on_failure is not None:
            try:
                await on_failure()
            except Exception:
                log.exception("rolling back after task %s failed", task_id)
        await self._set_task(task_id, state="FAILED", error=message)

    def check_task_limit(self, task_type: str) -> None:
        """ML Commons' max_register_model_tasks_per_node / max_deploy_model_tasks_per_node."""
        setting = {
            "REGISTER_MODEL": "max_register_model_tasks_per_node",
            "DEPLOY_MODEL": "max_deploy_model_tasks_per_node",
        }[task_type]
        running = sum(1 for t in self._running_types.values() if t == task_type)
        if running >= int(self.settings.get(setting)):
            raise OpenSearchError(
                "exceed max running task limit", status=429, error_type="m_l_limit_exceeded_exception"
            )

    def is_running(self, task_id: str) -> bool:
        return task_id in self._running

    async def wait_all(self) -> None:
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    # ---- registration ------------------------------------------------------------------------------------------

    async def start_registration(
        self, model_id: str, body: dict[str, Any], *, source: str, deploy: bool, created_group: str | None = None
    ) -> str:
        """The model document (REGISTERING) exists; fetch + validate + unpack the zip in a REGISTER_MODEL task."""
        doc = self.store.get("models", model_id) or {}
        task_id = await self.create_task("REGISTER_MODEL", doc.get("algorithm"), model_id)

        async def work() -> None:
            staging = await asyncio.to_thread(self.store.staging_dir)
            try:
                if source == "pretrained":
                    packaged = await asyncio.to_thread(
                        self.backends.catalog(self.settings).resolve,
                        body["name"],
                        body["version"],
                        body["model_format"],
                        self.settings.resolved_cache_dir,
                    )
                    config = dict(packaged.config)
                    zip_path = Path(packaged.zip_path)
                    updates = _fields_from_config(config)
                    if "algorithm" in updates:
                        await self._set_task(task_id, function_name=updates["algorithm"])
                else:
                    zip_path = staging / "model.zip"
                    await self._download(body["url"], zip_path)
                    updates = {}
                current = self.store.get("models", model_id) or {}
                merged = {**current, **updates}
                unpacked = staging / "model"
                await asyncio.to_thread(
                    self.backends.validate_and_extract,
                    zip_path,
                    unpacked,
                    model_format=merged["model_format"],
                    function_name=merged["algorithm"],
                    expected_hash=merged.get("model_content_hash_value"),
                    **zip_limits(self.settings),
                )
                size = zip_path.stat().st_size
                if self.store.get("models", model_id) is None:
                    raise UserFacingError(f"Model [{model_id}] was deleted while it was being registered")
                await asyncio.to_thread(self.store.commit_model_dir, unpacked, model_id)
            finally:
                await asyncio.to_thread(shutil.rmtree, staging, True)
            await self.finish_registration(
                model_id, {**updates, "model_content_size_in_bytes": size, "total_chunks": 1}
            )
            if deploy:
                await self.start_deploy(model_id)

        async def rollback() -> None:
            await self.store.delete("models", model_id)
            await asyncio.to_thread(self.store.remove_model_files, model_id)
            if created_group and not any(d.get("model_group_id") == created_group for _, d in self.store.all("models")):
                await self.store.delete("model_groups", created_group)  # auto-created for this model: undo it too

        self.spawn(task_id, work, rollback)
        return task_id

    async def finish_registration(self, model_id: str, updates: dict[str, Any]) -> None:
        doc = self.store.get("models", model_id) or {}
        now = now_ms()
        group_id = doc.get("model_group_id")
        if group_id and (group := self.store.get("model_groups", group_id)) is not None:
            version = int(doc.get("model_version", 1))
            if int(group.get("latest_version", 0)) < version:
                await self.store.update("model_groups", group_id, latest_version=version, last_updated_time=now)
        await self.store.update(
            "models", model_id, **updates, model_state="REGISTERED", last_registered_time=now, last_updated_time=now
        )

    async def _download(self, url: str, dest: Path) -> None:
        """Fetch a model zip to ``dest``: a ``file://`` URL only from ``file_url_folders`` (else the same error as a
        missing file), an http(s) URL with the connect/total timeouts and the minimum rate, following redirects here
        (at most ``download_max_redirects``) and checking each hop against ``trusted_url_regex``."""
        settings = self.settings
        cap = settings.max_zip_bytes
        url = urlgate.check(url, settings.get("trusted_url_regex"))
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme == "file":
            source = urlgate.confined_file(
                Path(urllib.request.url2pathname(parsed.path)), settings.resolved_file_url_folders
            )
            if source is None:
                raise UserFacingError(f"Model file not found at url [{url}]")
            if source.stat().st_size > cap:
                raise UserFacingError(f"Model zip is larger than the limit of {cap} bytes")
            await asyncio.to_thread(_copy_file, source, dest)
            return
        if parsed.scheme not in ("http", "https"):
            raise UserFacingError(f"Unsupported url scheme [{parsed.scheme}]; supported: http, https, file")
        total = settings.download_total_timeout_seconds
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=settings.download_connect_timeout_seconds)
        try:
            # aiohttp's total timeout does not stop a body that keeps arriving: bound the whole download here
            async with asyncio.timeout(total), aiohttp.ClientSession(timeout=timeout) as session:
                for _ in range(settings.download_max_redirects + 1):
                    async with session.get(yarl.URL(url, encoded=True), allow_redirects=False) as response:
                        location = response.headers.get("Location")
                        if response.status in REDIRECT_STATUSES and location:
                            url = urlgate.check_redirect(url, location, settings.get("trusted_url_regex"))
                            continue
                        if response.status != 200:
                            raise UserFacingError(f"Failed to download model from [{url}]: HTTP {response.status}")
                        await self._receive(response, url, dest)
                        return
                raise UserFacingError(
                    f"Failed to download model from [{url}]: more than {settings.download_max_redirects} redirects "
                    "(setting download_max_redirects)"
                )
        except aiohttp.ConnectionTimeoutError:
            raise UserFacingError(
                f"Failed to download model from [{url}]: no connection within "
                f"{settings.download_connect_timeout_seconds:g} seconds (setting download_connect_timeout_seconds)"
            ) from None
        except TimeoutError:
            raise UserFacingError(
                f"Failed to download model from [{url}]: not finished within {total:g} seconds "
                "(setting download_total_timeout_seconds)"
            ) from None
        except aiohttp.ClientError as exc:
            raise UserFacingError(f"Failed to download model from [{url}]: {type(exc).__name__}") from None

    async def _receive(self, response: aiohttp.ClientResponse, url: str, dest: Path) -> None:
        """Write a response body to ``dest``: at most ``max_zip_bytes``, and at least ``download_min_bytes_per_second``
        over every ``download_min_rate_window_seconds`` (a read waits at most until its window closes)."""
        cap = self.settings.max_zip_bytes
        min_rate = self.settings.download_min_bytes_per_second
        window = self.settings.download_min_rate_window_seconds
        loop = asyncio.get_running_loop()
        written = window_bytes = 0
        window_start = loop.time()
        with open(dest, "wb") as fh:
            while True:
                wait = max(window_start + window - loop.time(), 0.001) if min_rate else None
                try:
                    chunk: bytes | None = await asyncio.wait_for(response.content.readany(), wait)
                except TimeoutError:
                    chunk = None  # nothing arrived before the window closed
                if chunk == b"":
                    return
                if chunk:
                    written += len(chunk)
                    window_bytes += len(chunk)
                    if written > cap:
                        raise UserFacingError(f"Model zip is larger than the limit of {cap} bytes")
                    await asyncio.to_thread(_write_block, fh, chunk)
                elapsed = loop.time() - window_start
                if min_rate and elapsed >= window:
                    if window_bytes < min_rate * elapsed:
                        raise UserFacingError(
                            f"Failed to download model from [{url}]: {window_bytes} bytes in {elapsed:.1f} seconds, "
                            f"less than the minimum of {min_rate} bytes per second "
                            f"(setting download_min_bytes_per_second)"
                        )
                    window_start, window_bytes = loop.time(), 0

    # ---- deployment --------------------------------------------------------------------------------------------

    def check_deploy_limits(self, model_id: str) -> None:
        """ML Commons' checks in MLModelManager.deployModel, in its order: max_model_on_node, then (before the model's
        chunks are read) the native memory circuit breaker. A model already deployed passes both."""
        if self.deployments.get(model_id) is not None:
            return
        if len(self.deployments) >= int(self.settings.get("max_model_on_node")):
            raise IllegalArgument(MAX_MODELS_MESSAGE)
        threshold = int(self.settings.get("native_memory_threshold"))
        if threshold < 100 and memory_used_percent() > threshold:
            self.circuit_breaker_trips += 1
            raise CircuitBreaking(MEMORY_CB_MESSAGE)

    async def start_deploy(self, model_id: str) -> str:
        doc = self.store.get("models", model_id) or {}
        task_id = await self.create_task("DEPLOY_MODEL", doc.get("algorithm"), model_id)
        previous = doc.get("model_state", "REGISTERED")
        if previous == "DEPLOYING":
            previous = "REGISTERED"
        if self.deployments.get(model_id) is None:
            await self.store.update("models", model_id, model_state="DEPLOYING", last_updated_time=now_ms())

        async def work() -> None:
            await self.deploy_now(model_id)

        async def rollback() -> None:
            if self.deployments.get(model_id) is None and self.store.get("models", model_id) is not None:
                await self.store.update("models", model_id, model_state=previous, last_updated_time=now_ms())

        self.spawn(task_id, work, rollback)
        return task_id

    async def deploy_now(self, model_id: str) -> None:
        lock = self._deploy_locks.setdefault(model_id, asyncio.Lock())
        async with lock:
            if self.deployments.get(model_id) is not None:
                await self._mark_deployed(model_id)
                return
            doc = self.store.get("models", model_id)
            if doc is None:
                raise UserFacingError(f"Failed to find model with the provided model id: {model_id}")
            self.check_deploy_limits(model_id)
            model_dir = self.store.model_dir(model_id)
            if not model_dir.is_dir():
                raise UserFacingError(f"Model [{model_id}] has no model content; register or upload it first")
            runtime_doc = {**doc, "function_name": doc.get("algorithm"), "model_id": model_id}
            runtime = await asyncio.to_thread(self.backends.load_runtime, model_dir, runtime_doc)
            self.deployments.add(model_id, runtime)
            try:
                await self._mark_deployed(model_id)
            except BaseException:
                await self.deployments.remove(model_id)
                raise

    async def _mark_deployed(self, model_id: str) -> None:
        now = now_ms()
        await self.store.update(
            "models",
            model_id,
            model_state="DEPLOYED",
            last_deployed_time=now,
            last_updated_time=now,
            planning_worker_node_count=1,
            current_worker_node_count=1,
            planning_worker_nodes=[self.settings.node_name],
            deploy_to_all_nodes=True,
        )

    async def undeploy(self, model_id: str) -> bool:
        """Close the model's worker and runtime; mark the model UNDEPLOYED. True if it was deployed here."""
        removed = await self.deployments.remove(model_id)
        doc = self.store.get("models", model_id)
        if doc is not None and (removed or doc.get("model_state") in ("DEPLOYED", "DEPLOYING", "PARTIALLY_DEPLOYED")):
            now = now_ms()
            await self.store.update(
                "models",
                model_id,
                model_state="UNDEPLOYED",
                last_undeployed_time=now,
                last_updated_time=now,
                current_worker_node_count=0,
                planning_worker_node_count=0,
                planning_worker_nodes=[],
            )
        return removed

    # ---- restart -----------------------------------------------------------------------------------------------

    async def recover(self) -> None:
        """After a restart: fail unfinished tasks, drop half-registered models, redeploy what was deployed.

        A model group created for a registration that the restart interrupted is kept, as ML Commons keeps the group
        its register creates: it is empty, the next register of that name joins it, and DELETE removes it."""
        if self.settings.cache_dir is None:  # the node's own catalog cache (a shared one may be in use elsewhere)
            await asyncio.to_thread(remove_staging, self.settings.resolved_cache_dir)
        for task_id, task in self.store.all("tasks"):
            if task.get("state") in ACTIVE_TASK_STATES:
                await self._set_task(task_id, state="FAILED", error="The ML node restarted before the task finished")
        redeploy = []
        for model_id, doc in self.store.all("models"):
            state = doc.get("model_state")
            if state == "REGISTERING" and not doc.get("total_chunks"):
                await self.store.delete("models", model_id)
                await asyncio.to_thread(self.store.remove_model_files, model_id)
            elif state in ("DEPLOYED", "DEPLOYING", "PARTIALLY_DEPLOYED"):
                redeploy.append(model_id)
        for model_id in redeploy:
            if not self.settings.get("model_auto_redeploy.enable"):
                await self.store.update("models", model_id, model_state="UNDEPLOYED", last_updated_time=now_ms())
                continue
            try:
                await self.deploy_now(model_id)
            except Exception as exc:
                reason = exc.reason if isinstance(exc, OpenSearchError) else type(exc).__name__
                log.error("redeploying model %s at start failed: %s", model_id, reason)
                await self.store.update("models", model_id, model_state="DEPLOY_FAILED", last_updated_time=now_ms())


def _fields_from_config(config: dict[str, Any]) -> dict[str, Any]:
    """Model document fields taken from a packaged model's config.json (what ML Commons reads from it)."""
    out: dict[str, Any] = {}
    if "function_name" in config:
        out["algorithm"] = str(config["function_name"]).upper()
    for key in ("description", "model_format", "model_config", "model_content_hash_value", "weights_source"):
        if config.get(key) is not None:
            out[key] = config[key]
    return out


__all__ = [
    "Backends",
    "FUNCTION_NAMES",
    "MODEL_FORMATS",
    "DEPLOYABLE_STATES",
    "MEMORY_CB_MESSAGE",
    "MAX_MODELS_MESSAGE",
    "TaskRunner",
    "UserFacingError",
    "InternalError",
    "memory_used_percent",
]
