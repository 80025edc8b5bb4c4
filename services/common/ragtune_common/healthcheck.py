"""``python -m ragtune_common.healthcheck HOST:PORT``: exit 0 when the server reports SERVING.

Used by container healthchecks and readiness probes."""

from __future__ import annotations

import sys

from grpc_health.v1 import health_pb2

from ragtune_common.launcher import health_status


def main() -> int:
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    return 0 if health_status(address, timeout_s=3.0) == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
