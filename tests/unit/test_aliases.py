"""Alias names and the promotion rule: strictly better on the same questions, or no holder."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ragtune_gateway.repositories.aliases import Alias
from ragtune_gateway.services.aliases import decide, is_alias

HOLDER = Alias("t", "ft:latest-good", "ft:m:a:ftjob-1", "f1", 40.0, {}, datetime.now(UTC))


@pytest.mark.parametrize("name", ["ft:latest-good", "ft:prod", "ft:v1.2_rc-3"])
def test_alias_names(name: str) -> None:
    assert is_alias(name)


@pytest.mark.parametrize(
    "name", ["latest", "ft:", "ft:-x", "ft:SmolLM2:suffix:ftjob-1", "ft:a b", "FT:x", "ft:" + "x" * 65]
)
def test_not_alias_names(name: str) -> None:
    assert not is_alias(name), "adapter names (with more colons) and malformed names are never aliases"


def test_promotion_rule() -> None:
    assert decide("ft:m:b:ftjob-2", 10.0, None, None)[0], "an alias without a holder takes any candidate"
    assert decide("ft:m:b:ftjob-2", 41.0, HOLDER, 40.5)[0]
    promoted, why = decide("ft:m:b:ftjob-2", 40.5, HOLDER, 40.5)
    assert not promoted and "does not beat" in why, "a tie keeps the holder"
    assert not decide("ft:m:b:ftjob-2", 39.0, HOLDER, 40.5)[0]
    assert not decide(HOLDER.model, 99.0, HOLDER, 40.5)[0], "the holder cannot be promoted over itself"
