"""Prometheus metrics of a gRPC service, served on its own HTTP port (``RAGTUNE_<SERVICE>_METRICS_PORT``).

Every RPC is counted by method and status code, timed, and gauged while in flight, by one server
interceptor; services add their own series (queue depth, tokens, loaded adapters) to the same
default registry, which the metrics port exports. One service per process, so module-level series.
Health checks are left out of the counts: probes would drown the traffic an autoscaler looks at.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from ragtune_common.interceptors import wrap_behavior

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_UNMEASURED_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

RPC_REQUESTS = Counter("ragtune_rpc_requests", "gRPC calls answered, by method and status code", ["method", "code"])
RPC_LATENCY = Histogram(
    "ragtune_rpc_seconds", "gRPC call latency, until the last message", ["method"], buckets=_LATENCY_BUCKETS
)
RPC_IN_FLIGHT = Gauge("ragtune_rpc_in_flight", "gRPC calls being served now", ["method"])


def _code(context: grpc.aio.ServicerContext, exc: BaseException | None) -> str:
    """The status the call ended with: what the servicer (or the error interceptor) set, else OK."""
    if exc is not None and not isinstance(exc, grpc.aio.AbortError):
        return "CANCELLED" if isinstance(exc, asyncio.CancelledError) else "UNKNOWN"
    code = context.code()
    if code is None:
        return "OK" if exc is None else "UNKNOWN"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class _Measure:
    def __init__(self, method: str) -> None:
        self.method = method
        self.start = time.perf_counter()
        RPC_IN_FLIGHT.labels(method).inc()

    def done(self, context: grpc.aio.ServicerContext, exc: BaseException | None) -> None:
        RPC_IN_FLIGHT.labels(self.method).dec()
        RPC_LATENCY.labels(self.method).observe(time.perf_counter() - self.start)
        RPC_REQUESTS.labels(self.method, _code(context, exc)).inc()


def _wrap_unary(method: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        measure, error = _Measure(method), None
        try:
            return await behavior(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            measure.done(context, error)

    return wrapped


def _wrap_stream(method: str, behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        measure, error = _Measure(method), None
        try:
            async for item in behavior(request, context):
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            measure.done(context, error)

    return wrapped


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts, times and gauges every RPC but health and reflection. Placed outermost, so it sees the
    status the error-mapping interceptor chose."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_UNMEASURED_PREFIXES):
            return handler
        return wrap_behavior(handler, method, _wrap_unary, _wrap_stream)


def serve_metrics(host: str, port: int) -> int | None:
    """Export the default registry over HTTP on ``host:port`` (0 = off). Returns the port, or None
    when off. The HTTP server runs on a daemon thread for the life of the process."""
    if not port:
        return None
    server, _thread = start_http_server(port, addr=host)
    bound = int(server.server_address[1])
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound
