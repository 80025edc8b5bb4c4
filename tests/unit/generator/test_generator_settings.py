"""Generator settings for the adapter registry: the store and the roots LoadAdapter may read from."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ragtune_generator.settings import GeneratorSettings


def test_defaults_follow_the_state_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("RAGTUNE_ADAPTER_STORE", raising=False)
    monkeypatch.delenv("RAGTUNE_GENERATOR_ADAPTER_ROOTS", raising=False)
    settings = GeneratorSettings(state_dir=tmp_path)
    assert settings.adapter_store == tmp_path.resolve() / "adapters"
    assert settings.allowed_adapter_roots == [tmp_path.resolve() / "trainer"]  # where the trainer publishes from


def test_environment_names(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_ADAPTER_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("RAGTUNE_GENERATOR_ADAPTER_ROOTS", f"{tmp_path / 'a'}, {tmp_path / 'b'}")
    settings = GeneratorSettings(state_dir=tmp_path)
    assert settings.adapter_store == tmp_path / "store"
    assert settings.allowed_adapter_roots == [tmp_path / "a", tmp_path / "b"]


def test_relative_roots_are_refused(monkeypatch):
    monkeypatch.setenv("RAGTUNE_GENERATOR_ADAPTER_ROOTS", "adapters")
    with pytest.raises(ValidationError, match="absolute"):
        GeneratorSettings(state_dir=Path("/tmp"))
