"""Adapter directories on disk: validation against the base model, the configured roots a caller
may publish from, and the shared adapter store that files are copied into atomically."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune_common.errors import FailedPrecondition, InvalidArgument, PermissionDenied

SUPPORTED_TARGET_MODULES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
FILES = (CONFIG, WEIGHTS)
_LAYER = re.compile(r"\.layers\.(\d+)\.")
_STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class BaseModelInfo:
    name: str
    architectures: tuple[str, ...]
    hidden_size: int
    intermediate_size: int
    num_layers: int

    @classmethod
    def from_dir(cls, name: str, path: Path) -> BaseModelInfo:
        config = json.loads((path / "config.json").read_text())
        return cls(
            name=name,
            architectures=tuple(config.get("architectures") or ()),
            hidden_size=int(config["hidden_size"]),
            intermediate_size=int(config.get("intermediate_size", 0)),
            num_layers=int(config.get("num_hidden_layers", 0)),
        )


def resolve_under_roots(path: str, roots: list[Path]) -> Path:
    """The adapter directory ``path`` with symlinks resolved, if it and its files lie under one of
    ``roots``; else PERMISSION_DENIED naming the field (a symlinked file may not point outside)."""
    if not path:
        raise InvalidArgument("is required", field="path")
    if "\x00" in path or not os.path.isabs(path):
        raise InvalidArgument("must be an absolute path", field="path")
    resolved = Path(path).resolve()
    for root in roots:
        base = root.resolve()
        if resolved.is_relative_to(base) and all((resolved / f).resolve().is_relative_to(base) for f in FILES):
            return resolved
    raise PermissionDenied("is outside the generator's adapter roots (RAGTUNE_GENERATOR_ADAPTER_ROOTS)", field="path")


def inspect_adapter(path: Path, base: BaseModelInfo, max_rank: int) -> tuple[dict[str, Any], str]:
    """Check a PEFT LoRA directory against the base model and the engine; returns its config and
    a fingerprint of its content. Raises INVALID_ARGUMENT / FAILED_PRECONDITION naming the reason."""
    if not path.is_dir():
        raise InvalidArgument(f"{path} is not a directory readable by the generator", field="path")
    config_file = path / CONFIG
    if not config_file.is_file():
        raise InvalidArgument(f"no {CONFIG} in the directory", field="path")
    try:
        config = json.loads(config_file.read_text())
        assert isinstance(config, dict)
    except (ValueError, AssertionError):
        raise InvalidArgument(f"{CONFIG} is not a JSON object", field="path") from None
    if config.get("peft_type", "LORA") != "LORA":
        raise InvalidArgument(f"peft_type {config.get('peft_type')!r} is not LORA", field="path")
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise InvalidArgument(f"{CONFIG} has no positive integer r", field="path")
    if rank > max_rank:
        raise FailedPrecondition(f"adapter rank {rank} exceeds the engine's max_lora_rank {max_rank}", field="path")
    if config.get("modules_to_save"):
        raise InvalidArgument(f"modules_to_save {config['modules_to_save']} is not supported by vLLM", field="path")
    targets = config.get("target_modules")
    if not isinstance(targets, list) or not targets:
        raise InvalidArgument("target_modules must be a non-empty list of module names", field="path")
    unsupported = sorted({str(t).rsplit(".", 1)[-1] for t in targets} - SUPPORTED_TARGET_MODULES)
    if unsupported:
        raise InvalidArgument(f"unsupported target modules {unsupported}", field="path")
    weights = path / WEIGHTS
    if not weights.is_file():
        raise InvalidArgument(f"no {WEIGHTS} in the directory", field="path")
    _check_base(config, base)
    _check_shapes(weights, base)
    return config, fingerprint(path)


def fingerprint(path: Path) -> str:
    """sha256 over the adapter's config and weights."""
    digest = hashlib.sha256((path / CONFIG).read_bytes())
    with open(path / WEIGHTS, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_stored(path: Path, base: BaseModelInfo, max_rank: int, expected: str) -> None:
    """A stored adapter is still whole: valid, and the same bytes that were published."""
    _, found = inspect_adapter(path, base, max_rank)
    if found != expected:
        raise FailedPrecondition(f"files changed since publishing (sha256 {found[:12]}, expected {expected[:12]})")


def _check_base(config: dict[str, Any], base: BaseModelInfo) -> None:
    declared = config.get("base_model_name_or_path")
    if declared and (Path(declared) / "config.json").is_file():
        other = BaseModelInfo.from_dir(str(declared), Path(declared))
        if other.architectures != base.architectures or other.hidden_size != base.hidden_size:
            raise FailedPrecondition(
                f"adapter was trained on {other.architectures} with hidden size {other.hidden_size};"
                f" the base model is {base.architectures} with hidden size {base.hidden_size}",
                field="path",
            )


def _check_shapes(weights: Path, base: BaseModelInfo) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="np") as tensors:
            shapes = {key: tensors.get_slice(key).get_shape() for key in tensors.keys()}  # noqa: SIM118
    except Exception as exc:  # any parse failure of a foreign file is the caller's problem
        raise InvalidArgument(f"{WEIGHTS} cannot be read: {exc}", field="path") from None
    for key, shape in shapes.items():
        layer = _LAYER.search(key)
        if layer and base.num_layers and int(layer.group(1)) >= base.num_layers:
            raise FailedPrecondition(f"{key}: the base model has only {base.num_layers} layers", field="path")
        if ".lora_A" in key:
            module = key.split(".lora_A")[0].rsplit(".", 1)[-1]
            expected = base.intermediate_size if module == "down_proj" else base.hidden_size
            if expected and len(shape) == 2 and shape[1] != expected:
                raise FailedPrecondition(
                    f"{key} expects {shape[1]} input features; the base model has {expected}", field="path"
                )


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_into_store(source: Path, store: Path, directory: str) -> Path:
    """Copy the adapter's files to ``store/directory`` so that the directory appears complete or
    not at all: written in a staging directory, each file and the directory fsync'd, then renamed."""
    store.mkdir(parents=True, exist_ok=True)
    target = store / directory
    staging = store / f"{_STAGING_PREFIX}{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        for name in FILES:
            shutil.copyfile(source / name, staging / name)
            _fsync(staging / name)
        _fsync(staging)
        os.rename(staging, target)
        _fsync(store)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def remove_from_store(store: Path, directory: str) -> None:
    """Delete a stored adapter: renamed away first so that no reader sees half a directory."""
    target = store / directory
    if not target.exists():
        return
    doomed = store / f"{_STAGING_PREFIX}{uuid.uuid4().hex}"
    os.rename(target, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
