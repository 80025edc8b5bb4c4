"""The embedding models a request may name: only the configured list (RAGTUNE_RETRIEVER_EMBEDDING_MODELS)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragtune_common.errors import InvalidArgument
from ragtune_retriever.embedding import check_allowed_model
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
