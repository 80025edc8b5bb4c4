"""docker-compose.yml and the Dockerfiles parse and reference what exists (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_is_healthchecked_and_waits_for_healthy_dependencies() -> None:
    services = load_compose()["services"]
    assert "postgres" in services and "retriever" in services
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services
            assert condition == {"condition": "service_healthy"}


def test_builds_point_at_existing_multistage_nonroot_dockerfiles() -> None:
    for name, service in load_compose()["services"].items():
        if "build" not in service:
            continue
        dockerfile = ROOT / service["build"]["context"] / service["build"]["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        text = dockerfile.read_text()
        assert len(re.findall(r"^FROM ", text, re.M)) >= 2, f"{name}: not multi-stage"
        assert re.search(r"^USER (?!root)\S+", text, re.M), f"{name}: runs as root"
        for source in re.findall(r"^COPY (?!--from)(\S+) ", text, re.M):
            assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"


def test_required_variables_fail_loudly() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text
    assert not re.search(r"\$\{POSTGRES_PASSWORD(?!:\?)", text), "POSTGRES_PASSWORD used without :?"


def test_only_the_gateway_is_published_and_services_require_the_token() -> None:
    services = load_compose()["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"gateway"}, f"only the gateway may publish a port, not {published - {'gateway'}}"
    callers_and_servers = [n for n in services if n != "postgres"]
    assert {"retriever", "generator", "generator-cpu", "trainer", "gateway"} <= set(callers_and_servers)
    for name in callers_and_servers:
        environment = services[name].get("environment") or {}
        assert environment.get("RAGTUNE_SERVICE_TOKEN") == "${RAGTUNE_SERVICE_TOKEN:?set RAGTUNE_SERVICE_TOKEN}", name
