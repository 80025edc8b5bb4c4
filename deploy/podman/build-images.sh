#!/usr/bin/env bash
# Builds ragtune's images with podman on a machine that reaches no image registry (the project's own):
# the local base images first (base-images.sh), then each image named on the command line, timing each
# build and printing its size. Names: gateway retriever trainer generator-cpu (default: all four; the
# CUDA images, generator-gpu and trainer-gpu, need a CUDA index and build like the others where one is
# reachable). Tags are the ones compose and deploy/kubernetes use (ragtune/<name>:0.1.0[-cpu|-gpu]).
#   deploy/podman/build-images.sh gateway
# torch comes from TORCH_INDEX; unset, and with this machine's local CPU wheel of torch in /opt/wheels
# (no route to download.pytorch.org here), that wheel is served as a one-package index on loopback.
# Timings and sizes are appended to ${RAGTUNE_BUILD_REPORT:-/tmp/ragtune-image-builds.tsv}.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=deploy/podman/env.sh
source "$here/env.sh"
cd "$repo"
bash "$here/base-images.sh"

PYTHON_BASE=localhost/ragtune-base/python:3.11-bookworm
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
report="${RAGTUNE_BUILD_REPORT:-/tmp/ragtune-image-builds.tsv}"
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(gateway retriever trainer generator-cpu)

index_pid=""
trap '[ -z "$index_pid" ] || kill "$index_pid" 2>/dev/null || true' EXIT
needs_torch=""
for name in "${images[@]}"; do [ "$name" = gateway ] || needs_torch=1; done
if [ -z "${TORCH_INDEX:-}" ] && [ -z "$needs_torch" ]; then
  TORCH_INDEX=https://download.pytorch.org/whl/cpu  # unused: the gateway installs no torch
elif [ -z "${TORCH_INDEX:-}" ]; then
  wheel="$(ls /opt/wheels/torch-"$TORCH_VERSION"+cpu-*.whl 2>/dev/null | head -1 || true)"
  if [ -n "$wheel" ]; then
    index="$(mktemp -d)"
    mkdir -p "$index/simple/torch" && ln -s "$wheel" "$index/simple/torch/"
    # a fixed port: the index URL is a build argument, and a new value would invalidate every cached layer
    port="${RAGTUNE_TORCH_INDEX_PORT:-58765}"
    python3 -m http.server --bind 127.0.0.1 --directory "$index" "$port" >/dev/null 2>&1 &
    index_pid=$!
    sleep 1
    kill -0 "$index_pid" 2>/dev/null || { echo "build-images: port $port is taken (set RAGTUNE_TORCH_INDEX_PORT)" >&2; exit 1; }
    TORCH_INDEX="http://127.0.0.1:$port/simple"
    echo "build-images: torch $TORCH_VERSION from the local wheel $wheel, served at $TORCH_INDEX"
  else
    TORCH_INDEX=https://download.pytorch.org/whl/cpu
  fi
fi

build() {  # name dockerfile tag [build args...]
  local name="$1" dockerfile="$2" tag="$3"; shift 3
  local start end
  start=$(date +%s)
  # --network host: the build reaches the loopback torch index; --format docker keeps HEALTHCHECK
  # shellcheck disable=SC2086
  podman build --format docker --network host $RAGTUNE_BUILD_SECRET \
    --build-arg PYTHON_IMAGE="$PYTHON_BASE" --build-arg TORCH_INDEX="$TORCH_INDEX" \
    --build-arg TORCH_VERSION="$TORCH_VERSION" "$@" -f "$dockerfile" -t "$tag" .
  end=$(date +%s)
  local size
  size="$(podman image inspect --format '{{.Size}}' "$tag")"
  printf '%s\t%s\t%ss\t%s MB\n' "$(date -u +%FT%TZ)" "$tag" "$((end - start))" "$((size / 1000000))" | tee -a "$report"
}

for name in "${images[@]}"; do
  case "$name" in
    gateway) build gateway gateway/Dockerfile ragtune/gateway:0.1.0 ;;
    retriever) build retriever services/retriever/Dockerfile ragtune/retriever:0.1.0 ;;
    trainer) build trainer services/trainer/Dockerfile ragtune/trainer:0.1.0 ;;
    trainer-gpu) build trainer-gpu services/trainer/Dockerfile ragtune/trainer:0.1.0-gpu ;;
    generator-cpu) build generator-cpu services/generator/Dockerfile ragtune/generator:0.1.0-cpu --build-arg VLLM_TARGET=cpu ;;
    generator-gpu) build generator-gpu services/generator/Dockerfile ragtune/generator:0.1.0-gpu --build-arg VLLM_TARGET=gpu ;;
    *) echo "build-images: unknown image '$name' (gateway retriever trainer trainer-gpu generator-cpu generator-gpu)" >&2; exit 2 ;;
  esac
done
