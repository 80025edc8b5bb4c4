"""The slice-level LoRA path of the generator's vLLM plugin (``lora_cpu.install_wrapper``): vLLM's
own ``PunicaWrapperCPU`` routing a batch (real ``LoRAMapping``), compared with a per-token reference:
each token through its slot's A then B, tokens without an adapter (-1) untouched, for packed
(q/k/v) and single slices, slices zero in the slots in use (skipped), one adapter, mixed
decode/prefill batches, and weights rewritten in place (a slot reloaded)."""

from __future__ import annotations

import pytest
import torch
from vllm.lora.layers.utils import LoRAMapping
from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

from ragtune_generator import lora_cpu

SLOTS, RANK, HIDDEN = 4, 16, 32
SLICES = (32, 8, 8)  # q, k, v
LORA_IDS = [11, 12, 13, 14]  # slot i holds adapter LORA_IDS[i]
PATCHED = ("update_metadata", "add_shrink", "add_expand", "add_lora_linear", "_ragtune_wrapped")


@pytest.fixture(autouse=True)
def _vllms_class_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """``install_wrapper`` patches vLLM's class for the whole process: monkeypatch records what the
    class itself holds under each name it patches (or that it holds nothing) and puts it back."""
    for name in PATCHED:
        monkeypatch.setattr(PunicaWrapperCPU, name, getattr(PunicaWrapperCPU, name, False), raising=False)


def _wrapper(adapter_per_token: list[int]) -> PunicaWrapperCPU:
    assert lora_cpu.install_wrapper()
    wrapper = PunicaWrapperCPU(256, 64, device="cpu")
    mapping = LoRAMapping(tuple(adapter_per_token), tuple(adapter_per_token), is_prefill=True)
    wrapper.update_metadata(mapping, list(LORA_IDS), SLOTS, 1000)
    return wrapper


def _weights(seed: int, zero_slices: tuple[int, ...] = ()) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(seed)
    a = tuple(torch.randn(SLOTS, 1, RANK, HIDDEN, generator=gen) for _ in SLICES)
    b = tuple(torch.randn(SLOTS, 1, size, RANK, generator=gen) for size in SLICES)
    for s in zero_slices:
        a[s].zero_()
        b[s].zero_()
    return a, b


def _reference(
    y: torch.Tensor, x: torch.Tensor, a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...], slots: list[int]
) -> torch.Tensor:
    out = y.clone()
    for t, slot in enumerate(slots):
        if slot < 0:
            continue
        offset = 0
        for s, size in enumerate(SLICES):
            out[t, offset : offset + size] += b[s][slot, 0] @ (a[s][slot, 0] @ x[t])
            offset += size
    return out


CASES = {
    "one adapter, prefill": [12] * 40,
    "mixed decode": [11, 12, 13, 14] * 4,
    "mixed prefill, sorted": [11] * 7 + [14] * 9 + [12] * 5,
    "base rows beside adapters": [0, 11, 0, 14, 14, 0],
    "base only": [0] * 5,
}


@pytest.mark.parametrize("adapters", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("zero_slices", [(), (1,)], ids=["all slices", "k zero"])
def test_add_lora_linear_matches_per_token_reference(adapters: list[int], zero_slices: tuple[int, ...]) -> None:
    wrapper = _wrapper(adapters)
    a, b = _weights(0, zero_slices)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(len(adapters), HIDDEN, generator=gen)
    y = torch.randn(len(adapters), sum(SLICES), generator=gen)
    slots = [LORA_IDS.index(i) if i > 0 else -1 for i in adapters]
    expected = _reference(y, x, a, b, slots)
    wrapper.add_lora_linear(y, x, a, b, 1.0, SLICES)
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)


def test_base_rows_get_no_adapter_even_with_every_slot_full() -> None:
    """vLLM's CPU ops index slot -1 (the last) for base rows; these must leave them unchanged."""
    wrapper = _wrapper([0, 14, 0])
    a, b = _weights(2)
    x, y = torch.randn(3, HIDDEN), torch.randn(3, sum(SLICES))
    before = y.clone()
    wrapper.add_lora_linear(y, x, a, b, 1.0, SLICES)
    torch.testing.assert_close(y[[0, 2]], before[[0, 2]])
    assert not torch.allclose(y[1], before[1])


def test_weights_rewritten_in_place_are_seen() -> None:
    """A slot reloaded (vLLM copies into the stacked tensors) invalidates the cached flat forms,
    including a slice that was all zero and so skipped."""
    adapters = [11, 12, 13, 14]
    wrapper = _wrapper(adapters)
    a, b = _weights(3, zero_slices=(2,))
    x = torch.randn(4, HIDDEN)
    wrapper.add_lora_linear(torch.zeros(4, sum(SLICES)), x, a, b, 1.0, SLICES)
    new_a, new_b = _weights(4)
    for s in range(len(SLICES)):
        a[s][1].copy_(new_a[s][1])
        b[s][1].copy_(new_b[s][1])
    y = torch.zeros(4, sum(SLICES))
    wrapper.add_lora_linear(y, x, a, b, 1.0, SLICES)
    torch.testing.assert_close(y, _reference(torch.zeros(4, sum(SLICES)), x, a, b, [0, 1, 2, 3]), rtol=1e-4, atol=1e-4)


def test_mapping_change_reroutes() -> None:
    wrapper = _wrapper([11, 11, 11])
    a, b = _weights(5)
    x = torch.randn(3, HIDDEN)
    wrapper.add_lora_linear(torch.zeros(3, sum(SLICES)), x, a, b, 1.0, SLICES)
    wrapper.update_metadata(LoRAMapping((13, 0, 12), (13, 0, 12), is_prefill=True), list(LORA_IDS), SLOTS, 1000)
    y = torch.zeros(3, sum(SLICES))
    wrapper.add_lora_linear(y, x, a, b, 1.0, SLICES)
    torch.testing.assert_close(y, _reference(torch.zeros(3, sum(SLICES)), x, a, b, [2, -1, 1]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("adapters", CASES.values(), ids=CASES.keys())
def test_add_shrink_then_add_expand_match_the_reference(adapters: list[int]) -> None:
    """The slice-by-slice entry points (used by vLLM's fully sharded layers) agree too."""
    wrapper = _wrapper(adapters)
    a, b = _weights(6, zero_slices=(1,))
    x, y = torch.randn(len(adapters), HIDDEN), torch.randn(len(adapters), sum(SLICES))
    slots = [LORA_IDS.index(i) if i > 0 else -1 for i in adapters]
    expected = _reference(y, x, a, b, slots)
    buffers = tuple(torch.full((len(adapters), RANK), 7.0) for _ in SLICES)  # overwritten by shrink
    wrapper.add_shrink(buffers, x, a, 1.0)
    wrapper.add_expand(y, buffers, b, SLICES, add_inputs=True)
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)
