"""The seeded training and held-out sets of a task evaluation.

The training set comes in *nested order*: every prefix is itself a training set, the learning
curve's smaller sizes. For classification the order goes round the labels (each label's first
example, then each label's second, ...), so a prefix of ``k x labels`` items holds ``k`` examples of
every label; the held-out set is stratified the same way. The same data, sizes and seed give the
same split; held-out items are drawn before training items, so growing the training set never
moves an item out of the held-out set."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ragtune_eval.dataset import DatasetError
from ragtune_eval.task_data import TaskData, TaskItem


@dataclass(frozen=True)
class TaskSplit:
    train: list[TaskItem]  # nested order (see the module's docstring)
    test: list[TaskItem]
    train_sample: list[TaskItem]  # training items also answered, for the train vs held-out gap
    labels: tuple[str, ...] = ()  # classification: the labels in play (all, or a seeded choice)

    def subset(self, size: int) -> list[TaskItem]:
        return self.train[:size]


def _round_robin(groups: Sequence[list[TaskItem]], count: int) -> list[TaskItem]:
    """Up to ``count`` items taken one per group in turn (groups that run out are skipped)."""
    out: list[TaskItem] = []
    depth = 0
    while len(out) < count and any(depth < len(g) for g in groups):
        out.extend(g[depth] for g in groups if depth < len(g) and len(out) < count)
        depth += 1
    return out


def _by_label(items: list[TaskItem], labels: tuple[str, ...], rng: random.Random) -> list[list[TaskItem]]:
    groups: dict[str, list[TaskItem]] = {label: [] for label in labels}
    for item in items:
        if item.target in groups:
            groups[item.target].append(item)
    for group in groups.values():
        rng.shuffle(group)
    return [groups[label] for label in labels]


def split_task(
    data: TaskData,
    train: int,
    test: int,
    seed: int,
    train_sample: int = 0,
    per_class: bool = False,
    labels: int = 0,
) -> TaskSplit:
    """``train`` training items (per label with ``per_class``), ``test`` held-out ones (from the
    data's own held-out file when it has one), ``labels``: a seeded choice of that many labels (0 =
    all); for classification both sets are stratified over the labels in play."""
    rng = random.Random(seed)
    if data.kind != "classification":
        if per_class or labels:
            raise DatasetError(f"{data.name}: per-class sizes and label subsets need a classification task")
        pool, held = list(data.items), list(data.test)
        rng.shuffle(pool)
        rng.shuffle(held)
        if not held:
            held, pool = pool[:test], pool[test:]
        if len(held) < test or len(pool) < train:
            raise DatasetError(f"{data.name}: asked for {train} train + {test} held-out items, it has fewer")
        chosen = pool[:train]
        return TaskSplit(chosen, held[:test], chosen[: min(train_sample, train)])
    in_play = data.labels
    if labels:
        if labels < 2 or labels > len(data.labels):
            raise DatasetError(f"{data.name}: choose 2 to {len(data.labels)} labels, not {labels}")
        in_play = tuple(sorted(random.Random(f"labels:{seed}").sample(list(data.labels), labels)))
    groups = _by_label(data.items, in_play, rng)
    if data.test:
        held = _round_robin(_by_label(data.test, in_play, rng), test)
    else:
        held = _round_robin(groups, test)
        taken = {item.id for item in held}
        groups = [[item for item in group if item.id not in taken] for group in groups]
    size = train * len(in_play) if per_class else train
    chosen = _round_robin(groups, size)
    if len(held) < test or len(chosen) < size:
        raise DatasetError(f"{data.name}: asked for {size} train + {test} held-out items, it has fewer")
    if per_class:
        short = [label for label, group in zip(in_play, groups, strict=True) if len(group) < train]
        if short:
            raise DatasetError(f"{data.name}: fewer than {train} training examples of {', '.join(short[:5])}")
    sample = _round_robin([[i for i in chosen if i.target == label] for label in in_play], train_sample)
    return TaskSplit(chosen, held, sample, in_play)
