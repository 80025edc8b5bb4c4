"""The gateway's fairness arithmetic (token bucket, stream slots) and its admin key rule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from ragtune_gateway.limits import KeyRateLimiter, RateLimited, StreamSlots, TokenBucket
from ragtune_gateway.settings import GatewaySettings


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert bucket.take(0.5) == 0.0
    assert bucket.take(100.0) == 0.0 and bucket.tokens == pytest.approx(2.0)  # capped at the burst


def test_rate_limiter_counts_each_key_apart_and_says_when_to_retry() -> None:
    now = [0.0]
    limiter = KeyRateLimiter(rate=0.25, burst=2, clock=lambda: now[0])
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(RateLimited) as refused:
        limiter.check("a")
    assert refused.value.retry_after_s == 4 and refused.value.response().headers["retry-after"] == "4"
    limiter.check("b")  # another key has its own bucket
    now[0] = 4.0
    limiter.check("a")
    KeyRateLimiter(rate=0, burst=1).check("a")  # 0 = off: never refuses


def test_stream_slots_are_released_once() -> None:
    slots = StreamSlots(limit=2)
    first, second = slots.acquire("k"), slots.acquire("k")
    with pytest.raises(RateLimited) as refused:
        slots.acquire("k")
    assert refused.value.code == "too_many_streams"
    slots.acquire("other")()
    first()
    first()  # a second release (the stream's end and the background task) changes nothing
    third = slots.acquire("k")
    with pytest.raises(RateLimited):
        slots.acquire("k")
    second(), third()
    assert slots.open == {}


def test_short_admin_key_is_refused_naming_the_variable_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as refused:
        GatewaySettings(admin_key=SecretStr("tiny-secret-key"))
    assert "RAGTUNE_GATEWAY_ADMIN_KEY" in str(refused.value) and "tiny-secret-key" not in str(refused.value)
    assert GatewaySettings(admin_key=SecretStr("k" * 32)).admin_key is not None
    assert GatewaySettings(admin_key=None).admin_key is None  # generated at start (make run)


def test_gateway_with_a_short_admin_key_refuses_to_start(tmp_path: Path) -> None:
    env = {**os.environ, "RAGTUNE_GATEWAY_ADMIN_KEY": "short-secret", "RAGTUNE_STATE_DIR": str(tmp_path)}
    env["RAGTUNE_GATEWAY_PORT"] = "0"
    done = subprocess.run(
        [sys.executable, "-m", "ragtune_gateway.main"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "RAGTUNE_GATEWAY_ADMIN_KEY must be at least 32 characters" in done.stderr
    assert "short-secret" not in done.stderr and "Traceback" not in done.stderr
