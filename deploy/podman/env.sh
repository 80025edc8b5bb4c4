# Sourced by the scripts in deploy/podman: podman with the project's containers.conf, and the build
# secret that lets pip inside a build trust this machine's CA bundle (a build secret is mounted for one
# RUN and stored in no layer).
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$repo/deploy/podman/containers.conf}"
RAGTUNE_BUILD_SECRET=""
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  RAGTUNE_BUILD_SECRET="--secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt"
fi
export RAGTUNE_BUILD_SECRET
command -v podman >/dev/null || { echo "podman is not installed (make test-containers installs it as root)" >&2; exit 1; }
