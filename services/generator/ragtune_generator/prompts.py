"""Prompt token ids: chat messages rendered with the model's own chat template, or raw text.

Tokenizing is CPU work that grows with the prompt, so requests tokenize on a worker thread (the
tokenizers library releases the GIL), never on the event loop that serves every other call; one
thread, because a tokenizer object is not meant to be used by several threads at once. A text
longer than the context could hold even at the vocabulary's longest token is refused before any
tokenizing at all.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


class PromptRenderer:
    def __init__(self, model_path: Path) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(model_path))
        # A token's text never has more characters than its vocabulary entry (byte-level BPE: one
        # entry character per byte; added tokens: their literal text), so this bounds characters/token.
        self.max_token_chars = max(map(len, self.tokenizer.get_vocab())) or 1
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenizer")

    def chat(self, messages: list[dict[str, str]]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)

    def raw(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def fewest_tokens(self, text_chars: int) -> int:
        """A lower bound on the tokens of a text of ``text_chars`` characters."""
        return -(-text_chars // self.max_token_chars)

    async def chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return await asyncio.get_running_loop().run_in_executor(self._worker, self.chat, messages)

    async def raw_ids(self, prompt: str) -> list[int]:
        return await asyncio.get_running_loop().run_in_executor(self._worker, self.raw, prompt)

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
