"""Model backends: a TorchScript module (torch) or an ONNX graph (onnxruntime) behind one small API.

Thread behaviour: one backend may be called from several worker threads at once.
``onnxruntime.InferenceSession.run`` is thread-safe; TorchScript modules are called under
``torch.inference_mode()`` and hold no per-call state, so concurrent calls are safe too. Intra-op
threads: ``NEURALPIPE_INTRA_OP_THREADS`` if set, else what ``set_intra_op_threads`` was given (the ML node
passes its ``intra_op_threads`` setting, by default the cores divided among its worker threads), else the
usable cores; for torch this is process-wide (``torch.set_num_threads``), for onnxruntime it is per
session. Inter-op parallelism is kept at 1: parallelism comes from the batch, not from graph branches.
TorchScript runs with the graph executor's optimisation off (thread-local), see ``TorchScriptBackend.run``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from mlnode.settings import usable_cores

CANONICAL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


_configured_threads = 0


def set_intra_op_threads(count: int) -> None:
    """Intra-op threads for backends opened from now on (0 = the usable cores)."""
    global _configured_threads
    _configured_threads = max(0, int(count))


def intra_op_threads() -> int:
    """Intra-op threads for a new backend: ``NEURALPIPE_INTRA_OP_THREADS``, the configured count, or the cores."""
    try:
        from_env = int(os.environ.get("NEURALPIPE_INTRA_OP_THREADS", "0"))
    except ValueError:
        from_env = 0
    if from_env > 0:
        return from_env
    if _configured_threads > 0:
        return _configured_threads
    return usable_cores()


class Backend(Protocol):
    input_names: list[str]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class OnnxBackend:
    """An onnxruntime CPU session; feeds only the inputs the graph declares."""

    def __init__(self, path: Path, *, threads: int | None = None) -> None:

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads() if threads is None else threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name: (np.int32 if "int32" in i.type else np.int64) for i in self._session.get_inputs()}
        self.input_names = list(self._inputs)
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [name for name in self.input_names if name not in feed]
        if missing:
            raise ValueError(f"the ONNX model takes inputs {self.input_names}; cannot supply {missing}")
        arrays = {name: np.ascontiguousarray(feed[name], dtype=dtype) for name, dtype in self._inputs.items()}
        values = self._session.run(None, arrays)
        return dict(zip(self.output_names, values, strict=True))

    def close(self) -> None:
        self._session = None


class TorchScriptBackend:
    """A ``torch.jit`` module on CPU. Positional inputs are taken in the canonical order (input_ids,
    attention_mask, token_type_ids) by count, or as one dict when the module's forward takes a dict."""

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        import torch  # torch is an optional extra ([torch]): only TorchScript models need it

        count = intra_op_threads() if threads is None else threads
        if count > 0:
            torch.set_num_threads(count)
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

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
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
