"""Shared runtime pieces: paging tokens, error mapping, settings from the environment."""

from __future__ import annotations

from pathlib import Path

import grpc
import psycopg
import pytest

from ragtune_common.errors import InvalidArgument, NotFound, Unavailable
from ragtune_common.interceptors import to_domain_error
from ragtune_common.paging import DEFAULT_PAGE_SIZE, decode_page, next_page_token
from ragtune_retriever.service import keyword_query
from ragtune_retriever.settings import RetrieverSettings


def test_page_token_round_trip() -> None:
    token = next_page_token(["a", "b", "ümlaut/+="], page_size=3)
    assert decode_page(3, token) == ("ümlaut/+=", 3)
    assert next_page_token(["a"], page_size=3) == "", "a short page is the last"
    assert decode_page(0, "") == ("", DEFAULT_PAGE_SIZE)


@pytest.mark.parametrize(
    ("size", "token", "field"),
    [
        (-1, "", "page.page_size"),
        (1001, "", "page.page_size"),
        (10, "%%%", "page.page_token"),
        (10, "//8=", "page.page_token"),
    ],
)
def test_bad_page_requests(size: int, token: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        decode_page(size, token)
    assert err.value.field == field


def test_error_mapping() -> None:
    assert to_domain_error(NotFound("x")).code == grpc.StatusCode.NOT_FOUND  # type: ignore[union-attr]
    mapped = to_domain_error(psycopg.OperationalError("connection refused"))
    assert isinstance(mapped, Unavailable) and "database" in mapped.message
    assert to_domain_error(KeyError("bug")) is None, "bugs must not be dressed up as client errors"
    assert InvalidArgument("must be positive", field="top_k").describe() == "top_k: must be positive"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("RAGTUNE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RAGTUNE_RETRIEVER_PORT", "6000")
    monkeypatch.setenv("RAGTUNE_RETRIEVER_DEFAULT_EF_SEARCH", "77")
    settings = RetrieverSettings()
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.state_dir == (tmp_path / "state").resolve()
    assert (settings.port, settings.default_ef_search) == (6000, 77)


def test_settings_fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGTUNE_RETRIEVER_DEFAULT_OVERLAP_TOKENS", "300")
    with pytest.raises(ValueError, match="overlap"):
        RetrieverSettings()


def test_keyword_query_survives_punctuation() -> None:
    assert keyword_query("what's (the) C++ & 'rust' | !?") == "what s the C rust"
    assert keyword_query("!!! ??? ---") == ""
