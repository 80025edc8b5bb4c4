"""Entry point ``ragtune-gateway-worker`` (or ``python -m ragtune_gateway.worker``): the gateway's
background work — evaluations claimed from the queue in PostgreSQL, file batches — without serving
HTTP, for deployments that scale it apart from the replicas that serve requests (give those
``RAGTUNE_GATEWAY_EVALUATION_WORKERS=0``). It reads the same settings as the gateway. SIGTERM or
SIGINT gives its evaluations' leases back (another worker resumes them at once) and stops it."""

from __future__ import annotations

import asyncio
import logging
import signal

from pydantic import ValidationError

from ragtune_common.logging import configure_logging
from ragtune_gateway.app import create_app
from ragtune_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


async def run(settings: GatewaySettings, stop: asyncio.Event | None = None) -> None:
    """Run the background work until ``stop`` is set (default: until SIGTERM or SIGINT)."""
    app = create_app(settings)  # the harness calls its routes in-process, as a client would
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    async with app.router.lifespan_context(app):
        log.info("gateway worker running %d evaluations at a time", settings.evaluation_workers)
        await stop.wait()
        log.info("gateway worker stopping: giving its evaluations back")


def main() -> None:
    try:
        settings = GatewaySettings()
    except ValidationError as exc:
        raise SystemExit(f"ragtune-gateway-worker: invalid settings: {exc}") from None
    if settings.evaluation_workers == 0:
        raise SystemExit("ragtune-gateway-worker: RAGTUNE_GATEWAY_EVALUATION_WORKERS is 0: it would do nothing")
    configure_logging(settings.log_level, settings.log_json, service="gateway-worker")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
