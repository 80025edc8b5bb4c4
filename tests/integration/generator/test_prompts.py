"""Tokenizing a prompt runs off the event loop: other calls are served meanwhile."""

from __future__ import annotations

import asyncio
import time

from ragtune_generator.prompts import PromptRenderer


async def test_tokenizing_a_long_prompt_leaves_the_event_loop_free(base_model_dir):
    renderer = PromptRenderer(base_model_dir)
    text = "a rather long prompt made of many different words, " * 40_000  # ~2 MB: seconds of tokenizing
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        await asyncio.sleep(0.02)
        started = time.perf_counter()
        raw = await renderer.raw_ids(text)
        chat = await renderer.chat_ids([{"role": "user", "content": text}])
        took = time.perf_counter() - started
    finally:
        ticker.cancel()
        renderer.close()
    assert len(raw) > 100_000 and len(chat) > len(raw)
    assert took > 0.5, "the prompt was too short to tell"
    assert max(gaps) < took / 4, f"the event loop stalled {max(gaps):.2f} s of {took:.2f} s"


async def test_the_character_bound_never_exceeds_the_real_token_count(base_model_dir):
    renderer = PromptRenderer(base_model_dir)
    try:
        for text in ("hello world", " " * 500, "ab" * 300, "\u00e9\u00e8" * 100, "<|im_start|>" * 20):
            assert renderer.fewest_tokens(len(text)) <= len(renderer.raw(text)), text
    finally:
        renderer.close()
