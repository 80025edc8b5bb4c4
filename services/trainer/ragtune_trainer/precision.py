"""The precision a training process computes in.

``bf16`` runs the forward pass under bfloat16 autocast: the matmuls (the frozen base weights cast on
the fly, the LoRA weights too) in bfloat16, normalisations, softmax and the loss in float32. The
weights stay float32, so the LoRA weights, their gradients and the optimizer state are float32, and
the backward pass follows the forward's dtypes. On CPUs with AVX512-BF16 a bfloat16 matmul runs at
about twice the float32 rate (oneDNN); without it (or AMX) bfloat16 is emulated and slower, so
``auto`` takes bf16 only where the device has it natively.
"""

from __future__ import annotations

import torch


def native_bf16(device: str) -> bool:
    """True when ``device`` ("cpu" or "cuda") computes bfloat16 matmuls in hardware."""
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(setting: str, device: str) -> str:
    """``fp32`` or ``bf16`` for a ``precision`` setting of auto, fp32 or bf16."""
    if setting == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if setting not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {setting!r}: use auto, fp32 or bf16")
    return setting


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype the forward pass autocasts to, or None for float32 throughout."""
    return torch.bfloat16 if precision == "bf16" else None
