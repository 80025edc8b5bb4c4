"""ONNX Runtime embedding backends: exported once into the (temporary) state directory, vectors close
to PyTorch's, the variant stored on the collection, bad variants refused naming the field, and two
replicas exporting at once leave one good model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune_common.errors import field_violations
from ragtune_retriever.embedding import Embedder, EmbedderRegistry, resolve_model_path
from ragtune_retriever.encoders import OnnxEncoder
from ragtune_retriever.onnx_export import META_FILE, MODEL_FILE, export_root, publish, read_meta
from ragtune_retriever.settings import RetrieverSettings
from tests.integration.retriever.helpers import doc, search, upsert

MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    "What lowers blood pressure in adults?",
    "Statins reduce LDL cholesterol and the risk of cardiovascular events in high-risk patients. " * 12,
    "x",
    "Die Katze schläft auf dem Sofa.",
]


@pytest.fixture(scope="module")
def embedders(state_dir: Path) -> Iterator[dict[str, Embedder]]:
    """One embedder per backend; the ONNX ones export into the session's temporary state dir
    (where the session retriever's default variant also lands: each export happens once)."""
    loaded = {
        backend: Embedder(f"{MODEL}@{backend}", "cpu", batch_size=8, cache_size=0, exports_dir=state_dir / "embeddings")
        for backend in ("torch", "onnx", "onnx-int8")
    }
    yield loaded
    for embedder in loaded.values():
        embedder.close()


def test_export_lands_in_the_state_dir(embedders, state_dir: Path) -> None:
    root = export_root(resolve_model_path(MODEL), state_dir / "embeddings")
    assert root.parent == state_dir / "embeddings"
    for backend in ("onnx", "onnx-int8"):
        meta = read_meta(root / backend)
        assert (root / backend / MODEL_FILE).stat().st_size > 1_000_000
        assert meta["backend"] == backend and meta["dimension"] == 384 and meta["max_seq_length"] == 256
    assert (root / "onnx-int8" / MODEL_FILE).stat().st_size < (root / "onnx" / MODEL_FILE).stat().st_size
    assert not list(root.glob(".*.tmp")), "no temporary export directory is left behind"


@pytest.mark.parametrize(("backend", "floor"), [("onnx", 0.99), ("onnx-int8", 0.95)])
def test_vectors_are_close_to_torch(embedders, backend: str, floor: float) -> None:
    reference = embedders["torch"].encode(TEXTS)
    batched = embedders[backend].encode(TEXTS)
    single = np.stack([embedders[backend].encode([text])[0] for text in TEXTS])  # no padding effects
    assert batched.shape == reference.shape == (len(TEXTS), 384)
    for vectors in (batched, single):
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        cosines = np.sum(vectors * reference, axis=1)
        assert cosines.min() > floor, cosines
    assert embedders[backend].max_seq_length == embedders["torch"].max_seq_length


def _expected_default(settings: RetrieverSettings) -> str:
    return EmbedderRegistry(settings.embedding_device, 1, 0, [MODEL], settings.embedding_backend).resolve(MODEL)


async def test_collection_keeps_its_variant(stub, unique_name, retriever_settings) -> None:
    default = await stub.CreateCollection(pb.CreateCollectionRequest(name=unique_name()))
    assert default.collection.embedding_model == _expected_default(retriever_settings)
    assert "@" in default.collection.embedding_model
    await stub.DeleteCollection(pb.DeleteCollectionRequest(name=default.collection.name))
    for backend in ("onnx", "onnx-int8", "torch"):
        name = unique_name()
        created = await stub.CreateCollection(
            pb.CreateCollectionRequest(name=name, embedding_model=f"{MODEL}@{backend}")
        )
        try:
            assert created.collection.embedding_model == f"{MODEL}@{backend}"
            assert created.collection.dimension == 384
            fetched = await stub.GetCollection(pb.GetCollectionRequest(name=name))
            assert fetched.collection.embedding_model == f"{MODEL}@{backend}"
            await stub.UpsertDocuments(
                upsert(name, doc("bp", "Blood pressure falls with less salt."), doc("cat", "The cat sleeps."))
            )
            hits = (await stub.Search(search(name, "what lowers blood pressure", mode=pb.SEARCH_MODE_VECTOR))).hits
            assert hits[0].document_id == "bp"
        finally:
            await stub.DeleteCollection(pb.DeleteCollectionRequest(name=name))


@pytest.mark.parametrize("model", [f"{MODEL}@tensorrt", f"{MODEL}@", "@onnx", f"{MODEL}@onnx@torch"])
async def test_unknown_variant_is_refused_naming_the_field(stub, unique_name, model: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateCollection(pb.CreateCollectionRequest(name=unique_name(), embedding_model=model))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert [field for field, _ in field_violations(err.value.trailing_metadata())] == ["embedding_model"]
    assert "Traceback" not in err.value.details()


_EXPORT_SCRIPT = """
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s")
from ragtune_retriever.embedding import resolve_model_path
from ragtune_retriever.onnx_export import ensure_onnx_export
print("RESULT", ensure_onnx_export(resolve_model_path("all-MiniLM-L6-v2"), Path(sys.argv[1]), "onnx"), flush=True)
"""


@pytest.mark.timeout(600)
def test_concurrent_double_export_yields_one_good_model(tmp_path: Path, embedders) -> None:
    """Two replicas starting at once on one empty state dir: one exports, the other waits for it,
    both load the same complete model."""
    exports = tmp_path / "embeddings"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", _EXPORT_SCRIPT, str(exports)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [replica.communicate(timeout=540)[0] for replica in replicas]
    assert [replica.returncode for replica in replicas] == [0, 0], outputs
    results = {line.split(" ", 1)[1] for out in outputs for line in out.splitlines() if line.startswith("RESULT ")}
    assert len(results) == 1, outputs
    exported = sum("ragtune_retriever.onnx_export exported" in out for out in outputs)
    assert exported == 1, outputs
    variant_dir = Path(results.pop())
    assert [p.name for p in variant_dir.parent.iterdir() if not p.name.endswith(".lock")] == ["onnx"]
    assert sorted(p.name for p in variant_dir.iterdir()) == sorted([META_FILE, MODEL_FILE])
    meta = json.loads((variant_dir / META_FILE).read_text())
    vectors = OnnxEncoder(variant_dir, resolve_model_path(MODEL), meta).encode(TEXTS, batch_size=4)
    assert np.sum(vectors * embedders["torch"].encode(TEXTS), axis=1).min() > 0.99


def test_a_later_rename_loses_to_the_first(tmp_path: Path) -> None:
    """Where file locks do not reach (some network filesystems), the first complete export wins."""
    final = tmp_path / "onnx"
    final.mkdir()
    (final / META_FILE).write_text('{"first": true}')
    late = tmp_path / ".onnx.late.tmp"
    late.mkdir()
    (late / META_FILE).write_text('{"first": false}')
    assert publish(late, final) is False
    assert json.loads((final / META_FILE).read_text()) == {"first": True}
    fresh = tmp_path / ".onnx-int8.x.tmp"
    fresh.mkdir()
    (fresh / META_FILE).write_text("{}")
    assert publish(fresh, tmp_path / "onnx-int8") is True
    assert not fresh.exists()
