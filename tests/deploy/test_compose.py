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


DOCKERFILES = {
    "gateway": "gateway/Dockerfile",
    "retriever": "services/retriever/Dockerfile",
    "generator": "services/generator/Dockerfile",
    "trainer": "services/trainer/Dockerfile",
}
# what each image writes at run time; everything else is read-only (as in deploy/kubernetes)
WRITABLE_PATHS = {"/var/lib/ragtune", "/home/ragtune", "/tmp"}


def test_build_context_keeps_out_environments_state_caches_and_secrets() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    patterns.discard("")
    for required in ("**/.venv", "**/.ragtune", ".git", "**/__pycache__", "**/.mypy_cache", "**/.pytest_cache"):
        assert required in patterns, f".dockerignore lacks {required}"
    for secret in ("**/.env", "**/credentials.json", "**/service-token", "**/*.pem", "**/*.key"):
        assert secret in patterns, f".dockerignore lets {secret} into the build context"
    assert "bench/results" in patterns and "services/common/ragtune" in patterns
    assert not [p for p in patterns if p.startswith("!")], "no exception re-admits an ignored path"


def test_images_take_their_base_and_torch_index_as_build_arguments_and_no_secret() -> None:
    for name, path in DOCKERFILES.items():
        text = (ROOT / path).read_text()
        assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M), name
        assert re.findall(r"^FROM (\S+)", text, re.M)[:2] == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"], name
        # a package index appears only as an ARG default, never hard-wired into a RUN
        for line in re.findall(r"^(?!ARG ).*download\.pytorch\.org.*$", text, re.M):
            assert line.startswith("#"), f"{name}: torch index hard-wired: {line}"
        if name != "gateway":
            assert re.search(r"^ARG TORCH_INDEX=https://download\.pytorch\.org/whl/cpu$", text, re.M), name
            assert '--index-url "$TORCH_INDEX"' in text, name
        else:
            assert "torch" not in text.replace("No torch", ""), "the gateway installs no torch"
        # the CA bundle for a TLS-intercepting proxy is a build secret, mounted for one RUN, in no layer
        for run in re.findall(r"^RUN .*?(?<!\\)$", text, re.M | re.S):
            if "pip install" in run and "--no-deps --no-build-isolation" not in run:
                assert "--mount=type=secret,id=pip-ca" in run, f"{name}: a pip install without the CA secret"
        assert not re.search(r"^(ENV|ARG)\s.*(PASSWORD|SERVICE_TOKEN|ADMIN_KEY|SECRET)\w*=", text, re.M), name
        assert re.search(r"^USER 10001:10001$", text, re.M), f"{name}: not the non-root uid the manifests use"
        assert re.search(r"^HEALTHCHECK ", text, re.M), name


def test_services_run_read_only_with_declared_writable_paths() -> None:
    services = load_compose()["services"]
    for name, service in services.items():
        if name == "postgres":
            continue
        assert service.get("read_only") is True, f"{name}: root filesystem writable"
        tmpfs = set(service.get("tmpfs") or [])
        volumes = {v.split(":")[-1] for v in service.get("volumes") or []}
        # a tmpfs over a directory of the image is root-owned under podman: only /tmp (1777) may be one
        assert tmpfs == {"/tmp"}, f"{name}: tmpfs {sorted(tmpfs)}"
        assert tmpfs | volumes == WRITABLE_PATHS, f"{name}: writable {sorted(tmpfs | volumes)}"
        assert service["restart"] == "unless-stopped", name


def test_compose_tags_are_the_images_kubernetes_runs() -> None:
    services = load_compose()["services"]
    tags = {name: service["image"] for name, service in services.items() if "build" in service}
    assert tags == {
        "retriever": "ragtune/retriever:0.1.0",
        "generator": "ragtune/generator:0.1.0-gpu",
        "generator-cpu": "ragtune/generator:0.1.0-cpu",
        "trainer": "ragtune/trainer:0.1.0",
        "gateway": "ragtune/gateway:0.1.0",
    }
    for name in tags:
        args = services[name]["build"]["args"]
        assert args["PYTHON_IMAGE"] == "${PYTHON_IMAGE:-python:3.11-slim}", name
        assert args["TORCH_INDEX"].startswith("${TORCH_INDEX:-"), name


def test_generators_get_shared_memory_for_vllm() -> None:
    services = load_compose()["services"]
    for name in ("generator", "generator-cpu"):
        assert services[name]["shm_size"] == "1gb", f"{name}: /dev/shm stays 64 MiB and vLLM refuses to start"
