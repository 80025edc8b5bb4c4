"""What turns texts into L2-normalised vectors, per backend, and how a model name picks one.

An embedding model name may carry a backend: ``all-MiniLM-L6-v2@torch`` (sentence-transformers on
PyTorch), ``@onnx`` (the same model exported to ONNX, run by ONNX Runtime) or ``@onnx-int8`` (that
export with int8 dynamically quantized weights). All variants of a model give vectors of the same
dimension that agree closely (cosine > 0.999 for ``onnx``, ~0.995 for ``onnx-int8``), so they are
comparable; a collection still keeps the variant it was created with. ONNX Runtime runs on the CPU.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ragtune_common.errors import InvalidArgument

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

BACKENDS = ("torch", "onnx", "onnx-int8")
LEGACY_BACKEND = "torch"  # a stored name without '@': collections made before variants existed


@dataclass(frozen=True)
class ModelVariant:
    """A model (shipped name or local directory, as written) and the backend that runs it."""

    model: str
    backend: str | None = None

    @property
    def name(self) -> str:
        return f"{self.model}@{self.backend}" if self.backend else self.model

    def with_backend(self, backend: str) -> ModelVariant:
        return ModelVariant(self.model, backend)


def is_directory(name: str) -> bool:
    """Whether ``name`` (``~`` expanded) is a directory; a name no file system can hold (too long,
    say) is not one."""
    try:
        return Path(name).expanduser().is_dir()
    except (OSError, ValueError):
        return False


def parse_model_name(name: str, field: str = "embedding_model") -> ModelVariant:
    """Split ``model@backend``; a name without a known suffix is a model alone (a directory may
    contain '@'); an unknown suffix on something that is not a directory is InvalidArgument."""
    model, sep, suffix = name.rpartition("@")
    if not sep or not model:
        return ModelVariant(name)
    if suffix in BACKENDS:
        return ModelVariant(model, suffix)
    if "/" in suffix or is_directory(name):
        return ModelVariant(name)
    raise InvalidArgument(
        f"unknown embedding backend {suffix!r} in {name!r}: use {', '.join('@' + b for b in BACKENDS)}"
        " or no suffix (the server's default)",
        field=field,
    )


class Encoder(Protocol):
    dimension: int
    max_seq_length: int

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray: ...


class TorchEncoder:
    """sentence-transformers on PyTorch."""

    def __init__(self, model_path: Path, device: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model: SentenceTransformer = SentenceTransformer(str(model_path), device=device, local_files_only=True)
        dimension = self.model.get_embedding_dimension()
        if not dimension:
            raise InvalidArgument(f"model {model_path.name!r} reports no embedding dimension", field="embedding_model")
        self.dimension = int(dimension)
        self.max_seq_length = int(self.model.max_seq_length or 512)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class OnnxEncoder:
    """An exported model (see :mod:`ragtune_retriever.onnx_export`) on ONNX Runtime's CPU provider,
    tokenised with the source model's own tokenizer. Texts are batched longest first, as
    sentence-transformers does, so a batch pads to similar lengths."""

    def __init__(self, variant_dir: Path, model_path: Path, meta: dict[str, Any]) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads sleep instead of spinning: the same reason main() sets OMP_WAIT_POLICY.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(variant_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(model_path))
        self._tokenizer_lock = threading.Lock()  # HF tokenizers flip truncation/padding state per call
        self.inputs: list[str] = list(meta["inputs"])
        self.dimension = int(meta["dimension"])
        self.max_seq_length = int(meta["max_seq_length"])

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = np.argsort([-len(text) for text in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            picked = order[start : start + batch_size]
            with self._tokenizer_lock:
                features = self.tokenizer(
                    [texts[i] for i in picked],
                    padding=True,
                    truncation=True,
                    max_length=self.max_seq_length,
                    return_tensors="np",
                )
            feed = {name: np.asarray(features[name], dtype=np.int64) for name in self.inputs}
            vectors = np.asarray(self.session.run(["sentence_embedding"], feed)[0], dtype=np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            out[picked] = vectors / np.maximum(norms, 1e-12)
        return out
