"""The lightest real stack for the loop after storing (distill, fine-tune): the gateway over real
PostgreSQL with a real trainer (the real base model, tiny settings) and no generator: a trained
adapter is not published, and nothing can be answered or evaluated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from ragtune_common.server import GrpcServer
from tests.fixtures.gateway import Gateway
from tests.fixtures.trainer import serve_trainer, small_trainer_settings
from tests.integration.gateway.conftest import GatewayFactory

NO_GENERATOR = "127.0.0.1:1"


@pytest_asyncio.fixture(loop_scope="session")
async def trainer_gateway(
    start_gateway: GatewayFactory,
    gateway_database_url: str,
    state_dir: Path,
    base_model_dir: Path,
    retriever_server: GrpcServer,
    tmp_path: Path,
) -> AsyncIterator[Gateway]:
    """A gateway whose trainer is real (its datasets validated line by line, its jobs trained)."""
    settings = small_trainer_settings(
        gateway_database_url, state_dir, retriever_server, retriever_server, artifacts_dir=tmp_path / "artifacts"
    ).model_copy(update={"generator_address": NO_GENERATOR, "publish_timeout_s": 3.0})
    async with serve_trainer(settings) as trainer:
        yield await start_gateway(trainer_address=f"127.0.0.1:{trainer.port}")
