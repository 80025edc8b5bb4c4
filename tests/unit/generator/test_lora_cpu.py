"""The grouped LoRA ops give what vLLM's own PyTorch ops give, for one adapter, several adapters
in a batch, the "no adapter" index (-1), prefill-sized and decode-sized batches."""

from __future__ import annotations

import pytest
import torch
from vllm.lora.ops.torch_ops import lora_ops

from ragtune_generator import lora_cpu

ORIGINAL = {name: getattr(lora_ops, name) for name in lora_cpu.REPLACEMENTS}
if lora_cpu._ORIGINAL:  # installed by an engine in this process: compare with vLLM's own
    ORIGINAL = dict(lora_cpu._ORIGINAL)

CASES = [
    torch.tensor([0] * 40),  # a prefill through one adapter
    torch.tensor([1, 1, 0, 0, 0, 2, 2, 1]),  # a mixed decode batch
    torch.tensor([-1, -1, 0, 0, 1, -1]),  # requests without an adapter beside others
    torch.tensor([2]),
    torch.tensor([0, 1, 2, -1] * 30),  # a mixed prefill: grouped per adapter rather than all-for-all
]


@pytest.mark.parametrize("indices", CASES)
def test_shrink(indices: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(0)
    tokens, hidden, rank = indices.shape[0], 64, 16
    inputs = torch.randn(tokens, hidden, generator=gen)
    weights = torch.randn(3, 1, rank, hidden, generator=gen)
    expected, got = torch.zeros(tokens, rank), torch.zeros(tokens, rank)
    ORIGINAL["bgmv_shrink"](inputs, weights, expected, indices, 0.5)
    lora_cpu.bgmv_shrink(inputs, weights, got, indices, 0.5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("indices", CASES)
@pytest.mark.parametrize("add_inputs", [True, False])
def test_expand_and_expand_slice(indices: torch.Tensor, add_inputs: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    tokens, rank, out = indices.shape[0], 16, 48
    inputs = torch.randn(tokens, rank, generator=gen)
    weights = torch.randn(3, 1, out, rank, generator=gen)
    start = torch.randn(tokens, out + 8, generator=gen)
    expected, got = start.clone(), start.clone()
    ORIGINAL["bgmv_expand"](inputs, weights, expected, indices, add_inputs)
    lora_cpu.bgmv_expand(inputs, weights, got, indices, add_inputs)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    sliced = torch.randn(3, 1, 8, rank, generator=gen)
    expected, got = start.clone(), start.clone()
    ORIGINAL["bgmv_expand_slice"](inputs, sliced, expected, indices, 24, 8, add_inputs)
    lora_cpu.bgmv_expand_slice(inputs, sliced, got, indices, 24, 8, add_inputs)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_installs_into_vllms_cpu_backend() -> None:
    from vllm.lora.punica_wrapper import punica_cpu

    lora_cpu.install()
    lora_cpu.install()  # vLLM may load a plugin twice
    assert lora_ops.bgmv_shrink is lora_cpu.bgmv_shrink and punica_cpu.bgmv_expand is lora_cpu.bgmv_expand
    assert lora_cpu._ORIGINAL["bgmv_shrink"] is ORIGINAL["bgmv_shrink"]
