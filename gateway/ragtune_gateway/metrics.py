"""Prometheus metrics of one gateway (its own registries, so apps in one process do not collide),
and the ASGI middleware that counts and times every request by route template.

``registry`` carries nothing that identifies a tenant (routes are templates, tokens are by kind) and
is served to anyone; ``admin_registry`` (tokens by model: fine-tuned model names are the tenant's)
is added to ``/metrics`` only for the admin key."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.admin_registry = CollectorRegistry()
        self.requests = Counter(
            "ragtune_gateway_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ragtune_gateway_request_seconds",
            "HTTP request latency, until the last byte of the response",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter("ragtune_gateway_tokens", "tokens of chat completions", ["kind"], registry=self.registry)
        self.model_tokens = Counter(
            "ragtune_gateway_model_tokens",
            "tokens of chat completions by model (admin only)",
            ["kind", "model"],
            registry=self.admin_registry,
        )
        self.retrieval_latency = Histogram(
            "ragtune_gateway_retrieval_seconds",
            "retriever search latency (RAG and vector store search)",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def count_tokens(self, model: str, prompt: int, completion: int) -> None:
        self.tokens.labels("prompt").inc(prompt)
        self.tokens.labels("completion").inc(completion)
        self.model_tokens.labels("prompt", model).inc(prompt)
        self.model_tokens.labels("completion", model).inc(completion)


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): streaming responses pass through untouched."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], name, str(status)).inc()
            self.metrics.latency.labels(scope["method"], name).observe(time.perf_counter() - start)
