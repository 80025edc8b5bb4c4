"""Token-budget batches: which examples each optimizer step trains on.

A job promises ``ceil(examples / batch_size)`` steps an epoch (its ``total_steps``, evaluation and
checkpoint intervals and ETA are counted in them). Each epoch is cut into exactly that many batches
of whole examples whose token totals are as equal as whole examples allow, so every step trains on
about the same number of tokens (the epoch's tokens / steps) instead of a fixed number of examples
of any length. The order is a shuffle seeded by (seed, epoch): the same after a resume. With
``group_by_length`` (padded rows, packing off) examples of similar length are put together (sorted
within windows of about 50 batches, the batches then shuffled), so rows waste little padding.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch

GROUPING_WINDOW_BATCHES = 50


def split_evenly(order: Sequence[int], lengths: Sequence[int], parts: int) -> list[list[int]]:
    """Cut ``order`` into ``parts`` consecutive non-empty runs with token totals as equal as whole
    examples allow: a run takes the next example while that example's midpoint falls within its
    share of the running total, and always leaves one example for each run after it."""
    if not 1 <= parts <= len(order):
        raise ValueError(f"cannot cut {len(order)} examples into {parts} batches")
    total = sum(lengths[i] for i in order)
    runs: list[list[int]] = []
    start, running = 0, 0
    for part in range(parts - 1):
        goal = total * (part + 1) / parts
        end = start + 1
        running += lengths[order[start]]
        last_allowed = len(order) - (parts - 1 - part)  # later runs need one example each
        while end < last_allowed and running + lengths[order[end]] / 2 <= goal:
            running += lengths[order[end]]
            end += 1
        runs.append(list(order[start:end]))
        start = end
    runs.append(list(order[start:]))
    return runs


def epoch_batches(
    lengths: Sequence[int], batches: int, seed: int, epoch: int, group_by_length: bool = False
) -> list[list[int]]:
    """The batches (lists of example indices) of one epoch."""
    rng = random.Random(f"ragtune-batches:{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not group_by_length:
        return split_evenly(order, lengths, batches)
    window = max(1, round(len(order) / batches * GROUPING_WINDOW_BATCHES))
    grouped: list[int] = []
    for start in range(0, len(order), window):
        grouped.extend(sorted(order[start : start + window], key=lambda i: lengths[i]))
    runs = split_evenly(grouped, lengths, batches)
    rng.shuffle(runs)
    return runs


class TokenBudgetBatches(torch.utils.data.Sampler[list[int]]):
    """A batch sampler over :func:`epoch_batches`; the trainer sets the epoch (also on resume)."""

    def __init__(self, lengths: Sequence[int], batches: int, seed: int, group_by_length: bool = False) -> None:
        self.lengths = list(lengths)
        self.batches = batches
        self.seed = seed
        self.group_by_length = group_by_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from epoch_batches(self.lengths, self.batches, self.seed, self.epoch, self.group_by_length)


def evaluation_batches(lengths: Sequence[int], budget_tokens: int) -> list[list[int]]:
    """Evaluation in order of length (similar lengths share a batch), each batch up to ``budget_tokens``
    (an example longer than that alone); the order does not change the token-weighted loss."""
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if current and tokens + lengths[index] > budget_tokens:
            batches.append(current)
            current, tokens = [], 0
        current.append(index)
        tokens += lengths[index]
    if current:
        batches.append(current)
    return batches
