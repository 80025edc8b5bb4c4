"""The embedding models a request may name: only the configured list (RAGTUNE_RETRIEVER_EMBEDDING_MODELS)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragtune_common.errors import InvalidArgument, Unavailable
from ragtune_retriever.embedding import MEASURED_CPU_BACKEND, Embedder, EmbedderRegistry, check_allowed_model
from ragtune_retriever.encoders import parse_model_name
from ragtune_retriever.settings import RetrieverSettings


def test_default_list_is_the_shipped_model_and_the_default(monkeypatch) -> None:
    monkeypatch.delenv("RAGTUNE_RETRIEVER_EMBEDDING_MODELS", raising=False)
    assert RetrieverSettings().allowed_embedding_models == ["all-MiniLM-L6-v2"]
    custom = RetrieverSettings(embedding_model="/srv/models/e5")
    assert custom.allowed_embedding_models == ["/srv/models/e5", "all-MiniLM-L6-v2"]


def test_list_from_the_environment_is_comma_separated(monkeypatch) -> None:
    monkeypatch.setenv("RAGTUNE_RETRIEVER_EMBEDDING_MODELS", " all-MiniLM-L6-v2 , /srv/models/e5,")
    assert RetrieverSettings().allowed_embedding_models == ["all-MiniLM-L6-v2", "/srv/models/e5"]


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "ALL-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"])
def test_shipped_model_in_any_spelling(name: str) -> None:
    assert check_allowed_model(name, ["all-MiniLM-L6-v2"]) == name


def test_listed_directory_however_written(tmp_path: Path, monkeypatch) -> None:
    model = tmp_path / "models" / "e5"
    model.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert check_allowed_model("./models/e5", [str(model)]) == "./models/e5"
    assert check_allowed_model(str(model / ".." / "e5"), [str(model)])


@pytest.mark.parametrize(
    "name", ["/etc", "/tmp/evil-model", "all-MiniLM-L6-v2/..", "../all-MiniLM-L6-v2", "all-MiniLM-L6-v2\x00"]
)
def test_anything_else_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_allowed_model(name, ["all-MiniLM-L6-v2", os.path.realpath("/srv/models/e5")])
    assert info.value.field == "embedding_model"
    assert "RAGTUNE_RETRIEVER_EMBEDDING_MODELS" in info.value.message


@pytest.mark.parametrize("name", ["a" * 254 + "@x", "a" * 300 + "@onnx", "/srv/" + "b" * 300 + "@torch"])
def test_a_name_too_long_for_a_path_is_refused_not_crashed(name: str) -> None:
    """An over-long file name (ENAMETOOLONG from the directory check) is an unknown model, not a fault."""
    with pytest.raises(InvalidArgument) as info:
        EmbedderRegistry("cpu", 1, 0, ["all-MiniLM-L6-v2"]).resolve(name, field="model")
    assert info.value.field == "model"


# -- backends: model@torch | @onnx | @onnx-int8 ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "model", "backend"),
    [
        ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2", None),
        ("all-MiniLM-L6-v2@onnx", "all-MiniLM-L6-v2", "onnx"),
        ("all-MiniLM-L6-v2@onnx-int8", "all-MiniLM-L6-v2", "onnx-int8"),
        ("/srv/models/e5@torch", "/srv/models/e5", "torch"),
        ("/srv/m@v2/e5", "/srv/m@v2/e5", None),  # an '@' inside a directory path is no backend
    ],
)
def test_model_names_carry_a_backend(name: str, model: str, backend: str | None) -> None:
    variant = parse_model_name(name)
    assert (variant.model, variant.backend) == (model, backend)


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2@tensorrt", "all-MiniLM-L6-v2@", "all-MiniLM-L6-v2@onnx@x"])
def test_unknown_backend_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        EmbedderRegistry("cpu", 1, 0, ["all-MiniLM-L6-v2"]).resolve(name)
    assert info.value.field == "embedding_model"


def test_a_name_without_backend_gets_the_default() -> None:
    auto = EmbedderRegistry("cpu", 1, 0, ["all-MiniLM-L6-v2", "/srv/models/e5"])
    assert auto.resolve("all-MiniLM-L6-v2") == f"all-MiniLM-L6-v2@{MEASURED_CPU_BACKEND}"
    assert auto.resolve("/srv/models/e5") == "/srv/models/e5@torch"  # auto measured the shipped model only
    assert auto.resolve("all-MiniLM-L6-v2@torch") == "all-MiniLM-L6-v2@torch"
    onnx = EmbedderRegistry("cpu", 1, 0, ["all-MiniLM-L6-v2"], backend="onnx")
    assert onnx.resolve("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2@onnx"


def test_a_listed_backend_allows_only_that_backend() -> None:
    registry = EmbedderRegistry("cpu", 1, 0, ["all-MiniLM-L6-v2@onnx"], backend="onnx")
    assert registry.resolve("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2@onnx"
    with pytest.raises(InvalidArgument) as info:
        registry.resolve("all-MiniLM-L6-v2@torch")
    assert info.value.field == "embedding_model"


def test_backend_setting_is_checked(monkeypatch) -> None:
    monkeypatch.setenv("RAGTUNE_RETRIEVER_EMBEDDING_BACKEND", "onnx-int8")
    assert RetrieverSettings().embedding_backend == "onnx-int8"
    monkeypatch.setenv("RAGTUNE_RETRIEVER_EMBEDDING_BACKEND", "tensorrt")
    with pytest.raises(ValueError, match="embedding_backend"):
        RetrieverSettings()


def test_an_export_the_server_cannot_write_is_unavailable_not_the_callers_fault(tmp_path: Path) -> None:
    """A full disk or a read-only state directory is the server's fault: UNAVAILABLE (retry
    later), not INVALID_ARGUMENT naming the model the caller chose."""
    blocked = tmp_path / "exports"
    blocked.write_text("a file where the exports directory should be")
    with pytest.raises(Unavailable, match="retry later"):
        Embedder("all-MiniLM-L6-v2@onnx", exports_dir=blocked)
