"""Render a kustomization directory to YAML: a small, documented subset of Kustomize (v5), in Python.

Why this exists: ``make test`` must render every profile under deploy/kubernetes/ on any machine, and
neither a ``kustomize`` nor a ``helm`` binary is installable from the registries the project may use
(PyPI's ``pykustomize`` needs Python >= 3.14; the other ``kustomize*`` packages are wrappers that fetch
a binary at run time). Operators use the real tool (``kubectl apply -k deploy/kubernetes/cpu``); this
renderer reads the same files. Where ``kubectl`` is on the PATH, the tests compare both renderings object
by object, so the two cannot drift apart silently.

Supported kustomization fields (anything else is an error, never silently ignored):
- ``resources``: YAML files (one or more documents) and directories holding a kustomization.yaml,
  rendered first and in the order listed.
- ``namespace``: set on every namespaced object (cluster-scoped kinds such as Namespace are left alone).
- ``images``: ``name`` with ``newName`` / ``newTag`` / ``digest`` on every ``containers`` /
  ``initContainers`` image of that name.
- ``patches``: from ``path`` or inline ``patch``, with an optional ``target`` (group, version, kind, name,
  namespace). A patch that parses to a list is a JSON6902 patch (RFC 6902 ops add, remove, replace, test;
  needs a target); a mapping is a strategic merge patch (target defaults to its own kind and name): maps
  merge recursively, ``null`` deletes a key, lists with a Kubernetes merge key (containers and env by
  name, volumeMounts by mountPath, ... see MERGE_KEYS) merge by that key, new elements first as kustomize
  puts them; other lists (tolerations, args ...) are replaced.
  ``$patch`` / ``$setElementOrder`` / ``$retainKeys`` directives are rejected.

Usage: ``python deploy/render_kustomize.py deploy/kubernetes/cpu [--summary]`` prints the objects as a
YAML stream (``--summary``: their count per kind on stderr).
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
ALLOWED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
    "IngressClass",
}
# Strategic-merge keys of the list fields used in pod specs and services (Kubernetes' patchMergeKey).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "envFrom": None,
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "ports": "containerPort",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
SERVICE_PORT_KEY = "port"  # Service.spec.ports merges on port, container ports on containerPort
# Output order of kinds, as kustomize's legacy ordering puts them (others follow, by kind then name).
KIND_ORDER = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
]


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not support, or is inconsistent."""


def render(directory: Path) -> list[dict[str, Any]]:
    """Every object the kustomization in ``directory`` produces, in kustomize's legacy order."""
    return sorted(_build(Path(directory)), key=_order_key)


def _order_key(obj: dict[str, Any]) -> tuple[int, str, str]:
    kind = obj.get("kind", "")
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    return rank, kind if rank == len(KIND_ORDER) else "", obj.get("metadata", {}).get("name", "")


def _kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def _build(directory: Path) -> list[dict[str, Any]]:
    spec = yaml.safe_load(_kustomization_file(directory).read_text()) or {}
    unknown = set(spec) - ALLOWED_FIELDS
    if unknown:
        raise KustomizeError(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources") or []:
        path = directory / entry
        objects.extend(_build(path) if path.is_dir() else _load_documents(path))
    _check_unique(objects, directory)
    for patch in spec.get("patches") or []:
        _apply_patch(objects, patch, directory)
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for image in spec.get("images") or []:
        _set_image(objects, image)
    return objects


def _load_documents(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise KustomizeError(f"resource {path} does not exist")
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for doc in documents:
        if not isinstance(doc, dict) or not {"apiVersion", "kind", "metadata"} <= set(doc):
            raise KustomizeError(f"{path}: every document needs apiVersion, kind and metadata")
    return documents


def _identity(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def _check_unique(objects: list[dict[str, Any]], directory: Path) -> None:
    seen = Counter(_identity(obj) for obj in objects)
    duplicates = [identity for identity, count in seen.items() if count > 1]
    if duplicates:
        raise KustomizeError(f"{directory}: objects defined more than once: {duplicates}")


def _matches(obj: dict[str, Any], target: dict[str, Any]) -> bool:
    unknown = set(target) - {"group", "version", "kind", "name", "namespace"}
    if unknown:
        raise KustomizeError(f"unsupported patch target fields {sorted(unknown)}")
    group, _, version = obj["apiVersion"].rpartition("/")
    meta = obj.get("metadata", {})
    actual = {"group": group, "version": version, "kind": obj["kind"], "name": meta.get("name")}
    actual["namespace"] = meta.get("namespace", "")
    return all(actual[key] == value for key, value in target.items())


def _apply_patch(objects: list[dict[str, Any]], patch: dict[str, Any], directory: Path) -> None:
    if ("path" in patch) == ("patch" in patch):
        raise KustomizeError(f"{directory}: a patch needs exactly one of path or patch")
    text = (directory / patch["path"]).read_text() if "path" in patch else patch["patch"]
    body = yaml.safe_load(text)
    target = patch.get("target")
    apply_one: Callable[[dict[str, Any], Any], dict[str, Any]]
    if isinstance(body, list):
        if not target:
            raise KustomizeError(f"{directory}: a JSON6902 patch needs a target")
        apply_one = _json6902
    elif isinstance(body, dict):
        if not target:
            target = {"kind": body["kind"], "name": body["metadata"]["name"]}
        apply_one = _strategic_merge
    else:
        raise KustomizeError(f"{directory}: a patch is a list (JSON6902) or a mapping (strategic merge)")
    hits = [i for i, obj in enumerate(objects) if _matches(obj, target)]
    if not hits:
        raise KustomizeError(f"{directory}: patch target {target} matches no object")
    for i in hits:
        objects[i] = apply_one(objects[i], body)


def _strategic_merge(obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    return _merge_map(copy.deepcopy(obj), patch, parent_kind=obj["kind"])


def _merge_map(base: dict[str, Any], patch: dict[str, Any], parent_kind: str) -> dict[str, Any]:
    for key, value in patch.items():
        if key.startswith("$"):
            raise KustomizeError(f"strategic merge directive {key} is not supported")
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge_map(base[key], value, parent_kind)
        elif isinstance(value, list) and isinstance(base.get(key), list):
            merge_key = SERVICE_PORT_KEY if key == "ports" and parent_kind == "Service" else MERGE_KEYS.get(key)
            base[key] = _merge_list(base[key], value, merge_key, parent_kind)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _merge_list(base: list[Any], patch: list[Any], merge_key: str | None, parent_kind: str) -> list[Any]:
    if merge_key is None or not all(isinstance(item, dict) and merge_key in item for item in patch):
        return copy.deepcopy(patch)
    merged = list(base)
    added = []
    for item in patch:
        for i, existing in enumerate(merged):
            if isinstance(existing, dict) and existing.get(merge_key) == item[merge_key]:
                merged[i] = _merge_map(existing, item, parent_kind)
                break
        else:
            added.append(copy.deepcopy(item))
    # kustomize (kyaml) puts the patch's new elements first, in patch order
    return added + merged


def _json6902(obj: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(obj)
    for operation in operations:
        op, path = operation.get("op"), operation.get("path", "")
        parent, last = _resolve_parent(doc, path)
        if op == "add":
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                parent.insert(index, copy.deepcopy(operation["value"]))
            else:
                parent[last] = copy.deepcopy(operation["value"])
        elif op in ("replace", "remove", "test"):
            key: Any = int(last) if isinstance(parent, list) else last
            if isinstance(parent, dict) and key not in parent:
                raise KustomizeError(f"JSON6902 {op}: {path} does not exist")
            if op == "replace":
                parent[key] = copy.deepcopy(operation["value"])
            elif op == "remove":
                del parent[key]
            elif parent[key] != operation["value"]:
                raise KustomizeError(f"JSON6902 test failed at {path}")
        else:
            raise KustomizeError(f"JSON6902 op {op!r} is not supported")
    return doc


def _resolve_parent(doc: Any, path: str) -> tuple[Any, str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with /")
    tokens = [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]
    node = doc
    for token in tokens[:-1]:
        try:
            node = node[int(token)] if isinstance(node, list) else node[token]
        except (KeyError, IndexError, ValueError) as exc:
            raise KustomizeError(f"JSON pointer {path}: no {token!r}") from exc
    return node, tokens[-1]


def _containers(node: Any) -> Iterable[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (item for item in value if isinstance(item, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _set_image(objects: list[dict[str, Any]], image: dict[str, Any]) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise KustomizeError(f"unsupported images fields {sorted(unknown)}")
    for obj in objects:
        for container in _containers(obj):
            name, tag = _split_image(container.get("image", ""))
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{name}@{image['digest']}"
            else:
                new_tag = image.get("newTag", tag)
                container["image"] = f"{name}:{new_tag}" if new_tag else name


def _split_image(image: str) -> tuple[str, str]:
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    if head and "/" not in tail:
        return head, tail
    return name, ""


def count_by_kind(objects: Iterable[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(obj["kind"] for obj in objects).items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("directory", type=Path, help="a directory holding a kustomization.yaml")
    parser.add_argument("--summary", action="store_true", help="print the object count per kind on stderr")
    args = parser.parse_args(argv)
    try:
        objects = render(args.directory)
    except KustomizeError as exc:
        print(f"render_kustomize: {exc}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(objects, sys.stdout, sort_keys=False)
    if args.summary:
        counts = count_by_kind(objects)
        detail = ", ".join(f"{kind} {n}" for kind, n in counts.items())
        print(f"{args.directory}: {len(objects)} objects ({detail})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
