"""LoRA adapters: validated before vLLM sees them, snapshotted into the state directory, given
integer ids from a persisted counter (never reused, never ``hash()``), and restored on restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ragtune_common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

log = logging.getLogger(__name__)

SUPPORTED_TARGET_MODULES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_LAYER = re.compile(r"\.layers\.(\d+)\.")
WEIGHTS = "adapter_model.safetensors"


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


@dataclass
class AdapterRecord:
    name: str
    tenant: str
    lora_id: int
    path: str
    base_model: str
    rank: int
    alpha: float
    target_modules: list[str]
    loaded_at: str
    fingerprint: str


class LoraEngine(Protocol):
    async def add_lora(self, name: str, lora_id: int, path: str) -> None: ...
    async def remove_lora(self, lora_id: int) -> None: ...


def _expected_in_features(module: str, base: BaseModelInfo) -> int:
    return base.intermediate_size if module == "down_proj" else base.hidden_size


def inspect_adapter(path: Path, base: BaseModelInfo, max_rank: int) -> tuple[dict[str, Any], str]:
    """Check a PEFT LoRA directory against the base model and the engine; returns its config and
    a fingerprint of its content. Raises INVALID_ARGUMENT / FAILED_PRECONDITION naming the reason."""
    if not path.is_dir():
        raise InvalidArgument(f"{path} is not a directory readable by the generator", field="path")
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise InvalidArgument("no adapter_config.json in the directory", field="path")
    try:
        config = json.loads(config_file.read_text())
        assert isinstance(config, dict)
    except (ValueError, AssertionError):
        raise InvalidArgument("adapter_config.json is not a JSON object", field="path") from None
    if config.get("peft_type", "LORA") != "LORA":
        raise InvalidArgument(f"peft_type {config.get('peft_type')!r} is not LORA", field="path")
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise InvalidArgument("adapter_config.json has no positive integer r", field="path")
    if rank > max_rank:
        raise FailedPrecondition(f"adapter rank {rank} exceeds the engine's max_lora_rank {max_rank}", field="path")
    if config.get("modules_to_save"):
        raise InvalidArgument(f"modules_to_save {config['modules_to_save']} is not supported by vLLM", field="path")
    targets = config.get("target_modules")
    if not isinstance(targets, list) or not targets:
        raise InvalidArgument("target_modules must be a non-empty list of module names", field="path")
    unsupported = sorted({t.rsplit(".", 1)[-1] for t in targets} - SUPPORTED_TARGET_MODULES)
    if unsupported:
        raise InvalidArgument(f"unsupported target modules {unsupported}", field="path")
    weights = path / WEIGHTS
    if not weights.is_file():
        raise InvalidArgument(f"no {WEIGHTS} in the directory", field="path")
    _check_base(config, base)
    _check_shapes(weights, base)
    digest = hashlib.sha256(config_file.read_bytes())
    with open(weights, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return config, digest.hexdigest()


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
            expected = _expected_in_features(module, base)
            if expected and len(shape) == 2 and shape[1] != expected:
                raise FailedPrecondition(
                    f"{key} expects {shape[1]} input features; the base model has {expected}", field="path"
                )


class AdapterRegistry:
    """Adapters by immutable name, persisted in ``<state_dir>/generator/adapters.json``."""

    def __init__(self, state_dir: Path, base: BaseModelInfo, max_rank: int) -> None:
        self._root = state_dir / "generator"
        self._file = self._root / "adapters.json"
        self._base = base
        self._max_rank = max_rank
        self._lock = asyncio.Lock()
        self._records: dict[str, AdapterRecord] = {}
        self._next_id = 1
        if self._file.exists():
            saved = json.loads(self._file.read_text())
            self._next_id = int(saved["next_id"])
            self._records = {r["name"]: AdapterRecord(**r) for r in saved["adapters"]}

    def _persist(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        staging = self._file.with_suffix(".tmp")
        payload = {"next_id": self._next_id, "adapters": [asdict(r) for r in self._records.values()]}
        staging.write_text(json.dumps(payload, indent=2))
        os.replace(staging, self._file)

    def get(self, name: str) -> AdapterRecord:
        record = self._records.get(name)
        if record is None:
            raise NotFound(f"adapter {name!r} is not loaded", field="adapter")
        return record

    def list(self, tenant: str = "") -> list[AdapterRecord]:
        return sorted((r for r in self._records.values() if not tenant or r.tenant == tenant), key=lambda r: r.name)

    async def load(self, engine: LoraEngine, name: str, path: str, tenant: str) -> tuple[AdapterRecord, bool]:
        if not _NAME.match(name):
            raise InvalidArgument("must be 1-128 characters of letters, digits, '_', '.', ':', '-'", field="name")
        if not path:
            raise InvalidArgument("is required", field="path")
        async with self._lock:
            config, fingerprint = await asyncio.to_thread(inspect_adapter, Path(path), self._base, self._max_rank)
            existing = self._records.get(name)
            if existing is not None:
                if existing.fingerprint == fingerprint:
                    return existing, False
                raise AlreadyExists(f"a different adapter is already loaded as {name!r}; use a new name", field="name")
            lora_id = self._next_id
            self._next_id += 1
            self._persist()  # the id is spent even if loading fails: ids are never reused
            snapshot = self._root / "adapters" / str(lora_id)
            await asyncio.to_thread(_snapshot, Path(path), snapshot)
            try:
                await engine.add_lora(name, lora_id, str(snapshot))
            except Exception as exc:
                shutil.rmtree(snapshot, ignore_errors=True)
                raise FailedPrecondition(f"the engine refused the adapter: {exc}", field="path") from exc
            record = AdapterRecord(
                name=name,
                tenant=tenant or "default",
                lora_id=lora_id,
                path=str(snapshot),
                base_model=self._base.name,
                rank=int(config["r"]),
                alpha=float(config.get("lora_alpha", config["r"])),
                target_modules=sorted(config["target_modules"]),
                loaded_at=datetime.now(UTC).isoformat(),
                fingerprint=fingerprint,
            )
            self._records[name] = record
            self._persist()
            log.info("loaded adapter %s (id %d, rank %d)", name, lora_id, record.rank)
            return record, True

    async def unload(self, engine: LoraEngine, name: str) -> None:
        async with self._lock:
            record = self.get(name)
            await engine.remove_lora(record.lora_id)
            del self._records[name]
            self._persist()
            shutil.rmtree(record.path, ignore_errors=True)
            log.info("unloaded adapter %s", name)

    async def restore(self, engine: LoraEngine) -> None:
        """Load every recorded adapter into a fresh engine; drop (and log) any that fails."""
        async with self._lock:
            for record in list(self._records.values()):
                try:
                    await engine.add_lora(record.name, record.lora_id, record.path)
                except Exception:
                    log.exception("could not restore adapter %s from %s; dropping it", record.name, record.path)
                    del self._records[record.name]
            self._persist()
            log.info("restored %d adapter(s)", len(self._records))


def _snapshot(source: Path, target: Path) -> None:
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("adapter_config.json", WEIGHTS):
        shutil.copy2(source / name, staging / name)
    os.replace(staging, target)
