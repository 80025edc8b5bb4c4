"""Token-budget batches and packed rows: every example once an epoch, in the promised number of
steps, with equal token shares; packed rows keep each example's tokens, labels and positions."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from ragtune_trainer.batching import TokenBudgetBatches, epoch_batches, evaluation_batches, split_evenly
from ragtune_trainer.collation import REAL_TOKENS, PackingCollator, PaddingCollator, pack_rows
from ragtune_trainer.cpus import cgroup_cpu_limit, usable_cpus
from ragtune_trainer.masks import IGNORE_INDEX

lengths_strategy = st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=120)


@given(lengths_strategy, st.data())
def test_split_evenly_is_a_partition_into_the_asked_number_of_runs(lengths, data):
    parts = data.draw(st.integers(min_value=1, max_value=len(lengths)))
    order = data.draw(st.permutations(range(len(lengths))))
    runs = split_evenly(order, lengths, parts)
    assert len(runs) == parts and all(runs)
    assert [i for run in runs for i in run] == list(order)


@given(lengths_strategy, st.data())
def test_each_run_ends_within_one_example_of_its_share(lengths, data):
    """A run's cut lands within half an example of its share of the running total, unless the
    runs after it need the examples (one each) or the run's first example alone overshoots."""
    parts = data.draw(st.integers(min_value=1, max_value=len(lengths)))
    runs = split_evenly(range(len(lengths)), lengths, parts)
    total, running = sum(lengths), 0
    for part, run in enumerate(runs[:-1]):
        running += sum(lengths[i] for i in run)
        goal = total * (part + 1) / parts
        nxt = lengths[runs[part + 1][0]]
        pressed = sum(len(r) for r in runs[part + 1 :]) == parts - 1 - part
        assert running + nxt / 2 > goal or pressed
        assert running - lengths[run[-1]] / 2 <= goal or len(run) == 1


def test_equal_lengths_give_equal_example_counts():
    runs = split_evenly(list(range(12)), [10] * 12, 4)
    assert [len(r) for r in runs] == [3, 3, 3, 3]


def test_batches_follow_the_tokens_not_the_example_count():
    lengths = [100, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10]  # 200 tokens in two steps
    runs = split_evenly(list(range(11)), lengths, 2)
    assert runs == [[0], list(range(1, 11))]


def test_epochs_are_seeded_and_differ():
    lengths = [5 + (i * 37) % 90 for i in range(40)]
    first = epoch_batches(lengths, 10, seed=3, epoch=0)
    assert first == epoch_batches(lengths, 10, seed=3, epoch=0)
    assert first != epoch_batches(lengths, 10, seed=3, epoch=1)
    assert sorted(i for b in first for i in b) == list(range(40))


def test_the_sampler_replays_the_epoch_it_is_set_to():
    lengths = [5 + (i * 37) % 90 for i in range(40)]
    sampler = TokenBudgetBatches(lengths, 10, seed=3)
    assert len(sampler) == 10
    sampler.set_epoch(2)
    assert list(sampler) == epoch_batches(lengths, 10, seed=3, epoch=2)


def test_length_grouping_cuts_padding():
    lengths = [5 + (i * 37) % 300 for i in range(400)]

    def padded(batches: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    grouped = epoch_batches(lengths, 50, seed=1, epoch=0, group_by_length=True)
    shuffled = epoch_batches(lengths, 50, seed=1, epoch=0)
    assert sorted(i for b in grouped for i in b) == list(range(400)) and len(grouped) == 50
    assert padded(grouped) < 0.8 * padded(shuffled)


def test_evaluation_batches_respect_the_budget():
    batches = evaluation_batches([30, 10, 500, 20, 40], budget_tokens=60)
    assert batches == [[1, 3, 0], [4], [2]]


@given(st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=40), st.integers(16, 512))
def test_rows_hold_every_example_within_capacity(lengths, row_tokens):
    rows = pack_rows(lengths, row_tokens)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    capacity = max(row_tokens, *lengths)
    assert all(sum(lengths[i] for i in row) <= capacity for row in rows)


def _feature(ids: list[int], trained_from: int) -> dict[str, list[int]]:
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * trained_from + ids[trained_from:]}


def test_packed_rows_keep_tokens_labels_and_restart_positions():
    features = [_feature([1, 2, 3, 4], 2), _feature([5, 6, 7], 0), _feature([8, 9], 1)]
    batch = PackingCollator(pad_token_id=0, row_tokens=16)(features)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9]]
    # an example's first token is never a target: it would be predicted from the previous example
    assert batch["labels"].tolist() == [[-100, -100, 3, 4, -100, 6, 7, -100, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1]]
    assert "attention_mask" not in batch and int(batch[REAL_TOKENS]) == 9


def test_packed_rows_end_in_a_padding_segment_of_their_own():
    features = [_feature([1, 2, 3, 4, 5], 1), _feature([6, 7, 8], 1), _feature([9, 10], 1)]
    batch = PackingCollator(pad_token_id=0, row_tokens=5)(features)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 0, 1]]
    features[2] = _feature([9, 10, 11], 1)  # no longer fits beside [6, 7, 8]
    batch = PackingCollator(pad_token_id=0, row_tokens=4)(features)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 0, 0], [9, 10, 11, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 0, 1], [0, 1, 2, 0, 1]]
    assert (batch["labels"][batch["input_ids"] == 0] == IGNORE_INDEX).all()
    assert int(batch[REAL_TOKENS]) == 11


def test_padding_collator_masks_the_padding():
    batch = PaddingCollator(pad_token_id=0)([_feature([1, 2, 3], 1), _feature([4], 0)])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 1], [1, 0, 0]]))
    assert int(batch[REAL_TOKENS]) == 4


def test_cpu_quota_caps_the_threads(tmp_path):
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert cgroup_cpu_limit(quota) == 2
    assert 1 <= usable_cpus(quota) <= 2
    quota.write_text("max 100000\n")
    assert cgroup_cpu_limit(quota) is None
    assert cgroup_cpu_limit(tmp_path / "absent") is None
