"""The one way every caller opens a gRPC channel to a ragtune service.

``open_channel(target, service, security, idempotent=...)`` gives a grpc.aio channel that

- takes ``host:port``, a list ``h1:p1,h2:p2`` (one channel over every address) or ``dns:///name:port``
  (re-resolved by gRPC: the form for Kubernetes headless Services);
- balances per call with ``round_robin`` over the backends whose grpc.health.v1 status for
  ``service`` is SERVING (client-side health checking), so starting, draining and dead replicas
  are skipped;
- retries UNAVAILABLE, and nothing else, only for the methods the caller names as idempotent;
- sends ``authorization: Bearer <RAGTUNE_SERVICE_TOKEN>`` on every call, and speaks TLS (mutual
  when a client certificate is configured) when certificate paths are set.

:func:`open_sync_channel` is the same for synchronous callers, and :func:`health_status` is the
synchronous health probe of launchers, container healthchecks and benchmarks.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ragtune_common.settings import ServiceSettings

AUTHORIZATION = "authorization"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")


@dataclass(frozen=True)
class ChannelSecurity:
    """What a caller presents to the services: the shared token, and TLS material when set."""

    token: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    server_name: str | None = None

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> ChannelSecurity:
        return cls(
            token=settings.service_token.get_secret_value() if settings.service_token else None,
            cert_file=settings.tls_cert_file,
            key_file=settings.tls_key_file,
            ca_file=settings.tls_ca_file,
            server_name=settings.tls_server_name,
        )

    @property
    def tls(self) -> bool:
        return self.ca_file is not None or self.cert_file is not None

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials (client certificate included when set), or None for plaintext."""
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes() if self.ca_file else None,
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((AUTHORIZATION, f"Bearer {self.token}"),) if self.token else ()


def security_from_environment() -> ChannelSecurity:
    """For entry points without settings of their own (benchmarks, healthchecks)."""
    return ChannelSecurity.from_settings(ServiceSettings())


class HostPort(NamedTuple):
    host: str
    port: int


def split_host_port(address: str) -> HostPort:
    """``host:port`` or ``[v6]:port``; ValueError naming the address otherwise."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {address!r} is not host:port")
    return HostPort(host.removeprefix("[").removesuffix("]"), int(port))


def split_target(target: str) -> list[str]:
    """The addresses of a comma list (one item for a single address or a ``dns:`` target)."""
    target = target.strip()
    if target.startswith(SCHEMES):
        return [target]
    items = [item.strip() for item in target.split(",") if item.strip()]
    if not items:
        raise ValueError("empty gRPC target")
    return items


def _ip_addresses(host: str, port: int) -> tuple[list[str], list[str]]:
    """IPv4 and IPv6 literals for a host (``localhost`` is 127.0.0.1; names resolved once, now)."""
    if host == "localhost":
        return ["127.0.0.1"], ["::1"]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ValueError(f"cannot resolve {host!r} in an address list ({exc}); use dns:///{host}:{port}") from None
        v4 = sorted({str(info[4][0]) for info in infos if info[0] == socket.AF_INET})
        v6 = sorted({str(info[4][0]) for info in infos if info[0] == socket.AF_INET6})
        return v4, v6
    return ([str(ip)], []) if ip.version == 4 else ([], [str(ip)])


def grpc_target(target: str) -> str:
    """The target gRPC core understands: a single address or a scheme target unchanged, a comma
    list as one ``ipv4:`` (or ``ipv6:``) multi-address URI. gRPC's ipv4/ipv6 schemes take only
    literals, so host names in a list are resolved here, once; names whose addresses change
    belong in a ``dns:///`` target."""
    items = split_target(target)
    if len(items) == 1:
        if not items[0].startswith(SCHEMES):
            split_host_port(items[0])
        return items[0]
    resolved = [_ip_addresses(*split_host_port(item)) for item in items]
    ports = [split_host_port(item).port for item in items]
    if all(v4 for v4, _ in resolved):
        return "ipv4:" + ",".join(f"{ip}:{port}" for (v4, _), port in zip(resolved, ports, strict=True) for ip in v4)
    if all(v6 for _, v6 in resolved):
        return "ipv6:" + ",".join(f"[{ip}]:{port}" for (_, v6), port in zip(resolved, ports, strict=True) for ip in v6)
    raise ValueError(f"address list {target!r} mixes IPv4-only and IPv6-only hosts")


def service_config(
    service: str, idempotent: Iterable[str] = (), health_check: bool = True, max_attempts: int = 4
) -> str:
    """round_robin over healthy backends; UNAVAILABLE (only) retried for the idempotent methods."""
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if health_check:
        config["healthCheckConfig"] = {"serviceName": service}
    methods = sorted(set(idempotent))
    if methods:
        config["methodConfig"] = [
            {
                "name": [{"service": service, "method": method} for method in methods],
                "retryPolicy": {
                    "maxAttempts": max_attempts,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    return json.dumps(config)


def channel_options(
    target: str,
    service: str,
    security: ChannelSecurity,
    idempotent: Iterable[str],
    health_check: bool,
    max_message_bytes: int,
) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", service_config(service, idempotent, health_check)),
        ("grpc.enable_retries", 1),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        # Replicas that come back are reconnected quickly.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]
    if security.server_name:
        options.append(("grpc.ssl_target_name_override", security.server_name))
    elif security.tls and len(items := split_target(target)) > 1:
        # one channel, one authority: the servers' certificates are checked against the first name
        options.append(("grpc.default_authority", items[0]))
    return options


class _AioClientCallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None


def _with_token_aio(details: Any, extra: tuple[tuple[str, str], ...]) -> _AioClientCallDetails:
    metadata = grpc.aio.Metadata(*(tuple(details.metadata) if details.metadata else ()), *extra)
    return _AioClientCallDetails(details.method, details.timeout, metadata, details.credentials, details.wait_for_ready)


class _UnaryUnaryToken(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, extra: tuple[tuple[str, str], ...]) -> None:
        self._extra = extra

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_token_aio(client_call_details, self._extra), request)


class _UnaryStreamToken(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, extra: tuple[tuple[str, str], ...]) -> None:
        self._extra = extra

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_token_aio(client_call_details, self._extra), request)


class _StreamUnaryToken(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, extra: tuple[tuple[str, str], ...]) -> None:
        self._extra = extra

    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_token_aio(client_call_details, self._extra), request_iterator)


class _StreamStreamToken(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, extra: tuple[tuple[str, str], ...]) -> None:
        self._extra = extra

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_token_aio(client_call_details, self._extra), request_iterator)


def token_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors adding ``authorization: Bearer <token>`` to every call of an asyncio channel:
    one per call kind, since grpc.aio files each interceptor under the first kind it matches."""
    extra = ((AUTHORIZATION, f"Bearer {token}"),)
    return [_UnaryUnaryToken(extra), _UnaryStreamToken(extra), _StreamUnaryToken(extra), _StreamStreamToken(extra)]


def open_channel(
    target: str,
    service: str,
    security: ChannelSecurity,
    *,
    idempotent: Iterable[str] = (),
    health_check: bool = True,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> grpc.aio.Channel:
    """A grpc.aio channel to ``service`` (its full name, e.g. ``ragtune.retriever.v1.RetrieverService``)
    at ``target``. ``idempotent``: method names (``Search``) whose UNAVAILABLE is retried, on
    another replica when there is one. ``health_check=False`` for probes that must reach a server
    reporting NOT_SERVING."""
    options = channel_options(target, service, security, idempotent, health_check, max_message_bytes)
    interceptors = token_interceptors(security.token) if security.token else None
    credentials = security.channel_credentials()
    uri = grpc_target(target)
    if credentials is None:
        return grpc.aio.insecure_channel(uri, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(uri, credentials, options=options, interceptors=interceptors)


class _SyncClientCallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, str | bytes]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _SyncBearerTokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, token: str) -> None:
        self._extra = ((AUTHORIZATION, f"Bearer {token}"),)

    def _details(self, details: Any) -> _SyncClientCallDetails:
        return _SyncClientCallDetails(
            details.method,
            details.timeout,
            (*(details.metadata or ()), *self._extra),
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(client_call_details), request_iterator)


def open_sync_channel(
    target: str,
    service: str,
    security: ChannelSecurity,
    *,
    idempotent: Iterable[str] = (),
    health_check: bool = True,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> grpc.Channel:
    """:func:`open_channel` for synchronous callers."""
    options = channel_options(target, service, security, idempotent, health_check, max_message_bytes)
    credentials = security.channel_credentials()
    uri = grpc_target(target)
    channel = (
        grpc.insecure_channel(uri, options=options)
        if credentials is None
        else grpc.secure_channel(uri, credentials, options=options)
    )
    if security.token:
        return grpc.intercept_channel(channel, _SyncBearerTokenInterceptor(security.token))
    return channel


def health_status(
    target: str, security: ChannelSecurity | None = None, timeout_s: float = 1.0, service: str = ""
) -> int | None:
    """The grpc.health.v1 status of ``service`` ("" = the whole server) at ``target``, or None
    when it does not answer. Health needs no token, but speaks TLS when TLS is configured."""
    try:
        with open_sync_channel(target, service, security or ChannelSecurity(), health_check=False) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
            return int(reply.status)
    except (grpc.RpcError, ValueError):
        return None
