"""Which generator replica serves a request: adapters stay warm where they were loaded.

Every generator can serve every adapter, loading it on first use and keeping the hottest few, so
the gateway sends all requests for one adapter to the same replica: the first of the healthy
replicas in that adapter's rendezvous (highest random weight) order. The order is a pure function
of the adapter and the replica addresses, the same in every gateway process; when a replica leaves,
only its adapters move (each to its next replica), and when it comes back they return. Base-model
requests go round-robin. A replica that refuses before answering (RESOURCE_EXHAUSTED, UNAVAILABLE)
passes the request to the next one in the order.

The replica set is the address list (``h1:p1,h2:p2``), or the addresses a ``dns:///name:port``
target resolves to, re-resolved every ``refresh_s`` (a Kubernetes headless Service). Each replica
has a channel of its own and a grpc.health.v1 Watch that keeps its health current.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ragtune.generator.v1 import generator_pb2_grpc
from ragtune_common.channels import ChannelSecurity, open_channel, split_host_port, split_target

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING


def rendezvous_score(key: str, replica: str) -> int:
    """A stable pseudo-random weight of (key, replica): the same in every process and run."""
    digest = hashlib.blake2b(f"{key}\x00{replica}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous_order(key: str, replicas: Iterable[str]) -> list[str]:
    """The replicas in ``key``'s preference order (highest random weight first)."""
    return sorted(replicas, key=lambda replica: (rendezvous_score(key, replica), replica), reverse=True)


@dataclass
class Replica:
    address: str
    channel: grpc.aio.Channel
    stub: generator_pb2_grpc.GeneratorServiceStub
    status: str = "UNKNOWN"  # SERVING, NOT_SERVING, UNREACHABLE or UNKNOWN (not heard from yet)
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def usable(self) -> bool:
        return self.status in ("SERVING", "UNKNOWN")


def _dns_name(target: str) -> tuple[str, int] | None:
    """(host, port) of a ``dns:`` target, else None."""
    if not target.startswith("dns:"):
        return None
    rest = target.removeprefix("dns:").lstrip("/")
    if "/" in rest:  # dns://authority/host:port
        rest = rest.split("/", 1)[1]
    host, port = split_host_port(rest)
    return host, port


class GeneratorReplicas:
    """The generator replicas, each with its channel and its health, in routing order on demand."""

    def __init__(self, target: str, service: str, security: ChannelSecurity, refresh_s: float = 10.0) -> None:
        self._target = target
        self._service = service
        self._security = security
        self._refresh_s = refresh_s
        self._replicas: dict[str, Replica] = {}
        self._round_robin = itertools.count()
        self._resolver: asyncio.Task[None] | None = None
        self._dns = _dns_name(target.strip())
        if self._dns is None:
            for address in split_target(target):
                self._add(address)

    @property
    def replicas(self) -> list[Replica]:
        return list(self._replicas.values())

    def _add(self, address: str) -> None:
        security = self._security
        if self._dns is not None and not security.server_name:  # certificates name the Service, not pod IPs
            security = dataclasses.replace(security, server_name=self._dns[0])
        channel = open_channel(address, self._service, security, health_check=False)
        replica = Replica(address, channel, generator_pb2_grpc.GeneratorServiceStub(channel))
        self._replicas[address] = replica
        with contextlib.suppress(RuntimeError):  # no running loop yet: start() watches it
            replica.watcher = asyncio.get_running_loop().create_task(self._watch(replica))

    async def _remove(self, address: str) -> None:
        replica = self._replicas.pop(address)
        if replica.watcher is not None:
            replica.watcher.cancel()
        await replica.channel.close(grace=30)  # streams in flight finish

    async def start(self) -> None:
        for replica in self._replicas.values():
            if replica.watcher is None:
                replica.watcher = asyncio.get_running_loop().create_task(self._watch(replica))
        if self._dns is not None:
            await self._resolve()
            self._resolver = asyncio.get_running_loop().create_task(self._keep_resolving())

    async def _resolve(self) -> None:
        assert self._dns is not None
        host, port = self._dns
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            log.warning("generator replicas: cannot resolve %s: %s", host, exc)
            return
        found = set()
        for family, *_, sockaddr in infos:
            ip = str(sockaddr[0])
            found.add(f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}")
        for address in sorted(found - set(self._replicas)):
            log.info("generator replica %s joined", address)
            self._add(address)
        for address in sorted(set(self._replicas) - found):
            log.info("generator replica %s left", address)
            await self._remove(address)

    async def _keep_resolving(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            await self._resolve()

    async def _watch(self, replica: Replica) -> None:
        """Keep ``replica.status`` current from its grpc.health.v1 Watch stream; reconnect with backoff."""
        request = health_pb2.HealthCheckRequest(service=self._service)
        backoff = 0.2
        while True:
            try:
                async for reply in health_pb2_grpc.HealthStub(replica.channel).Watch(request):
                    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                    if status != replica.status:
                        log.info("generator replica %s: %s", replica.address, status)
                    replica.status = status
                    backoff = 0.2
            except grpc.aio.AioRpcError as exc:
                if replica.status != "UNREACHABLE":
                    log.warning("generator replica %s unreachable: %s", replica.address, exc.code().name)
                replica.status = "UNREACHABLE"
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def order(self, adapter_key: str | None) -> list[Replica]:
        """The replicas to try, in order: by rendezvous order of the adapter, or round-robin for the
        base model; usable (healthy or not yet heard from) replicas only, unless none is."""
        replicas: Sequence[Replica] = list(self._replicas.values())
        if not replicas:
            return []
        if adapter_key:
            ranked = rendezvous_order(adapter_key, [r.address for r in replicas])
            ordered = [self._replicas[address] for address in ranked]
        else:
            start = next(self._round_robin) % len(replicas)
            ordered = [*replicas[start:], *replicas[:start]]
        usable = [r for r in ordered if r.usable]
        return usable or ordered

    async def close(self) -> None:
        if self._resolver is not None:
            self._resolver.cancel()
        for address in list(self._replicas):
            replica = self._replicas.pop(address)
            if replica.watcher is not None:
                replica.watcher.cancel()
            await replica.channel.close()
