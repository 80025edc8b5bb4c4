"""deploy/kubernetes renders, validates against the Kubernetes schemas offline, and keeps its promises.

No cluster and no kustomize binary here: every profile is rendered with deploy/render_kustomize.py (a
documented Kustomize subset; compared with ``kubectl kustomize`` where kubectl exists), each object is
validated against the bundled schemas of Kubernetes 1.30 and of the newest release kubernetes-validate
knows (strict: unknown fields fail), and the properties the design relies on are asserted: headless gRPC
Services with dns:/// callers, gRPC probes, HPAs, PDBs, NetworkPolicy reachability, secrets, the shared
adapter store, non-root pods, GPU scheduling.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
PROFILES = ("cpu", "gpu")
SCHEMA_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
# object counts per kind, per profile (the report of issue 11 quotes them)
EXPECTED_COUNTS = {
    profile: {
        "ConfigMap": 1,
        "Deployment": 4,
        "HorizontalPodAutoscaler": 2,
        "Namespace": 1,
        "NetworkPolicy": 2,
        "PersistentVolumeClaim": 1,
        "PodDisruptionBudget": 4,
        "Service": 4,
        "ServiceAccount": 1,
    }
    for profile in PROFILES
}
GRPC_PORTS = {"retriever": 50051, "generator": 50052, "trainer": 50053}
DOCKERFILES = {
    "ragtune/retriever": "services/retriever/Dockerfile",
    "ragtune/generator": "services/generator/Dockerfile",
    "ragtune/trainer": "services/trainer/Dockerfile",
    "ragtune/gateway": "gateway/Dockerfile",
}
SECRET_ENV = {"DATABASE_URL", "RAGTUNE_SERVICE_TOKEN", "RAGTUNE_GATEWAY_ADMIN_KEY"}
SETTINGS = {
    "ragtune-retriever": ("ragtune_retriever.settings", "RetrieverSettings"),
    "ragtune-generator": ("ragtune_generator.settings", "GeneratorSettings"),
    "ragtune-trainer": ("ragtune_trainer.settings", "TrainerSettings"),
    "ragtune-gateway": ("ragtune_gateway.settings", "GatewaySettings"),
}

_spec = importlib.util.spec_from_file_location("render_kustomize", ROOT / "deploy" / "render_kustomize.py")
assert _spec and _spec.loader
renderer = importlib.util.module_from_spec(_spec)
sys.modules["render_kustomize"] = renderer
_spec.loader.exec_module(renderer)

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    return {profile: renderer.render(KUBE / profile) for profile in PROFILES}


def of_kind(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def container(deployment: Obj) -> Obj:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_of(deployment: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container(deployment).get("env", [])}


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (an empty selector selects everything)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pod_labels(deployment: Obj) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def test_rendered_object_counts_per_profile(rendered: dict[str, list[Obj]]) -> None:
    for profile, objects in rendered.items():
        counts = renderer.count_by_kind(objects)
        print(f"{profile}: {len(objects)} objects {counts}")
        assert counts == EXPECTED_COUNTS[profile], profile


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(rendered: dict[str, list[Obj]], version: str) -> None:
    assert tuple(int(x) for x in version.split(".")[:2]) >= (1, 30)
    extra = renderer.render(KUBE / "secrets" / "example")
    for profile, objects in [*rendered.items(), ("secrets/example", extra)]:
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{profile}: {obj['kind']}/{obj['metadata']['name']} invalid at {path}: {exc.message}")


def test_the_validator_rejects_a_broken_deployment(rendered: dict[str, list[Obj]]) -> None:
    broken = copy.deepcopy(of_kind(rendered["cpu"], "Deployment")["ragtune-retriever"])
    container(broken)["ports"][0]["containerPort"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, SCHEMA_VERSIONS[0], strict=True)
    typo = copy.deepcopy(of_kind(rendered["cpu"], "Deployment")["ragtune-retriever"])
    container(typo)["readinessProbe"]["grcp"] = {"port": 50051}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, SCHEMA_VERSIONS[0], strict=True)


def test_cloudnativepg_example_runs_pgvector(rendered: dict[str, list[Obj]]) -> None:
    # The Cluster kind is a CloudNativePG CRD, absent from the core schemas kubernetes-validate bundles,
    # and the CRD is not vendored here: its schema is not checked, only what ragtune relies on.
    for objects in rendered.values():
        assert not [o for o in objects if o["apiVersion"].startswith("postgresql.cnpg.io")], "PostgreSQL is external"
    (cluster,) = renderer.render(KUBE / "postgres-cnpg")
    assert (cluster["apiVersion"], cluster["kind"]) == ("postgresql.cnpg.io/v1", "Cluster")
    assert cluster["metadata"]["namespace"] == "ragtune"
    spec = cluster["spec"]
    assert isinstance(spec["instances"], int) and spec["instances"] >= 2
    assert re.fullmatch(r"ghcr\.io/cloudnative-pg/postgresql:\d+\.\d+-standard-\w+", spec["imageName"])
    assert "CREATE EXTENSION IF NOT EXISTS vector" in spec["bootstrap"]["initdb"]["postInitApplicationSQL"]
    assert spec["bootstrap"]["initdb"]["database"] == "ragtune"


def test_secrets_are_referenced_never_inlined_and_exist_in_the_example(rendered: dict[str, list[Obj]]) -> None:
    (secret,) = renderer.render(KUBE / "secrets" / "example")
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "ragtune-secrets"
    assert all("CHANGE-ME" in value for value in secret["stringData"].values()), "placeholders only"
    for objects in rendered.values():
        assert not of_kind(objects, "Secret"), "profiles ship no secret values"
        for name, deployment in of_kind(objects, "Deployment").items():
            env = env_of(deployment)
            for required in ("DATABASE_URL", "RAGTUNE_SERVICE_TOKEN"):
                assert required in env, f"{name} lacks {required}"
            for var in env.values():
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if var["name"] in SECRET_ENV:
                    assert ref and "value" not in var, f"{name}: {var['name']} must come from a secret"
                if ref:
                    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
        assert "RAGTUNE_GATEWAY_ADMIN_KEY" in env_of(of_kind(objects, "Deployment")["ragtune-gateway"])


def test_hpas_scale_existing_deployments_that_request_cpu(rendered: dict[str, list[Obj]]) -> None:
    for objects in rendered.values():
        hpas, deployments = of_kind(objects, "HorizontalPodAutoscaler"), of_kind(objects, "Deployment")
        assert set(hpas) == {"ragtune-retriever", "ragtune-gateway"}
        for hpa in hpas.values():
            assert hpa["apiVersion"] == "autoscaling/v2"
            ref = hpa["spec"]["scaleTargetRef"]
            assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment")
            target = deployments[ref["name"]]
            assert "replicas" not in target["spec"], "the HPA owns the replica count"
            assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
            assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
            assert container(target)["resources"]["requests"]["cpu"], "utilization needs a cpu request"


def test_grpc_services_are_headless_and_reach_the_grpc_port(rendered: dict[str, list[Obj]]) -> None:
    for objects in rendered.values():
        services, deployments = of_kind(objects, "Service"), of_kind(objects, "Deployment")
        for name, port in GRPC_PORTS.items():
            service, deployment = services[f"ragtune-{name}"], deployments[f"ragtune-{name}"]
            assert service["spec"]["clusterIP"] == "None", f"{name}: a ClusterIP balances per connection"
            assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(deployment))
            (service_port,) = service["spec"]["ports"]
            named = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
            assert service_port["port"] == port == named[service_port["targetPort"]]


def test_callers_use_dns_targets_of_headless_services(rendered: dict[str, list[Obj]]) -> None:
    for objects in rendered.values():
        services = of_kind(objects, "Service")
        addresses = {
            var["name"]: var["value"]
            for deployment in of_kind(objects, "Deployment").values()
            for var in container(deployment).get("env", [])
            if var["name"].endswith("_ADDRESS")
        }
        assert {f"RAGTUNE_GATEWAY_{s.upper()}_ADDRESS" for s in GRPC_PORTS} <= set(addresses)
        assert {"RAGTUNE_TRAINER_GENERATOR_ADDRESS", "RAGTUNE_TRAINER_RETRIEVER_ADDRESS"} <= set(addresses)
        for var, value in addresses.items():
            match = re.fullmatch(r"dns:///([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)", value)
            assert match, f"{var}={value} is not a dns:/// target"
            service = services[match[1]]
            assert service["metadata"]["namespace"] == match[2] and service["spec"]["clusterIP"] == "None"
            assert int(match[3]) in [p["port"] for p in service["spec"]["ports"]]


def test_probes_use_grpc_health_and_the_gateway_http_endpoints(rendered: dict[str, list[Obj]]) -> None:
    for objects in rendered.values():
        deployments = of_kind(objects, "Deployment")
        for name, port in GRPC_PORTS.items():
            c = container(deployments[f"ragtune-{name}"])
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert c[probe]["grpc"] == {"port": port}, f"{name} {probe}"
                assert not {"httpGet", "exec", "tcpSocket"} & set(c[probe])
        gateway = container(deployments["ragtune-gateway"])
        assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert {"name": "http", "containerPort": 8080} in gateway["ports"]


def test_every_deployment_has_a_pdb_selecting_exactly_its_pods(rendered: dict[str, list[Obj]]) -> None:
    for objects in rendered.values():
        deployments = of_kind(objects, "Deployment")
        covered = []
        for pdb in of_kind(objects, "PodDisruptionBudget").values():
            hits = [n for n, d in deployments.items() if selects(pdb["spec"]["selector"], pod_labels(d))]
            assert len(hits) == 1, f"{pdb['metadata']['name']} selects {hits}"
            assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable")
            covered += hits
        assert sorted(covered) == sorted(deployments)


def ingress_allowed(objects: list[Obj], src: tuple[str, dict[str, str]], dst: str, port: int) -> bool:
    """NetworkPolicy semantics for TCP ingress from a pod (namespace, labels) to a Deployment's pods."""
    dst_labels, dst_ns = pod_labels(of_kind(objects, "Deployment")[dst]), "ragtune"
    src_ns, src_labels = src
    ns_labels = {src_ns: {"kubernetes.io/metadata.name": src_ns}}  # the label the API server sets
    for name, namespace in of_kind(objects, "Namespace").items():
        ns_labels[name] = {"kubernetes.io/metadata.name": name, **namespace["metadata"].get("labels", {})}
    policies = [
        p
        for p in of_kind(objects, "NetworkPolicy").values()
        if p["metadata"]["namespace"] == dst_ns
        and "Ingress" in p["spec"]["policyTypes"]
        and selects(p["spec"]["podSelector"], dst_labels)
    ]
    if not policies:
        return True

    def peer_matches(peer: Obj) -> bool:
        if "namespaceSelector" in peer:
            in_namespace = selects(peer["namespaceSelector"], ns_labels.get(src_ns, {}))
        else:
            in_namespace = src_ns == dst_ns
        return in_namespace and selects(peer.get("podSelector", {}), src_labels)

    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            port_ok = "ports" not in rule or any(p.get("port") == port for p in rule["ports"])
            peer_ok = "from" not in rule or any(peer_matches(peer) for peer in rule["from"])
            if port_ok and peer_ok:
                return True
    return False


def test_network_policy_lets_only_gateway_and_trainer_reach_grpc(rendered: dict[str, list[Obj]]) -> None:
    for objects in rendered.values():
        deployments = of_kind(objects, "Deployment")

        def pod(name: str, deployments: dict[str, Obj] = deployments) -> tuple[str, dict[str, str]]:
            return "ragtune", pod_labels(deployments[f"ragtune-{name}"])

        prometheus = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
        stranger = ("ragtune", {"app": "debug-shell"})
        for name, port in GRPC_PORTS.items():
            dst = f"ragtune-{name}"
            assert ingress_allowed(objects, pod("gateway"), dst, port)
            assert ingress_allowed(objects, pod("trainer"), dst, port)
            assert not ingress_allowed(objects, pod("retriever" if name != "retriever" else "generator"), dst, port)
            assert not ingress_allowed(objects, stranger, dst, port)
            assert not ingress_allowed(objects, ("other", pod("gateway")[1]), dst, port), "same labels, other ns"
            assert not ingress_allowed(objects, prometheus, dst, port)
            assert ingress_allowed(objects, prometheus, dst, 9090)
            assert not ingress_allowed(objects, stranger, dst, 9090)
        assert ingress_allowed(objects, stranger, "ragtune-gateway", 8080)
        assert not ingress_allowed(objects, stranger, "ragtune-gateway", 9090)


def test_services_bind_all_interfaces_and_expose_metrics(rendered: dict[str, list[Obj]]) -> None:
    for objects in rendered.values():
        deployments = of_kind(objects, "Deployment")
        for name, port in [*GRPC_PORTS.items(), ("gateway", 8080)]:
            deployment, prefix = deployments[f"ragtune-{name}"], f"RAGTUNE_{name.upper()}_"
            env = {k: v.get("value") for k, v in env_of(deployment).items()}
            assert env[prefix + "HOST"] == "0.0.0.0" and env[prefix + "PORT"] == str(port)
            annotations = deployment["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
            metrics_port = env.get(prefix + "METRICS_PORT", str(port))
            assert annotations["prometheus.io/port"] == metrics_port
            assert int(metrics_port) in [p["containerPort"] for p in container(deployment)["ports"]]
            if name in GRPC_PORTS:
                assert metrics_port == "9090"


def test_adapter_store_is_one_rwx_volume_in_generator_and_trainer(rendered: dict[str, list[Obj]]) -> None:
    """Generators keep published adapters in the store; trainers write checkpoints and finished adapters in
    their artifacts dir, which the generators may read (an adapter root): both on the one shared volume."""
    for objects in rendered.values():
        (claim,) = of_kind(objects, "PersistentVolumeClaim").values()
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        env, mount = {}, {}
        for name in ("generator", "trainer"):
            deployment = of_kind(objects, "Deployment")[f"ragtune-{name}"]
            volumes = {
                v["name"]: v["persistentVolumeClaim"]["claimName"]
                for v in deployment["spec"]["template"]["spec"]["volumes"]
                if "persistentVolumeClaim" in v
            }
            mounts = [m["mountPath"] for m in container(deployment)["volumeMounts"] if m["name"] in volumes]
            assert list(volumes.values()) == [claim["metadata"]["name"]] and len(mounts) == 1
            env[name] = {k: v.get("value", "") for k, v in env_of(deployment).items()}
            mount[name] = mounts[0]
        artifacts = env["trainer"]["RAGTUNE_TRAINER_ARTIFACTS_DIR"]
        assert env["generator"]["RAGTUNE_ADAPTER_STORE"].startswith(mount["generator"] + "/")
        assert artifacts.startswith(mount["trainer"] + "/")
        assert mount["generator"] == mount["trainer"]
        roots = env["generator"]["RAGTUNE_GENERATOR_ADAPTER_ROOTS"].split(",")
        assert artifacts in roots, "the generators must be allowed to read what the trainers publish"


def test_pods_run_non_root_with_resources(rendered: dict[str, list[Obj]]) -> None:
    for objects in rendered.values():
        for name, deployment in of_kind(objects, "Deployment").items():
            pod = deployment["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
            assert pod["automountServiceAccountToken"] is False
            c = container(deployment)
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{name} {bound}"


def test_images_are_the_ones_the_dockerfiles_build(rendered: dict[str, list[Obj]]) -> None:
    for objects in rendered.values():
        for deployment in of_kind(objects, "Deployment").values():
            c = container(deployment)
            image, _, tag = c["image"].rpartition(":")
            dockerfile = (ROOT / DOCKERFILES[image]).read_text()
            exposed = {int(p) for p in re.findall(r"^EXPOSE (\d+)", dockerfile, re.M)}
            assert exposed <= {p["containerPort"] for p in c["ports"]}, image
            uid = deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
            assert f"--uid {uid} " in dockerfile, f"{image}: runAsUser {uid} is not the image's user"
            assert tag.startswith("0.1.0")


def test_gpu_profile_schedules_the_generator_on_nvidia_gpus(rendered: dict[str, list[Obj]]) -> None:
    gpu = of_kind(rendered["gpu"], "Deployment")
    generator = gpu["ragtune-generator"]
    pod, c = generator["spec"]["template"]["spec"], container(generator)
    assert c["image"] == "ragtune/generator:0.1.0-gpu"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "RAGTUNE_GENERATOR_GPU_MEMORY_UTILIZATION" in env_of(generator)
    for name in ("ragtune-retriever", "ragtune-gateway"):
        assert "nvidia.com/gpu" not in container(gpu[name])["resources"]["limits"], "retrieval stays on CPU"

    cpu = of_kind(rendered["cpu"], "Deployment")
    assert container(cpu["ragtune-generator"])["image"] == "ragtune/generator:0.1.0-cpu"
    assert env_of(cpu["ragtune-generator"])["RAGTUNE_GENERATOR_KV_CACHE_GIB"]["value"] == "1"
    assert "nvidia.com" not in yaml.safe_dump_all(rendered["cpu"])


def kustomize_dirs() -> Iterator[Path]:
    yield from (KUBE / p for p in PROFILES)
    yield KUBE / "secrets" / "example"
    yield KUBE / "postgres-cnpg"


def accepted_env_names(settings_class: Any) -> set[str]:
    """The environment variables a pydantic-settings class reads (its aliases, else prefix + field name)."""
    prefix = settings_class.model_config.get("env_prefix", "")
    names = set()
    for field_name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add((prefix + field_name).upper())
        else:
            choices = getattr(alias, "choices", [alias])
            names |= {choice.upper() for choice in choices if isinstance(choice, str)}
    return names


def pod_environment(objects: list[Obj], deployment: Obj, secret: Obj) -> dict[str, str]:
    """The container's environment as the kubelet would set it: envFrom ConfigMaps, then env."""
    config_maps = of_kind(objects, "ConfigMap")
    env: dict[str, str] = {}
    for source in container(deployment).get("envFrom", []):
        env |= config_maps[source["configMapRef"]["name"]]["data"]
    for var in container(deployment).get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        env[var["name"]] = secret["stringData"][ref["key"]] if ref else var["value"]
    return env


def test_pod_environment_is_what_each_service_reads(
    rendered: dict[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    (secret,) = renderer.render(KUBE / "secrets" / "example")
    for objects in rendered.values():
        for name, deployment in of_kind(objects, "Deployment").items():
            module, class_name = SETTINGS[name]
            settings_class = getattr(importlib.import_module(module), class_name)
            env = pod_environment(objects, deployment, secret)
            ours = {k for k in env if k.startswith("RAGTUNE_") or k == "DATABASE_URL"}
            unknown = ours - accepted_env_names(settings_class)
            assert not unknown, f"{name}: {sorted(unknown)} are read by no setting (a typo is silently ignored)"
            with monkeypatch.context() as patch:
                for key in [k for k in os.environ if k.startswith("RAGTUNE_") or k == "DATABASE_URL"]:
                    patch.delenv(key)
                for key, value in env.items():
                    patch.setenv(key, value)
                settings = settings_class()
            service = name.removeprefix("ragtune-")
            assert settings.host == "0.0.0.0" and settings.port == GRPC_PORTS.get(service, 8080)
            assert settings.database_url == secret["stringData"]["database-url"]
            assert settings.service_token.get_secret_value() == secret["stringData"]["service-token"]
            if service in GRPC_PORTS:
                assert settings.metrics_port == 9090
            if service == "generator":
                assert str(settings.adapter_store) == env["RAGTUNE_ADAPTER_STORE"]
            if service == "gateway":
                assert settings.admin_key.get_secret_value() == secret["stringData"]["admin-key"]
                assert settings.retriever_address.startswith("dns:///")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) not installed")
def test_renderer_agrees_with_kubectl_kustomize() -> None:
    for directory in kustomize_dirs():
        out = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True)
        expected = [o for o in yaml.safe_load_all(out.stdout) if o]
        assert renderer.render(directory) == expected, f"{directory.relative_to(ROOT)} differs from kubectl kustomize"


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n")
    (tmp_path / "kustomization.yaml").write_text("resources: [cm.yaml]\nnamePrefix: x-\n")
    with pytest.raises(renderer.KustomizeError, match="namePrefix"):
        renderer.render(tmp_path)
    patch = "patches:\n  - target: {kind: ConfigMap, name: a}\n    patch: '[{op: remove, path: /data/missing}]'\n"
    (tmp_path / "kustomization.yaml").write_text("resources: [cm.yaml]\n" + patch)
    with pytest.raises(renderer.KustomizeError, match="does not exist"):
        renderer.render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [cm.yaml]\npatches:\n  - patch: '{kind: ConfigMap, metadata: {name: b}}'\n"
    )
    with pytest.raises(renderer.KustomizeError, match="matches no object"):
        renderer.render(tmp_path)
