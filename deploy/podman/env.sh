# Sourced by the scripts in deploy/podman: podman with the project's containers.conf, and the build
# secret that lets pip inside a build trust this machine's CA bundle (a build secret is mounted for one
# RUN and stored in no layer).
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
command -v podman >/dev/null || { echo "podman is not installed (make install installs it as root)" >&2; exit 1; }
if [ -z "${CONTAINERS_CONF:-}" ]; then
  # containers.conf with its ulimits lowered to what this machine lets a process set (no CAP_SYS_RESOURCE)
  nofile="$(ulimit -Hn)"; nproc="$(ulimit -Hu)"
  [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ] && nofile=65536
  [ "$nproc" = unlimited ] || [ "$nproc" -gt 8192 ] && nproc=8192
  CONTAINERS_CONF="${TMPDIR:-/tmp}/ragtune-containers-$(id -u).conf"
  sed "s/^default_ulimits = .*/default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]/" \
    "$repo/deploy/podman/containers.conf" > "$CONTAINERS_CONF.tmp" && mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
fi
export CONTAINERS_CONF
RAGTUNE_BUILD_SECRET=""
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  RAGTUNE_BUILD_SECRET="--secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt"
fi
export RAGTUNE_BUILD_SECRET
