"""Trainer replicas as real processes (``python -m ragtune_trainer.main``) on a database of their own,
sharing one artifacts directory and adapter store as replicas on a shared volume do."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
from grpc_health.v1 import health_pb2
from psycopg.conninfo import make_conninfo

from ragtune.trainer.v1 import trainer_pb2_grpc
from ragtune_common.channels import health_status
from ragtune_trainer.main import SERVICE_NAME
from tests.fixtures.security import SERVICE_TOKEN, direct_channel


@contextlib.asynccontextmanager
async def own_database(database_url: str, prefix: str) -> AsyncIterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(database_url, dbname=name)
    finally:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Replica:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    def stub(self) -> tuple[grpc.aio.Channel, trainer_pb2_grpc.TrainerServiceStub]:
        channel = direct_channel(self.port, SERVICE_NAME)
        return channel, trainer_pb2_grpc.TrainerServiceStub(channel)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


def replica_env(database_url: str, state_dir: Path, shared: Path, name: str, port: int, **extra: str) -> dict[str, str]:
    return dict(
        os.environ,
        DATABASE_URL=database_url,
        RAGTUNE_STATE_DIR=str(state_dir),
        RAGTUNE_SERVICE_TOKEN=SERVICE_TOKEN,
        RAGTUNE_TRAINER_PORT=str(port),
        RAGTUNE_TRAINER_REPLICA_ID=name,
        RAGTUNE_TRAINER_ARTIFACTS_DIR=str(shared / "artifacts"),
        RAGTUNE_TRAINER_MIN_EXAMPLES="2",
        RAGTUNE_TRAINER_DEFAULT_MAX_SEQ_LENGTH="128",
        RAGTUNE_TRAINER_MAX_SEQ_LENGTH_LIMIT="512",
        RAGTUNE_TRAINER_PROGRESS_INTERVAL_S="0",
        RAGTUNE_TRAINER_POLL_INTERVAL_S="0.3",
        RAGTUNE_TRAINER_GENERATOR_ADDRESS="127.0.0.1:1",  # no generator: publishing fails, the job succeeds
        RAGTUNE_TRAINER_PUBLISH_TIMEOUT_S="3",
        **extra,
    )


async def start_replicas(envs: list[dict[str, str]]) -> list[Replica]:
    """Start every replica, then wait until each reports SERVING."""
    replicas = [
        Replica(env["RAGTUNE_TRAINER_REPLICA_ID"], int(env["RAGTUNE_TRAINER_PORT"]), _spawn(env)) for env in envs
    ]
    for replica in replicas:
        for _ in range(360):
            if health_status(f"127.0.0.1:{replica.port}") == health_pb2.HealthCheckResponse.SERVING:
                break
            assert replica.process.poll() is None, f"trainer {replica.name} exited during start-up"
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"trainer {replica.name} never became SERVING")
    return replicas


def _spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ragtune_trainer.main"], env=env)


def stop_all(replicas: list[Replica]) -> None:
    for replica in replicas:
        if replica.process.poll() is None:
            replica.process.terminate()
    for replica in replicas:
        try:
            replica.process.wait(20)
        except subprocess.TimeoutExpired:
            replica.process.kill()
            replica.process.wait(10)


def processes_running(marker: str) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                yield int(entry.name)
        except OSError:
            continue
