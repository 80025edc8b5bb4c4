"""The gRPC server bootstrap every service uses: grpc.aio with the error-mapping interceptor,
grpc.health.v1 (NOT_SERVING until the service says it is ready, and again while draining),
reflection, message size limits, and graceful shutdown on SIGTERM/SIGINT. Callers are
authenticated by :mod:`ragtune_common.auth` (service token, loopback rule, optional mutual TLS).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ragtune_common.auth import auth_interceptors, check_bind_allowed, server_credentials
from ragtune_common.interceptors import ErrorMappingInterceptor
from ragtune_common.metrics import MetricsInterceptor, serve_metrics
from ragtune_common.settings import ServiceSettings

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class GrpcServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: tuple[str, ...]

    async def _set_all(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def set_serving(self) -> None:
        await self._set_all(SERVING)

    async def set_not_serving(self) -> None:
        await self._set_all(NOT_SERVING)

    async def stop(self, grace_s: float, notice_s: float = 0.0) -> None:
        """Drain: report NOT_SERVING and keep answering for ``notice_s`` (so health checkers and
        load balancers see it), then refuse new calls and let in-flight ones finish within grace."""
        await self.health.enter_graceful_shutdown()
        if notice_s > 0:
            await asyncio.sleep(notice_s)
        await self.server.stop(grace_s)


async def build_server(
    settings: ServiceSettings,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
) -> GrpcServer:
    """Create (not start) a server bound to settings.host:settings.port (0 = a free port), with
    health reporting NOT_SERVING until :meth:`GrpcServer.set_serving` is called. Refuses (raises
    :class:`ragtune_common.auth.InsecureBindError`) a non-loopback host without a service token."""
    check_bind_allowed(settings)
    credentials = server_credentials(settings)
    options = [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
        # callers keep health-watch streams open and ping every 30 s (channels.py)
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]
    server = grpc.aio.server(
        interceptors=[MetricsInterceptor(), *auth_interceptors(settings), ErrorMappingInterceptor()],
        options=options,
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    address = f"{settings.host}:{settings.port}"
    port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"could not bind {settings.host}:{settings.port}")
    bound = GrpcServer(server, port, health_servicer, tuple(service_names))
    await bound.set_not_serving()
    return bound


async def run_until_signal(
    bound: GrpcServer,
    settings: ServiceSettings,
    ready: Callable[[], Awaitable[None]],
    close: Callable[[], Awaitable[None]],
    fatal: asyncio.Event | None = None,
) -> int:
    """Start serving, run ``ready`` (warm models, open pools) then report SERVING; on SIGTERM or
    SIGINT report NOT_SERVING for drain_notice_s, drain within grace_period_s, then run ``close``.
    ``fatal`` (set by the service when it cannot go on) stops it the same way. Returns the exit
    status: 0 after a signal, 1 after ``fatal``."""
    stop = asyncio.Event()
    failed = fatal or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serve_metrics(settings.host, settings.metrics_port)
    await bound.server.start()
    log.info("listening on port %d (health NOT_SERVING until ready)", bound.port)
    try:
        ready_task = asyncio.ensure_future(ready())
        stop_task = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({ready_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if ready_task in done:
            ready_task.result()
            await bound.set_serving()
            log.info("SERVING %s on port %d", ", ".join(bound.service_names), bound.port)
            stopped, died = asyncio.ensure_future(stop.wait()), asyncio.ensure_future(failed.wait())
            await asyncio.wait({stopped, died}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            died.cancel()
        else:
            ready_task.cancel()
        log.info("shutting down: draining for up to %.1fs", settings.grace_period_s)
        await bound.stop(settings.grace_period_s, settings.drain_notice_s)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await close()
        log.info("stopped")
    if failed.is_set():
        log.error("stopped after a fatal error: exit status 1")
        return 1
    return 0
