"""Every id the gateway makes or recognises, by its prefix: one place, so nobody retypes one.

Ids are random (96 bits by default), never sequential: they reveal nothing about other tenants'
objects and cannot be guessed. Fine-tuning job ids are the trainer's (``ftjob-``)."""

from __future__ import annotations

import hashlib
import secrets

TENANT = "tn_"
API_KEY = "key_"
FILE = "file-"
VECTOR_STORE = "vs_"
FILE_BATCH = "vsfb_"
FINE_TUNING_JOB = "ftjob-"  # made by the trainer
FINE_TUNING_EVENT = "ftevent-"
FINE_TUNING_CHECKPOINT = "ftckpt-"
CHAT_COMPLETION = "chatcmpl-"
COMPLETION = "cmpl-"  # a legacy text completion
EVALUATION = "eval_"  # /v1/evaluations (ragtune's four-arm QA)
EVAL = "eval_"  # /v1/evals, the OpenAI dialect (another table: ids never meet)
EVAL_RUN = "evalrun_"
OUTPUT_ITEM = "outputitem_"
PROMOTION = "promo_"
RESPONSE = "resp_"
RESPONSE_MESSAGE = "msg_"  # an item of a response: a message in or out
FILE_SEARCH_CALL = "fs_"
DISTILLATION = "distill_"

KEY_PREFIX = "rt-"  # what every API key (the secret, not its id) starts with


def new_id(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}{secrets.token_hex(nbytes)}"


def new_key() -> str:
    """A new API key: 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """Keys are 256 random bits, so a plain sha256 is enough at rest (no dictionary to guess from)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
