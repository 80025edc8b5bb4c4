"""Attention for packed rows on CPU, one example at a time.

With ``sdpa`` a packed row gets a block-diagonal causal mask, and the CPU kernels compute the whole
masked square of the row: every example pays for attention to all the others, which the mask then
throws away (two SQuAD examples in a row of 512 tokens: about twice the work of attending within
each; four short ones: four times). Given no mask, the kernels skip the blocks above the diagonal
instead. So here each example of a row (a run of position ids counting up from a restart, as the
collator packs them) goes through ``scaled_dot_product_attention`` on its own with ``is_causal``:
the work is each example's causal triangle, and the result is what the example gets alone.

Registered with transformers as the ``ragtune_segments`` implementation. Its mask function builds
no mask when there is nothing to mask beyond causality and the packing that position ids express;
a padding mask (unpacked rows) or a cache (generation) goes to transformers' ``sdpa`` as before.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

SEGMENTS = "ragtune_segments"


def segment_bounds(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, ``(start, end)`` of each run of positions counting up by one (a new run at every
    restart, as transformers' ``find_packed_sequence_indices`` reads them)."""
    rows, width = position_ids.shape
    restarts = (position_ids[:, 1:] != position_ids[:, :-1] + 1).nonzero().tolist()
    starts: list[list[int]] = [[0] for _ in range(rows)]
    for row, at in restarts:
        starts[row].append(at + 1)
    return [list(zip(s, [*s[1:], width], strict=True)) for s in starts]


def segmented_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """``(batch, heads, length, head_dim)`` in, ``(batch, length, heads, head_dim)`` out, as sdpa's."""
    position_ids = kwargs.get("position_ids")
    length = query.shape[2]
    if attention_mask is not None or length != key.shape[2] or length == 1 or not getattr(module, "is_causal", True):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    if position_ids is None:
        raise ValueError("segmented attention needs the position ids: the model did not pass them to its attention")
    gqa = query.shape[1] != key.shape[1]
    rows = []
    bounds = segment_bounds(position_ids.expand(query.shape[0], -1))
    # split and unbind, not slices: their backward is one cat / stack, not a zero-filled full-size
    # gradient per segment summed up
    for q, k, v, row in zip(query.unbind(0), key.unbind(0), value.unbind(0), bounds, strict=True):
        lengths = [end - start for start, end in row]
        parts = [
            torch.nn.functional.scaled_dot_product_attention(
                qs.unsqueeze(0),
                ks.unsqueeze(0),
                vs.unsqueeze(0),
                dropout_p=dropout,
                scale=scaling,
                is_causal=True,
                enable_gqa=gqa,
            )
            for qs, ks, vs in zip(q.split(lengths, 1), k.split(lengths, 1), v.split(lengths, 1), strict=True)
        ]
        rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
    output = torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]
    return output.transpose(1, 2).contiguous(), None


def _mask(*, attention_mask: torch.Tensor | None, **kwargs: Any) -> torch.Tensor | None:
    """No mask for rows that are causal apart from their packing; sdpa's mask for padded rows."""
    if attention_mask is None:
        return None
    mask: torch.Tensor | None = sdpa_mask(attention_mask=attention_mask, **kwargs)
    return mask


def register() -> str:
    """Registers the implementation with transformers (idempotent); returns its name."""
    AttentionInterface.register(SEGMENTS, segmented_attention)
    AttentionMaskInterface.register(SEGMENTS, _mask)
    return SEGMENTS
