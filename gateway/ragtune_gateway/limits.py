"""Fairness between tenants: per-key request rates and concurrent streams, and per-tenant caps.

What is per process and what is global (several gateway replicas):

- The request rate (a token bucket per API key) and the concurrent streams per key are counted in
  this process's memory. Behind N replicas a key gets up to N times the configured figures (set them
  to the share of one replica). A bucket in PostgreSQL would make them global, at the price of one
  write to one hot row per request (see the README's figures).
- The per-tenant caps on active fine-tuning jobs, active evaluations and vector stores are global:
  they are counted from the shared state (the trainer's jobs, the ``gateway.evaluations`` table, the
  retriever's collections), so two replicas cannot both admit the last free place. A count read
  from the gateway's own tables is taken under a PostgreSQL advisory lock of the tenant
  (:func:`tenant_cap`). A creation made by another service (a fine-tuning job on the trainer, a
  vector store on the retriever) never holds a transaction across that call: it reserves a place in
  a short transaction (:func:`reserved_place`), counts and creates with no connection held, then
  gives the place back.

Why a reservation is enough: a creation is visible as its reservation until the place is given
back, and as the created object from before that moment on (the place is given back only after the
other service has answered). A creation that takes its place and only then counts the objects sees
every creation that took its place earlier, either way, so it admits itself only if there is room
for it beside all of them; later creations count it in turn. A place left by a gateway that died
mid-call expires after ``ttl_s``, so at worst it keeps a place taken for that long.

Counted as ``objects + others``, a creation whose object exists but whose place is not given back
yet counts twice, so a race may admit fewer than the cap (never more). A creation that names its
object before the call (a vector store: the gateway picks the collection's name) names its place
after it (``place_id``), and is counted once: the union of the objects and the other places.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from fastapi.responses import JSONResponse, StreamingResponse
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.background import BackgroundTask

from ragtune_gateway.errors import RETRY_AFTER_S, ApiError

log = logging.getLogger(__name__)

MAX_TRACKED_KEYS = 100_000  # buckets kept; the least recently used are dropped (they refill anyway)


class RateLimited(ApiError):
    """429 in the OpenAI shape with ``Retry-After`` (whole seconds, at least 1)."""

    def __init__(self, message: str, retry_after_s: float, code: str = "rate_limit_exceeded") -> None:
        super().__init__(429, message, code=code, type_="rate_limit_error")
        self.retry_after_s = max(1, math.ceil(retry_after_s))

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=429, headers={"Retry-After": str(self.retry_after_s)})


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; a request takes one."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = float(burst), now

    def take(self, now: float) -> float:
        """0 if a token was taken, else the seconds until one is there."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class KeyRateLimiter:
    """A token bucket per API key (by its hash), in this process. ``rate`` 0 turns it off."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, max(1, burst), clock
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, key_hash: str) -> None:
        """Take a token for the key, or raise :class:`RateLimited`."""
        if self.rate <= 0:
            return
        now = self.clock()
        bucket = self.buckets.get(key_hash)
        if bucket is None:
            bucket = self.buckets[key_hash] = TokenBucket(self.rate, self.burst, now)
            if len(self.buckets) > MAX_TRACKED_KEYS:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key_hash)
        wait = bucket.take(now)
        if wait > 0:
            raise RateLimited(
                f"Rate limit reached for this API key: {self.rate:g} requests per second"
                f" (bursts of {self.burst}). Retry after {math.ceil(wait)} s.",
                wait,
            )


class StreamSlots:
    """Concurrent streaming responses per API key, in this process. ``limit`` 0 turns it off."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}

    def acquire(self, key_hash: str) -> Callable[[], None]:
        """Take a slot (or raise :class:`RateLimited`); the answer releases it, once."""
        count = self.open.get(key_hash, 0)
        if self.limit > 0 and count >= self.limit:
            raise RateLimited(
                f"This API key already has {count} streams open (the limit is {self.limit}); close one or retry later.",
                1,
                code="too_many_streams",
            )
        self.open[key_hash] = count + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self.open.get(key_hash, 1) - 1
            if left > 0:
                self.open[key_hash] = left
            else:
                self.open.pop(key_hash, None)

        return release


async def release_after(events: AsyncIterator[bytes], release: Callable[[], None]) -> AsyncIterator[bytes]:
    """``events``, releasing the stream slot when they end, fail or the client goes away."""
    try:
        async for event in events:
            yield event
    finally:
        release()


def limited_stream(events: AsyncIterator[bytes], release: Callable[[], None], **kwargs: Any) -> StreamingResponse:
    """An SSE response that gives its stream slot back however it ends (the background task covers
    a stream cancelled before its first event, whose generator never ran)."""
    return StreamingResponse(
        release_after(events, release), media_type="text/event-stream", background=BackgroundTask(release), **kwargs
    )


def _cap_lock(tenant: str, kind: str) -> str:
    return f"ragtune-cap:{kind}:{tenant}"


@asynccontextmanager
async def tenant_cap(pool: AsyncConnectionPool, tenant: str, kind: str) -> AsyncIterator[AsyncConnection]:
    """Hold the tenant's advisory lock for ``kind`` (in every gateway replica) while counting and
    creating, so the count and the creation are one step. Yields the connection holding the lock.
    For counts and creations in this database only: a call to another service inside would pin the
    connection and the lock for as long as it takes (use :func:`reserved_place`)."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_cap_lock(tenant, kind),))
        yield conn


@dataclass(frozen=True)
class Reservation:
    """A place held under a tenant's cap while a creation is in flight on another service."""

    id: UUID
    other_ids: frozenset[UUID]  # the places the tenant's other creations in flight held when this one was taken
    deadline: float  # time.monotonic() before which the place surely still counts everywhere

    @property
    def others(self) -> int:
        return len(self.other_ids)

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def ensure_time_for(self, call_s: float, service: str) -> None:
        """503 if the place might lapse before a call of up to ``call_s`` ends (the count took
        so long): the creation would then no longer be counted everywhere while in flight."""
        if self.remaining_s() < call_s + 5:
            message = f"The {service} service is answering too slowly; retry later."
            raise ApiError(503, message, code="unavailable", retry_after_s=RETRY_AFTER_S)


def place_ttl_s(rpc_timeout_s: float) -> float:
    """How long a place lasts: past the counting calls and the creation's own deadline (see
    :meth:`Reservation.ensure_time_for`), and no longer if the gateway holding it dies."""
    return 3 * rpc_timeout_s + 30


async def reserve_place(
    pool: AsyncConnectionPool, tenant: str, kind: str, ttl_s: float, place_id: UUID | None = None
) -> Reservation:
    """Take a place under the tenant's cap of ``kind`` for ``ttl_s`` at most, in one short
    transaction (the tenant's advisory lock orders it with the other replicas' reservations). The
    place's id is ``place_id`` if given (one derived from the object the creation makes)."""
    place_id = place_id or uuid4()
    deadline = time.monotonic() + ttl_s  # taken before the row's own now(): it lapses no sooner than this
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_cap_lock(tenant, kind),))
        await conn.execute(
            "DELETE FROM gateway.cap_reservations WHERE tenant_id = %s AND kind = %s AND expires_at <= now()",
            (tenant, kind),
        )
        cur = await conn.execute(
            "SELECT id FROM gateway.cap_reservations WHERE tenant_id = %s AND kind = %s", (tenant, kind)
        )
        others = frozenset(row[0] for row in await cur.fetchall())
        await conn.execute(
            "INSERT INTO gateway.cap_reservations (id, tenant_id, kind, expires_at)"
            " VALUES (%s, %s, %s, now() + make_interval(secs => %s))",
            (place_id, tenant, kind, ttl_s),
        )
    return Reservation(place_id, others, deadline)


async def release_place(pool: AsyncConnectionPool, reservation: Reservation) -> None:
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM gateway.cap_reservations WHERE id = %s", (reservation.id,))


@asynccontextmanager
async def reserved_place(
    pool: AsyncConnectionPool, tenant: str, kind: str, ttl_s: float, place_id: UUID | None = None
) -> AsyncIterator[Reservation]:
    """A place under the tenant's cap, given back on exit whatever happened: count the objects
    inside (after the place was taken) and create one if ``count + others`` leaves room (or the
    union of the objects and ``other_ids``: see the module docstring). No connection is held in
    between. A place that cannot be given back (the database went away) expires by itself."""
    reservation = await reserve_place(pool, tenant, kind, ttl_s, place_id)
    try:
        yield reservation
    finally:
        try:
            await release_place(pool, reservation)
        except Exception as exc:  # never hides the creation's outcome; the place lapses at its expiry
            log.warning("cap place %s not given back (%s); it expires in %.0f s", reservation.id, exc, ttl_s)


def cap_reached(what: str, count: int, cap: int, setting: str, retry_after_s: float | None) -> ApiError:
    """429 (with ``Retry-After``) for caps that free themselves as work finishes; 409 for caps that
    only the tenant can free (by deleting something)."""
    message = f"This tenant already has {count} {what} (the limit is {cap}, {setting})."
    if retry_after_s is None:
        return ApiError(409, message + " Delete one first.", code="limit_reached")
    return RateLimited(message + " Retry when one has finished.", retry_after_s, code="limit_reached")
