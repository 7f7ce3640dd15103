"""Build the model file of a zip: trace to TorchScript or export to ONNX (needs torch + transformers).

Each wrapper takes named tensors (``input_ids``, ``attention_mask`` and, where the encoder declares
it, ``token_type_ids``) and returns a dict of named outputs, so TorchScript and ONNX files carry the
same names:

* dense, sentence_transformers framework: ``{"sentence_embedding": [batch, dim]}`` with pooling and
  normalisation inside the traced graph;
* dense, huggingface_transformers framework: the encoder's ``last_hidden_state`` (the runtime pools);
* sparse: ``{"output": [batch, vocab]}`` = log(1 + relu(max over seq of the logits, padding excluded)),
  special tokens zeroed, with one [batch, seq, vocab] tensor at most (see ``SparseEncoder``);
* cross-encoder: ``{"logits": [batch, labels]}``; question answering: ``start_logits``/``end_logits``.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Sentence-transformers pooling of ``hidden`` [batch, seq, dim] under ``mask`` [batch, seq]."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return torch.where(m > 0, hidden, torch.full_like(hidden, -1e9)).max(dim=1).values
    if mode == "lasttoken":
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0]), last]
    if mode == "weightedmean":
        weights = torch.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype).view(1, -1, 1) * m
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    summed = (hidden * m).sum(dim=1)
    count = m.sum(dim=1).clamp(min=1e-9)
    if mode == "mean_sqrt_len":
        return summed / count.sqrt()
    return summed / count


class _Encoder(nn.Module):
    """Calls a Hugging Face model with the named inputs it declares."""

    def __init__(self, model: nn.Module, input_names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = list(input_names)

    def run(self, *tensors: torch.Tensor) -> Any:
        return self.model(**dict(zip(self.input_names, tensors, strict=True)), return_dict=False)


class SentenceEmbedding(_Encoder):
    def __init__(self, model: nn.Module, pooling: str, normalize: bool) -> None:
        super().__init__(model, ["input_ids", "attention_mask"])
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.run(input_ids, attention_mask)[0]
        embedding = pool(hidden, attention_mask, self.pooling)
        if self.normalize:
            embedding = nn.functional.normalize(embedding, p=2.0, dim=1)
        return {"sentence_embedding": embedding}


class HiddenStates(_Encoder):
    def forward(self, *tensors: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"last_hidden_state": self.run(*tensors)[0]}


class SparseEncoder(_Encoder):
    """log(1 + relu(max over seq of the MLM logits, padding excluded)), special tokens zeroed.

    Memory: the logits [batch, seq, vocab] are by far the largest tensor (32 x 512 x 30522 floats = 2 GB), so
    the graph materialises exactly one of them. When the model's output layer is a ``Linear`` (every Hugging
    Face MLM head), it is split off: padded positions take the hidden state of the text's first real token
    (they then repeat a real token's logits and cannot change the max, so no vocab-sized mask is needed),
    the projection runs once, and its bias is added after the max (it does not depend on the position).
    log1p(relu(.)) is monotonic, so it is applied to the [batch, vocab] maxima only. The split is checked
    against the unsplit model on ``example`` and dropped (plain path, masked in place) if they differ.
    """

    keep: torch.Tensor  # a registered buffer: 1.0 per vocabulary id, 0.0 for special tokens

    def __init__(
        self,
        model: nn.Module,
        input_names: Sequence[str],
        special_ids: Sequence[int],
        vocab: int,
        example: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__(model, input_names)
        keep = torch.ones(vocab)
        keep[list(special_ids)] = 0.0
        self.register_buffer("keep", keep)
        self.projection: nn.Linear | None = None
        output_embeddings = getattr(model, "get_output_embeddings", None)
        layer = output_embeddings() if callable(output_embeddings) else None
        if isinstance(layer, nn.Linear) and example is not None:
            self._split_output_layer(layer, tuple(example[name] for name in self.input_names))

    def _split_output_layer(self, layer: nn.Linear, args: tuple[torch.Tensor, ...]) -> None:
        with torch.no_grad():
            expected = self(*args)["output"]
            identity = nn.Identity()
            if not _replace_child(self.model, layer, identity):
                return
            self.projection = layer
            got = self(*args)["output"]
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-4):
            _replace_child(self.model, identity, layer)  # the head does more after its output layer
            self.projection = None

    def forward(self, *tensors: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = tensors[self.input_names.index("attention_mask")].unsqueeze(-1)
        states = self.run(*tensors)[0]
        if self.projection is None:  # [batch, seq, vocab] logits, masked in place
            values = states.masked_fill_(mask == 0, 0.0).amax(dim=1)
        else:  # [batch, seq, hidden] inputs of the output layer
            first = mask.to(states.dtype).argmax(dim=1, keepdim=True)  # [batch, 1, 1]: first real token
            anchor = states.gather(1, first.expand(-1, 1, states.shape[-1]))
            states = torch.where(mask > 0, states, anchor)
            values = torch.matmul(states, self.projection.weight.t()).amax(dim=1)
            if self.projection.bias is not None:
                values = values + self.projection.bias
        return {"output": torch.log1p(torch.relu(values)) * self.keep}


def _replace_child(root: nn.Module, old: nn.Module, new: nn.Module) -> bool:
    for module in root.modules():
        for name, child in module.named_children():
            if child is old:
                setattr(module, name, new)
                return True
    return False


class Logits(_Encoder):
    def __init__(self, model: nn.Module, input_names: Sequence[str], output_names: Sequence[str]) -> None:
        super().__init__(model, input_names)
        self.output_names = list(output_names)

    def forward(self, *tensors: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.run(*tensors)
        return {name: outputs[i] for i, name in enumerate(self.output_names)}


def declared_inputs(model: nn.Module) -> list[str]:
    """input_ids, attention_mask, and token_type_ids when the model's forward takes it."""
    params = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    config = getattr(model, "config", None)
    if "token_type_ids" in params and (getattr(config, "type_vocab_size", None) or 0):
        names.append("token_type_ids")
    return names


def save(
    module: nn.Module,
    example: dict[str, torch.Tensor],
    out_file: Path,
    model_format: str,
    *,
    seq_outputs: Sequence[str] = (),
) -> None:
    """Trace ``module`` on ``example`` to TorchScript, or export it to a single-file ONNX graph with
    dynamic batch and sequence axes."""
    module.eval()
    args = tuple(example[name] for name in _input_order(module, example))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if model_format == "TORCH_SCRIPT":
            traced = torch.jit.trace(module, args, strict=False, check_trace=False)
            torch.jit.save(traced, str(out_file))
            return
        outputs = module(*args)
        input_names = list(_input_order(module, example))
        output_names = list(outputs)
        axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in input_names}
        for name in output_names:
            axes[name] = {0: "batch", 1: "sequence"} if name in seq_outputs else {0: "batch"}
        torch.onnx.export(
            module,
            args,
            str(out_file),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=axes,
            opset_version=17,
            # folding would store a transposed copy of tied weights (SPLADE's MLM head: 31 MB instead of
            # 16.6 MB); onnxruntime folds constants itself when it loads the graph
            do_constant_folding=False,
            dynamo=False,
        )


def _input_order(module: nn.Module, example: dict[str, torch.Tensor]) -> list[str]:
    names = getattr(module, "input_names", None) or list(example)
    return [name for name in names if name in example]
