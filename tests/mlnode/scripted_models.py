"""Small real TorchScript models built in the test (torch.jit.script), zipped as ML Commons model zips.

- ``counting_model_zip``: TEXT_EMBEDDING whose "embedding" is [tokens, sum of ids]: a test reads from it how much of
  a text reached the model.
- ``spinning_model_zip``: TEXT_EMBEDDING whose forward loops while its ``spin`` buffer is non-zero, i.e. forever
  unless the test clears the buffer of the loaded module (``release``) to let the thread go at the end.
Both take the tokenizer.json of all-MiniLM-L6-v2 (offline package), with or without a truncation section.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from mlnode.offline import minilm_dir
from tests.fixtures.mlnode import make_zip


class Counting(torch.nn.Module):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = attention_mask.sum(1).to(torch.float32)
        ids = (input_ids * attention_mask).sum(1).to(torch.float32)
        return {"sentence_embedding": torch.stack([tokens, ids], 1)}


class Spinning(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("spin", torch.ones(1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        turns = torch.zeros(1)
        while bool(self.spin[0] > 0):  # never false unless the test clears the loaded module's buffer
            turns = turns + 1
        return {"sentence_embedding": attention_mask.sum(1, keepdim=True).to(torch.float32).repeat(1, 2) + turns}


def tokenizer_json(max_length: int | None) -> str:
    """MiniLM's tokenizer.json truncating at ``max_length`` tokens, or without truncation (None)."""
    data = json.loads((minilm_dir() / "tokenizer.json").read_text(encoding="utf-8"))
    data["padding"] = None
    data["truncation"] = None if max_length is None else {
        "direction": "Right", "max_length": max_length, "strategy": "LongestFirst", "stride": 0}
    return json.dumps(data)


def _zip(path: Path, module: torch.nn.Module, max_length: int | None) -> tuple[Path, str]:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return make_zip(path, {"model.pt": buffer.getvalue(), "tokenizer.json": tokenizer_json(max_length)})


def counting_model_zip(path: Path, max_length: int | None = 512) -> tuple[Path, str]:
    return _zip(path, Counting(), max_length)


def spinning_model_zip(path: Path) -> tuple[Path, str]:
    return _zip(path, Spinning(), 512)


def release(module: Any) -> None:
    """Let a spinning forward of the loaded ``module`` return."""
    with torch.no_grad():
        module.spin.zero_()
