"""Entry point: ``ragtune-gateway`` (or ``python -m ragtune_gateway.main``): uvicorn on
``RAGTUNE_GATEWAY_HOST:RAGTUNE_GATEWAY_PORT``; SIGTERM drains in-flight requests."""

from __future__ import annotations

import uvicorn
from pydantic import ValidationError

from ragtune_common.logging import configure_logging
from ragtune_gateway.app import create_app
from ragtune_gateway.settings import GatewaySettings


def main() -> None:
    try:
        settings = GatewaySettings()
    except ValidationError as exc:  # e.g. a short RAGTUNE_GATEWAY_ADMIN_KEY: refused before anything starts
        raise SystemExit(f"ragtune-gateway: invalid settings: {exc}") from None
    configure_logging(settings.log_level, settings.log_json, service="gateway")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep the logging configured above
        timeout_graceful_shutdown=int(settings.grace_period_s),
        access_log=False,
    )


if __name__ == "__main__":
    main()
