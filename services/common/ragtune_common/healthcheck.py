"""``python -m ragtune_common.healthcheck HOST:PORT``: exit 0 when the server reports SERVING.

Used by container healthchecks and readiness probes. Health needs no service token; with
``RAGTUNE_TLS_*`` set it speaks TLS as every other caller does."""

from __future__ import annotations

import sys

from grpc_health.v1 import health_pb2

from ragtune_common.channels import health_status, security_from_environment


def main() -> int:
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    status = health_status(address, security_from_environment(), timeout_s=3.0)
    return 0 if status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
