"""Faster LoRA ops for vLLM on CPU, installed as a vLLM general plugin (so in every vLLM process).

vLLM's PyTorch LoRA ops (``vllm.lora.ops.torch_ops``, what the CPU backend uses) gather a copy of
the adapter's weight matrix for every token, ``weights[indices]``, then multiply token by token.
A 600-token prompt through a rank-16 adapter copies hundreds of MB per layer; measured here, a RAG
prompt through an adapter prefilled about 5x slower than without one. These versions compute the
same thing with one matrix product per distinct adapter in the batch (usually one or two), reading
the weights where they are; a small mixed batch (decoding) takes one product against every adapter
slot and picks each token's row. Same inputs, same outputs (the unit test compares them with vLLM's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

_ORIGINAL: dict[str, Callable[..., Any]] = {}
MIXED_SMALL = 256  # tokens x adapter slots up to which a mixed batch is computed for all adapters


def _per_adapter(
    inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """``out[t] = weights[indices[t]] @ inputs[t]`` for every token t, grouped by adapter.
    ``weights`` is [adapters, out, in] (or [adapters, 1, out, in]); indices index it as Python
    does (vLLM passes -1 for "no adapter", which selects the last slot, as the original ops do)."""
    if weights.dim() == 4:
        weights = weights.squeeze(1)
    inputs = inputs.to(dtype)
    values = torch.unique(indices)
    if values.numel() == 1:
        return inputs @ weights[int(values[0])].to(dtype).T
    adapters, outs, ins = weights.shape
    tokens = inputs.shape[0]
    if tokens * adapters <= MIXED_SMALL:  # a decode batch: every adapter for every token, then pick
        every = inputs @ weights.to(dtype).reshape(adapters * outs, ins).T
        return every.view(tokens, adapters, outs)[torch.arange(tokens), indices % adapters]
    out = inputs.new_empty((tokens, outs))
    for value in values.tolist():
        rows = indices == value
        out[rows] = inputs[rows] @ weights[value].to(dtype).T
    return out


def _usable(inputs: torch.Tensor, indices: torch.Tensor) -> bool:
    return indices.dim() == 1 and inputs.dim() == 2 and indices.shape[0] == inputs.shape[0]


def bgmv_shrink(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    scaling: float = 1.0,
) -> None:
    if not _usable(inputs, lora_indices_tensor):
        _ORIGINAL["bgmv_shrink"](inputs, lora_b_weights, output_tensor, lora_indices_tensor, scaling)
        return
    outputs = _per_adapter(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def bgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    add_inputs: bool = True,
) -> None:
    if not _usable(inputs, lora_indices_tensor):
        _ORIGINAL["bgmv_expand"](inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs)
        return
    outputs = _per_adapter(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    limit = output_tensor.shape[0]
    if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    common_len = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :common_len] += outputs[:limit, :common_len]
    else:
        output_tensor[:, :common_len] = outputs[:limit, :common_len]


def bgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = True,
) -> None:
    if not _usable(inputs, lora_indices_tensor):
        _ORIGINAL["bgmv_expand_slice"](
            inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset, slice_size, add_inputs
        )
        return
    outputs = _per_adapter(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset : slice_offset + slice_size] += outputs
    else:
        output_tensor[:, slice_offset : slice_offset + slice_size] = outputs


REPLACEMENTS = {"bgmv_shrink": bgmv_shrink, "bgmv_expand": bgmv_expand, "bgmv_expand_slice": bgmv_expand_slice}


def install() -> None:
    """Swap the ops in vLLM's torch_ops module (its sgmv_* call them) and in the CPU punica
    wrapper, which imported them by name. Idempotent: vLLM may load plugins more than once."""
    from vllm.lora.ops import torch_ops
    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    if _ORIGINAL:
        return
    for name, replacement in REPLACEMENTS.items():
        _ORIGINAL[name] = getattr(lora_ops, name)
        for module in (lora_ops, torch_ops, punica_cpu):
            if hasattr(module, name):
                setattr(module, name, replacement)
    log.debug("ragtune: grouped LoRA ops installed for vLLM's CPU backend")


def register() -> None:
    """The ``vllm.general_plugins`` entry point (runs in the engine core and worker processes)."""
    try:
        install()
    except ImportError:  # a vLLM build without these modules: keep its own ops
        log.warning("ragtune: vLLM's torch LoRA ops not found; grouped LoRA ops not installed")
