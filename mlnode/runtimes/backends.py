"""Model backends: a TorchScript module (torch) or an ONNX graph (onnxruntime) behind one small API.

Thread behaviour: one backend may be called from several worker threads at once.
``onnxruntime.InferenceSession.run`` is thread-safe; TorchScript modules are called under
``torch.inference_mode()`` and hold no per-call state, so concurrent calls are safe too.

Intra-op threads (``ThreadPlan``): a call that runs alone may use every usable core; a call that runs beside
others uses its share (the ML node: the cores divided among its worker threads). The caller says which per call
with ``call_threads(n)`` around ``run`` (the ML node's batcher does, from how many calls are running or waiting);
without it a call uses the plan's ``alone`` count. ``NEURALPIPE_INTRA_OP_THREADS``, or an explicit ``intra_op_threads``
setting, fixes one count for every call. onnxruntime fixes the thread count per session, so an ONNX backend whose
two counts differ holds two sessions of the same graph (the second opened when first asked for); torch's count is
set per calling thread (``torch.set_num_threads`` sets the calling thread's OpenMP and MKL counts, which ATen's
OpenMP backend reads).
Inter-op parallelism is kept at 1: parallelism comes from the batch, not from graph branches.
TorchScript runs with the graph executor's optimisation off (thread-local), see ``TorchScriptBackend.run``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from mlnode.settings import usable_cores

CANONICAL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class ThreadPlan:
    """Intra-op threads of one runtime call: ``alone`` when no other call runs or waits, ``shared`` otherwise."""

    alone: int
    shared: int

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(sorted({self.alone, self.shared}))


_configured_plan: ThreadPlan | None = None
_call_threads = threading.local()


def set_thread_plan(plan: ThreadPlan | None) -> None:
    """Threads for backends opened from now on (None = every usable core for every call)."""
    global _configured_plan
    _configured_plan = None if plan is None else ThreadPlan(max(1, plan.alone), max(1, plan.shared))


def set_intra_op_threads(count: int) -> None:
    """One fixed intra-op thread count for backends opened from now on (0 = the usable cores)."""
    set_thread_plan(ThreadPlan(count, count) if count > 0 else None)


def _env_threads() -> int:
    try:
        return max(0, int(os.environ.get("NEURALPIPE_INTRA_OP_THREADS", "0")))
    except ValueError:
        return 0


def thread_plan() -> ThreadPlan:
    """The plan of a new backend: ``NEURALPIPE_INTRA_OP_THREADS`` (fixed), the configured plan, or every usable core."""
    from_env = _env_threads()
    if from_env > 0:
        return ThreadPlan(from_env, from_env)
    if _configured_plan is not None:
        return _configured_plan
    cores = usable_cores()
    return ThreadPlan(cores, cores)


def intra_op_threads() -> int:
    """Intra-op threads of a call that runs beside others (the plan's ``shared`` count)."""
    return thread_plan().shared


@contextlib.contextmanager
def call_threads(count: int | None) -> Iterator[None]:
    """Runtime calls made by this thread inside the block use ``count`` intra-op threads (None: the plan's
    ``alone``); a backend rounds it down to a count it holds (at least its smallest)."""
    previous = getattr(_call_threads, "count", None)
    _call_threads.count = count
    try:
        yield
    finally:
        _call_threads.count = previous


def current_call_threads() -> int | None:
    """The count ``call_threads`` gave this thread's runtime calls (None outside such a block)."""
    return getattr(_call_threads, "count", None)


def _pick(counts: tuple[int, ...], wanted: int) -> int:
    """The largest of ``counts`` (ascending) not above ``wanted``, else the smallest."""
    fitting = [c for c in counts if c <= wanted]
    return fitting[-1] if fitting else counts[0]


class Backend(Protocol):
    input_names: list[str]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


def _wanted(plan: ThreadPlan) -> int:
    count = current_call_threads()
    return plan.alone if count is None else count


class OnnxBackend:
    """onnxruntime CPU sessions of one graph, one per thread count of the plan; feeds only the inputs the graph
    declares. The session of the ``alone`` count opens with the backend, the other on the first call that asks for
    it (only calls beside other models' calls do: it costs about the model's size again in memory)."""

    def __init__(self, path: Path, *, threads: int | None = None, plan: ThreadPlan | None = None) -> None:
        if plan is None:
            plan = thread_plan() if threads is None else ThreadPlan(threads, threads)
        self.plan = plan
        self._path = path
        self._lock = threading.Lock()
        self._session: ort.InferenceSession | None = self._open(path, max(plan.counts))  # a lone call's
        self._sessions = {max(plan.counts): self._session}
        self._inputs = {i.name: (np.int32 if "int32" in i.type else np.int64) for i in self._session.get_inputs()}
        self.input_names = list(self._inputs)
        self.output_names = [o.name for o in self._session.get_outputs()]

    @staticmethod
    def _open(path: Path, threads: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    def session_for(self, threads: int | None) -> ort.InferenceSession:
        """The session a call asking for ``threads`` intra-op threads runs on (None: the plan's ``alone``)."""
        count = _pick(self.plan.counts, self.plan.alone if threads is None else threads)
        session = self._sessions.get(count)
        if session is None:
            with self._lock:
                if self._session is None:
                    raise RuntimeError("the backend is closed")
                session = self._sessions.get(count)
                if session is None:
                    session = self._sessions[count] = self._open(self._path, count)
        if self._session is None:
            raise RuntimeError("the backend is closed")
        return session

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [name for name in self.input_names if name not in feed]
        if missing:
            raise ValueError(f"the ONNX model takes inputs {self.input_names}; cannot supply {missing}")
        arrays = {name: np.ascontiguousarray(feed[name], dtype=dtype) for name, dtype in self._inputs.items()}
        values = self.session_for(_wanted(self.plan)).run(None, arrays)
        return dict(zip(self.output_names, values, strict=True))

    def close(self) -> None:
        with self._lock:
            self._session = None
            self._sessions = {}


class TorchScriptBackend:
    """A ``torch.jit`` module on CPU. Positional inputs are taken in the canonical order (input_ids,
    attention_mask, token_type_ids) by count, or as one dict when the module's forward takes a dict."""

    def __init__(self, path: Path, *, threads: int | None = None, plan: ThreadPlan | None = None) -> None:
        import torch  # torch is an optional extra ([torch]): only TorchScript models need it

        if plan is None:
            plan = thread_plan() if threads is None else ThreadPlan(threads, threads)
        self.plan = plan
        torch.set_num_threads(plan.alone)  # this thread's count, and the one threads started later begin with
        self._torch = torch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load's "switch to torch.export"
            self._module = torch.jit.load(str(path), map_location="cpu").eval()
        arguments = self._module.forward.schema.arguments[1:]
        self._dict_input = len(arguments) == 1 and str(arguments[0].type).startswith("Dict")
        if self._dict_input:
            self.input_names = list(CANONICAL_INPUTS[:2])
        else:
            if not 1 <= len(arguments) <= 3:
                raise ValueError(f"the TorchScript model takes {len(arguments)} inputs; expected 1 to 3")
            self.input_names = list(CANONICAL_INPUTS[: len(arguments)])

    def _use_threads(self, count: int) -> None:
        """Set the calling thread's intra-op count. ``get_num_threads`` first: a thread's first ATen call resets
        its count to the process-wide one, so it must not come after the set. Other threads keep theirs."""
        torch = self._torch
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        self._use_threads(_pick(self.plan.counts, _wanted(self.plan)))
        tensors = [torch.from_numpy(np.ascontiguousarray(feed[name], dtype=np.int64)) for name in self.input_names]
        # The profiling graph executor re-specialises for every new (batch, sequence) shape, which serving
        # traffic never stops producing: the plain interpreter is ~1.5x faster here. Thread-local setting.
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            if self._dict_input:
                result = self._module(dict(zip(self.input_names, tensors, strict=True)))
            else:
                result = self._module(*tensors)
        return _named_outputs(result)

    def close(self) -> None:
        self._module = None


def _named_outputs(result: Any) -> dict[str, np.ndarray]:
    if isinstance(result, dict):
        return {str(k): v.detach().numpy() for k, v in result.items() if hasattr(v, "detach")}
    if isinstance(result, (tuple, list)):
        return {f"output_{i}": v.detach().numpy() for i, v in enumerate(result) if hasattr(v, "detach")}
    return {"output": result.detach().numpy()}


def open_backend(path: Path, model_format: str) -> Backend:
    if model_format == "ONNX":
        return OnnxBackend(path)
    if model_format == "TORCH_SCRIPT":
        return TorchScriptBackend(path)
    raise ValueError(f"unsupported model_format [{model_format}]: valid values are ['TORCH_SCRIPT', 'ONNX']")
