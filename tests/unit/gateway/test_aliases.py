"""Alias names and the promotion rule: a significant paired improvement on the same questions, or no holder."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ragtune_gateway.errors import ApiError
from ragtune_gateway.repositories.aliases import Alias
from ragtune_gateway.schemas.aliases import PromotionComparison
from ragtune_gateway.services.aliases import check_comparison, decide, is_alias

HOLDER = Alias("t", "ft:latest-good", "ft:m:a:ftjob-1", "f1", 40.0, {}, datetime.now(UTC))


@pytest.mark.parametrize("name", ["ft:latest-good", "ft:prod", "ft:v1.2_rc-3"])
def test_alias_names(name: str) -> None:
    assert is_alias(name)


@pytest.mark.parametrize(
    "name", ["latest", "ft:", "ft:-x", "ft:SmolLM2:suffix:ftjob-1", "ft:a b", "FT:x", "ft:" + "x" * 65]
)
def test_not_alias_names(name: str) -> None:
    assert not is_alias(name), "adapter names (with more colons) and malformed names are never aliases"


def paired(value: float, low: float, high: float, level: float = 0.95) -> PromotionComparison:
    return PromotionComparison(value=value, low=low, high=high, level=level, questions=300)


def test_promotion_rule() -> None:
    candidate = "ft:m:b:ftjob-2"
    assert decide(candidate, 10.0, None, None)[0], "an alias without a holder takes any candidate"
    promoted, why = decide(candidate, 45.0, HOLDER, 40.0, paired(5.0, 1.2, 8.9))
    assert promoted and "a significant improvement: +5 (95% CI [+1.2, +8.9]" in why
    promoted, why = decide(candidate, 41.0, HOLDER, 40.0, paired(1.0, -0.8, 2.9))
    assert not promoted and "no significant improvement" in why, "a higher mean inside the noise keeps the holder"
    assert not decide(candidate, 40.0, HOLDER, 40.0, paired(0.0, 0.0, 0.0))[0], "a tie keeps the holder"
    assert not decide(candidate, 35.0, HOLDER, 40.0, paired(-5.0, -8.0, -2.0))[0]
    assert not decide(HOLDER.model, 99.0, HOLDER, 40.5)[0], "the holder cannot be promoted over itself"


def test_a_pass_rate_promotion_also_needs_the_exact_test() -> None:
    """An eval's promotion (0/1 grades) is decided as its comparison calls it: on 6 items with 3
    discordant pairs all for the candidate the bootstrap interval is above zero, but McNemar's
    exact p = 0.25 is not below 0.05, so the comparison says "no detectable difference" and the
    holder stays (it moved before: seen in the console's loop test)."""
    candidate = "ft:m:b:ftjob-2"
    noisy = PromotionComparison(value=50.0, low=16.7, high=83.3, level=0.95, questions=6, p_value=0.25)
    promoted, why = decide(candidate, 66.7, HOLDER, 16.7, noisy)
    assert not promoted and "no significant improvement" in why and "p = 0.25" in why
    clear = PromotionComparison(value=60.0, low=45.0, high=75.0, level=0.95, questions=40, p_value=0.0001)
    assert decide(candidate, 70.0, HOLDER, 10.0, clear)[0]


def test_a_promotion_over_a_holder_needs_a_coherent_comparison_at_the_level() -> None:
    with pytest.raises(ApiError) as missing:
        check_comparison(None, 0.95)
    assert missing.value.param == "comparison" and missing.value.status == 400
    with pytest.raises(ApiError) as weak:
        check_comparison(paired(5.0, 1.0, 9.0, level=0.8), 0.95)
    assert weak.value.param == "comparison.level"
    with pytest.raises(ApiError) as incoherent:
        check_comparison(paired(5.0, 6.0, 9.0), 0.95)
    assert incoherent.value.param == "comparison"
    assert check_comparison(paired(5.0, 1.0, 9.0, level=0.99), 0.95).level == 0.99
