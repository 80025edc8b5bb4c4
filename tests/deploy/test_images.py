"""The gateway image builds with podman and runs as compose and the Kubernetes Deployment run it.

Part of ``make test`` (the other images take too long to build on two cores: ``make test-containers``).
deploy/podman/build-images.sh builds ragtune/gateway:0.1.0 on the local Debian base image (about two
minutes on a fresh machine, seconds from the layer cache); the container then runs as uid 10001 on a
read-only root filesystem with only /tmp, /home/ragtune and /var/lib/ragtune writable, beside a local
PostgreSQL + pgvector container on a network of its own, and must answer /healthz and report the
database SERVING on /readyz. Every module of the packages it ships must import (a dependency a
pyproject forgets fails here, not in a user's container), and no secret or build-only input may be
left in it. Skips, saying why, where podman is not installed (make install installs it as root).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.podman import podman_environment

ROOT = Path(__file__).resolve().parents[2]
PODMAN_DIR = ROOT / "deploy" / "podman"
IMAGE = "ragtune/gateway:0.1.0"
POSTGRES = "localhost/ragtune-base/postgres:18-pgvector"
INSTALLED = shutil.which("podman") is not None and shutil.which("debootstrap") is not None
ENV = podman_environment() if INSTALLED else dict(os.environ)

pytestmark = pytest.mark.skipif(
    not INSTALLED,
    reason="podman and debootstrap are not installed (make install installs them as root): the image is unchecked",
)


def podman(*args: str, check: bool = True, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=ENV, text=True, capture_output=True, check=check, timeout=timeout_s)


@pytest.fixture(scope="module")
def built() -> float:
    """Builds the gateway image (and the base images it needs); returns the seconds the build took."""
    start = time.monotonic()
    result = subprocess.run(
        ["bash", str(PODMAN_DIR / "build-images.sh"), "gateway"],
        env=ENV,
        text=True,
        capture_output=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    took = time.monotonic() - start
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    print(f"\n{IMAGE}: built in {took:.0f}s, {size / 1e6:.0f} MB")
    return took


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def gateway(built: float) -> Iterator[tuple[str, str]]:
    """The gateway container, read-only, beside a PostgreSQL container: (its URL, its container name)."""
    tag = uuid.uuid4().hex[:8]
    network, database, name = f"ragtune-test-{tag}", f"ragtune-test-pg-{tag}", f"ragtune-test-gateway-{tag}"
    password, port = secrets.token_hex(12), _free_port()
    podman("network", "create", network)
    try:
        podman(
            "run", "-d", "--name", database, "--network", network, "-e", "POSTGRES_USER=ragtune",
            "-e", f"POSTGRES_PASSWORD={password}", "-e", "POSTGRES_DB=ragtune", POSTGRES,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while podman("healthcheck", "run", database, check=False).returncode != 0:
            assert time.monotonic() < deadline, podman("logs", database, check=False).stderr[-2000:]
            time.sleep(1)
        podman(
            "run", "-d", "--name", name, "--network", network, "--read-only",
            "--tmpfs", "/tmp", "-v", "/home/ragtune", "-v", "/var/lib/ragtune",  # as compose mounts them
            "-p", f"127.0.0.1:{port}:8080",
            "-e", f"DATABASE_URL=postgresql://ragtune:{password}@{database}:5432/ragtune",
            "-e", f"RAGTUNE_GATEWAY_ADMIN_KEY={secrets.token_hex(20)}",
            "-e", f"RAGTUNE_SERVICE_TOKEN={secrets.token_hex(20)}",
            "-e", "RAGTUNE_GATEWAY_RETRIEVER_ADDRESS=retriever:50051",
            "-e", "RAGTUNE_GATEWAY_GENERATOR_ADDRESS=generator:50052",
            "-e", "RAGTUNE_GATEWAY_TRAINER_ADDRESS=trainer:50053",
            IMAGE,
        )  # fmt: skip
        yield f"http://127.0.0.1:{port}", name
    finally:
        for container in (name, database):
            podman("rm", "-f", "-v", "-t", "5", container, check=False)
        podman("network", "rm", network, check=False)


def test_gateway_runs_read_only_as_uid_10001_and_reaches_its_database(gateway: tuple[str, str]) -> None:
    url, name = gateway
    deadline = time.monotonic() + 120
    while True:
        try:
            ready = httpx.get(f"{url}/readyz", timeout=5)
            break
        except httpx.HTTPError:
            logs = podman("logs", name, check=False)
            assert time.monotonic() < deadline, (logs.stdout + logs.stderr)[-3000:]
            time.sleep(1)
    assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
    # no retriever, generator or trainer here: not ready, but the database is reached and migrated
    assert ready.status_code == 503 and ready.json()["checks"]["database"] == "SERVING", ready.text
    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
    assert podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name).stdout.strip() == "true"
    assert podman("exec", name, "touch", "/opt/venv/probe", check=False).returncode != 0
    for path in ("/tmp", "/home/ragtune", "/var/lib/ragtune"):
        assert podman("exec", name, "touch", f"{path}/probe", check=False).returncode == 0, f"{path} not writable"


def test_every_shipped_module_imports(built: float) -> None:
    script = (
        "import importlib, pkgutil\n"
        "for top in ('ragtune_common', 'ragtune_eval', 'ragtune_gateway', 'ragtune'):\n"
        "    package = importlib.import_module(top)\n"
        "    for module in pkgutil.walk_packages(package.__path__, top + '.'):\n"
        "        importlib.import_module(module.name)\n"
        "print('ok')\n"
    )
    result = podman("run", "--rm", "--read-only", "--network", "none", IMAGE, "python", "-c", script, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_the_image_holds_no_secret_source_tree_or_build_tool(built: float) -> None:
    config = json.loads(podman("image", "inspect", IMAGE).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert not [e for e in config["Env"] if any(s in e for s in ("PASSWORD", "SERVICE_TOKEN", "ADMIN_KEY", "CERT"))]
    history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", IMAGE).stdout
    assert "pip-ca" not in history and "ca-certificates.crt" not in history, "the build secret left a trace"
    listing = podman(
        "run", "--rm", "--network", "none", IMAGE, "sh", "-c",
        "ls -d /src /root/.cache/pip /run/secrets/pip-ca 2>/dev/null;"
        " ls /opt/venv/bin | grep -E '^(protoc|hatchling)' ;"
        " python -c 'import grpc_tools' 2>/dev/null && echo grpc_tools; true",
    ).stdout  # fmt: skip
    assert listing.strip() == "", f"left in the runtime image: {listing}"
