"""How a distillation turns stored completions into training lines and held-out prompts: corrected
answers win, answers rated bad without a correction are left out, duplicates (same messages) merge
into one line preferring the corrected, then the latest, and the held-out prompts are a seeded,
stable choice of distinct prompts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ragtune_gateway.repositories.stored_completions import StoredRow
from ragtune_gateway.services.distillations import plan, prompt_of, reference_answer

START = datetime(2026, 1, 1, tzinfo=UTC)


def row(n: int, question: str, answer: str, *, feedback: str | None = None, correction: str | None = None) -> StoredRow:
    return StoredRow(
        id=f"chatcmpl-{n}",
        tenant_id="tn_a",
        model="base",
        requested_model="ft:support",
        adapter="",
        messages=[
            {"role": "developer", "content": "Classify."},
            {"role": "user", "content": [{"type": "text", "text": question}]},
        ],
        request={},
        choices=[{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        usage=None,
        citations=None,
        metadata={"feedback": feedback} if feedback else {},
        correction=correction,
        created_at=START + timedelta(seconds=n),
        updated_at=None,
        updated_by=None,
    )


def test_corrections_win_rejects_leave_and_duplicates_merge() -> None:
    found = [
        row(1, "lost card", "card_arrival"),
        row(2, "lost card", "lost_or_stolen_card", feedback="bad", correction="lost_or_stolen_card!"),
        row(3, "lost card", "card_arrival"),  # later, but not corrected: the corrected one wins
        row(4, "pin blocked", "nonsense", feedback="bad"),  # rejected: left out
        row(5, "top up", "top_up_failed"),
        row(6, "top up", "top_up_reverted"),  # the latest of two uncorrected
    ]
    built = plan(found, 0.0, seed=0)
    assert built.matched == 6 and built.rejected == 1 and built.holdout == []
    chosen = {g.chosen().id: reference_answer(g.chosen()) for g in built.train}
    assert chosen == {"chatcmpl-2": "lost_or_stolen_card!", "chatcmpl-6": "top_up_reverted"}
    assert prompt_of(found[0]) == [
        {"role": "system", "content": "Classify."},
        {"role": "user", "content": "lost card"},
    ]


def test_holdout_is_a_seeded_stable_share_of_distinct_prompts() -> None:
    found = [row(i, f"question {i % 20}", "a") for i in range(40)]  # 20 prompts, each twice
    first = plan(found, 0.25, seed=7)
    assert len(first.holdout) == 5 and len(first.train) == 15
    held = {g.chosen().id for g in first.holdout}
    assert held == {g.chosen().id for g in plan(found, 0.25, seed=7).holdout}, "same seed, same prompts"
    assert held != {g.chosen().id for g in plan(found, 0.25, seed=8).holdout}
    trained = {m["content"] for g in first.train for m in g.messages}
    assert not any(m["content"] in trained for g in first.holdout for m in g.messages if m["role"] == "user")
