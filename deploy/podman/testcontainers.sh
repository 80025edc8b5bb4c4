#!/usr/bin/env bash
# Runs tests with their PostgreSQL in a container started by testcontainers, as the design names it,
# against podman's Docker-compatible API (no Docker engine here). tests/conftest.py switches to a
# container as soon as a Docker API answers; tests/fixtures/database.py asks for pgvector/pgvector:pg17,
# which no registry can supply here, so the local PostgreSQL 18 + pgvector image (base-images.sh) stands
# in under that name for the run (untagged afterwards).
#   deploy/podman/testcontainers.sh [pytest arguments]   default: the database-outage test
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=deploy/podman/env.sh
source "$here/env.sh"
cd "$repo"
bash "$here/base-images.sh"

tagged=""
stand_in=docker.io/pgvector/pgvector:pg17
if ! podman image exists "$stand_in"; then
  podman tag localhost/ragtune-base/postgres:18-pgvector "$stand_in"
  tagged=1
fi
socket_dir="$(mktemp -d)"
# (its log, without systemd here full of health-check timer errors, stays beside the socket)
podman system service --time=0 "unix://$socket_dir/podman.sock" 2>"$socket_dir/service.log" &
service_pid=$!
cleanup() {
  kill "$service_pid" 2>/dev/null || true
  wait "$service_pid" 2>/dev/null || true
  rm -rf "$socket_dir"
  [ -z "$tagged" ] || podman untag "$stand_in" "$stand_in" || true
}
trap cleanup EXIT
for _ in $(seq 50); do [ -S "$socket_dir/podman.sock" ] && break; sleep 0.2; done

export DOCKER_HOST="unix://$socket_dir/podman.sock"
# no reaper container (ryuk needs a registry image); containers are reached on the host's published port
export TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_CONNECTION_MODE=docker_host
[ $# -gt 0 ] || set -- tests/integration/common/test_lifecycle.py
"$repo/.venv/bin/python" -m pytest -q -ra -p no:cacheprovider "$@"
