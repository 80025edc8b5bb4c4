#!/usr/bin/env bash
# `docker compose` for machines without a Docker engine: docker-compose.yml run by podman-compose with the
# project's podman settings (env.sh) and the local base images (base-images.sh, build-images.sh).
#
#   deploy/podman/compose.sh up [cpu|gpu]   build the images that are missing, create the profile's
#                                           containers, start each once those it depends on are healthy,
#                                           return when the gateway is healthy
#   deploy/podman/compose.sh health SERVICE [TIMEOUT_S]   wait until SERVICE's container is healthy
#   deploy/podman/compose.sh down           remove containers, network and volumes
#   deploy/podman/compose.sh ARGS...        anything else goes to podman-compose as is (ps, logs SERVICE, ...)
#
# Why the start is staged here: podman-compose leaves `depends_on: condition: service_healthy` to
# `podman wait --condition=healthy`, which podman < 4.6 lacks (Debian 12 has 4.3), and without systemd
# nothing runs the health checks on a timer; so this script runs `podman healthcheck run` itself.
# The secrets come from the environment or ./.env (POSTGRES_PASSWORD, RAGTUNE_ADMIN_KEY,
# RAGTUNE_SERVICE_TOKEN), as for docker compose.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=deploy/podman/env.sh
source "$here/env.sh"
cd "$repo"
export POSTGRES_IMAGE="${POSTGRES_IMAGE:-localhost/ragtune-base/postgres:18-pgvector}"
export PYTHON_IMAGE="${PYTHON_IMAGE:-localhost/ragtune-base/python:3.11-bookworm}"
PROFILE="${RAGTUNE_COMPOSE_PROFILE:-cpu}"
PODMAN_COMPOSE="${PODMAN_COMPOSE:-$(command -v podman-compose || echo "$repo/.venv/bin/podman-compose")}"

compose() { "$PODMAN_COMPOSE" --profile "$PROFILE" "$@"; }

container_of() {  # the container of a compose service
  podman ps -a --filter label=com.docker.compose.project=ragtune \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -1
}

health() {  # SERVICE [TIMEOUT_S]: run its health check until it passes
  local service="$1" timeout="${2:-600}" name start
  name="$(container_of "$service")"
  [ -n "$name" ] || { echo "compose.sh: no container for service $service" >&2; return 1; }
  start=$(date +%s)
  until podman healthcheck run "$name" >/dev/null 2>&1; do
    if [ $(($(date +%s) - start)) -ge "$timeout" ]; then
      echo "compose.sh: $service not healthy after ${timeout}s; its last log lines:" >&2
      podman logs --tail 30 "$name" >&2 || true
      return 1
    fi
    sleep 3
  done
  echo "compose.sh: $service healthy after $(($(date +%s) - start))s"
}

up() {
  local generator=generator-cpu build=(gateway retriever trainer generator-cpu)
  if [ "$PROFILE" = gpu ]; then generator=generator; build=(gateway retriever trainer generator-gpu); fi
  local missing=() image
  for image in "${build[@]}"; do
    case "$image" in
      generator-cpu) tag=ragtune/generator:0.1.0-cpu ;;
      generator-gpu) tag=ragtune/generator:0.1.0-gpu ;;
      *) tag="ragtune/$image:0.1.0" ;;
    esac
    podman image exists "$tag" || missing+=("$image")
  done
  bash "$here/base-images.sh"
  [ ${#missing[@]} -eq 0 ] || bash "$here/build-images.sh" "${missing[@]}"
  compose up --no-build --no-start
  # depends_on, stage by stage: postgres; retriever and the generator; trainer; gateway
  local stage service
  for stage in "postgres" "retriever $generator" "trainer" "gateway"; do
    for service in $stage; do podman start "$(container_of "$service")" >/dev/null; done
    for service in $stage; do health "$service" "${RAGTUNE_START_TIMEOUT_S:-900}"; done
  done
}

case "${1:-}" in
  up) PROFILE="${2:-$PROFILE}"; up ;;
  health) shift; health "$@" ;;
  down) compose down --volumes --timeout 20 ;;
  *) compose "$@" ;;
esac
