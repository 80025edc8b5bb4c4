"""From a batch of tokenized examples to the tensors of one training step.

Packed (the default): several examples share a row, their position ids restarting at 0 at each. The
attention backends of transformers read a restart as the start of another sequence and keep
attention inside each example (a block-diagonal causal mask for sdpa and eager, varlen kernels for
flash attention), so a packed example sees exactly what it sees alone; no attention mask is passed,
since one would switch that detection off. The first token of every example is labelled -100: it
would otherwise be the target of the previous example's last token. Examples are placed first-fit
decreasing into rows of ``row_tokens`` (or the batch's longest example, if longer), and rows end
with one padding segment (its own position ids, never a target), so padding is at most one row's
slack. Padded: one example per row, right-padded, with an attention mask. Both say how many real
(non-padding) tokens the batch holds, for the throughput the training process reports.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ragtune_trainer.masks import IGNORE_INDEX

Features = list[dict[str, list[int]]]
REAL_TOKENS = "real_tokens"  # batch key: the number of real (non-padding) tokens, never a model input


class Collator(Protocol):
    def __call__(self, features: Features) -> dict[str, torch.Tensor]: ...


def pack_rows(lengths: list[int], row_tokens: int) -> list[list[int]]:
    """Indices of ``lengths`` per row: first-fit decreasing into rows of ``max(row_tokens, longest)``."""
    capacity = max([row_tokens, *lengths])
    rows: list[list[int]] = []
    free: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, room in enumerate(free) if room >= lengths[index]), None)
        if row is None:
            rows.append([])
            free.append(capacity)
            row = len(rows) - 1
        rows[row].append(index)
        free[row] -= lengths[index]
    return rows


class PackingCollator:
    """Packed rows: ``input_ids``, ``labels`` and ``position_ids``, no attention mask."""

    def __init__(self, pad_token_id: int, row_tokens: int) -> None:
        self.pad_token_id = pad_token_id
        self.row_tokens = row_tokens

    def __call__(self, features: Features) -> dict[str, torch.Tensor]:
        rows = pack_rows([len(f["input_ids"]) for f in features], self.row_tokens)
        width = max(sum(len(features[i]["input_ids"]) for i in row) for row in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            at = 0
            for index in row:
                feature = features[index]
                n = len(feature["input_ids"])
                ids[r, at : at + n] = torch.tensor(feature["input_ids"])
                labels[r, at + 1 : at + n] = torch.tensor(feature["labels"][1:])
                positions[r, at : at + n] = torch.arange(n)
                at += n
            positions[r, at:] = torch.arange(width - at)  # the padding: a segment of its own
        real = sum(len(f["input_ids"]) for f in features)
        return {"input_ids": ids, "labels": labels, "position_ids": positions, REAL_TOKENS: torch.tensor(real)}


class PaddingCollator:
    """Right-pads a batch: pad id for inputs, -100 for labels, attention mask over real tokens."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Features) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[row, :n] = torch.tensor(feature["input_ids"])
            labels[row, :n] = torch.tensor(feature["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask, REAL_TOKENS: mask.sum()}
