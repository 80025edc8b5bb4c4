"""The generator's Prometheus series, in the default registry that the service's metrics port
exports (:mod:`ragtune_common.metrics`): tokens generated (and their rate over the last
:data:`RATE_WINDOW_S`), requests generating now, adapters registered and loaded in the engine."""

from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import Counter, Gauge

RATE_WINDOW_S = 10.0

GENERATED_TOKENS = Counter("ragtune_generator_generated_tokens", "completion tokens generated")
PROMPT_TOKENS = Counter("ragtune_generator_prompt_tokens", "prompt tokens admitted")
IN_FLIGHT = Gauge("ragtune_generator_in_flight", "generation requests admitted and not finished")
LOADED_ADAPTERS = Gauge("ragtune_generator_loaded_adapters", "adapters loaded in this replica's engine")
REGISTERED_ADAPTERS = Gauge("ragtune_generator_registered_adapters", "adapters in the registry for this base model")
TOKENS_PER_SECOND = Gauge(
    "ragtune_generator_tokens_per_second", f"completion tokens per second over the last {RATE_WINDOW_S:.0f} s"
)


class TokenRate:
    """Tokens per second over a sliding window, computed when scraped."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self._window_s = window_s
        self._events: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()  # scrapes come on the metrics server's thread

    def add(self, tokens: int) -> None:
        if tokens:
            GENERATED_TOKENS.inc(tokens)
            with self._lock:
                self._events.append((time.monotonic(), tokens))

    def rate(self) -> float:
        horizon = time.monotonic() - self._window_s
        with self._lock:
            while self._events and self._events[0][0] < horizon:
                self._events.popleft()
            return sum(n for _, n in self._events) / self._window_s


TOKEN_RATE = TokenRate()
TOKENS_PER_SECOND.set_function(TOKEN_RATE.rate)
