"""``make run`` / ``ragtune up`` as a user runs it: replicas on consecutive ports, each with its
metrics port, a replica killed with SIGKILL restarted by the supervisor while the other keeps
serving, and Ctrl-C stopping every process; ``ragtune up --replicas gateway=2`` starts two gateways
over one database, each answering what the other wrote."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from ragtune_common.launcher import METRICS_PORT_OFFSET, REPLICA_PORT_STEP, health_status, parse_replicas
from tests.ports import free_port_block

SERVING = health_pb2.HealthCheckResponse.SERVING


def _wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_parse_replicas_names_the_mistake():
    assert parse_replicas("retriever=2, trainer=3")["retriever"] == 2
    assert parse_replicas("")["generator"] == 1
    for bad in ("retriever", "ranker=2", "retriever=0", "retriever=x"):
        with pytest.raises(ValueError, match="--replicas"):
            parse_replicas(bad)


def test_supervisor_restarts_a_killed_replica_and_ctrl_c_stops_all(database_url: str, tmp_path: Path):
    base = free_port_block([s + m for s in (0, REPLICA_PORT_STEP) for m in (0, METRICS_PORT_OFFSET)])
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    env = dict(os.environ, DATABASE_URL=database_url, RAGTUNE_RETRIEVER_PORT=str(base))
    env.pop("RAGTUNE_SERVICE_TOKEN", None)
    with out.open("wb") as stdout, err.open("wb") as stderr:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "ragtune_common.launcher", "--services", "retriever", "--replicas",
             "retriever=2", "--state-dir", str(tmp_path / "state"), "--grace", "5"],
            env=env, stdout=stdout, stderr=stderr,
        )  # fmt: skip
    try:
        _wait_for(lambda: "ragtune is up" in out.read_text() or launcher.poll() is not None, 300, "the stack")
        text = out.read_text()
        assert "ragtune is up" in text, err.read_text()[-3000:]
        second = base + REPLICA_PORT_STEP
        pids = {int(port): int(pid) for port, pid in re.findall(r"SERVING on 127\.0\.0\.1:(\d+) \(pid (\d+)", text)}
        assert set(pids) == {base, second}
        assert (tmp_path / "state" / "service-token").stat().st_mode & 0o077 == 0  # owner-only
        for port in pids:
            with urllib.request.urlopen(f"http://127.0.0.1:{port + METRICS_PORT_OFFSET}/metrics", timeout=5) as r:
                assert b"ragtune_rpc" in r.read()

        os.kill(pids[second], signal.SIGKILL)
        _wait_for(lambda: "retriever-1" in err.read_text() and "exited with code -9" in err.read_text(), 30, "the log")
        assert health_status(f"127.0.0.1:{base}") == SERVING  # the other replica keeps serving
        _wait_for(lambda: "retriever-1 restarted" in err.read_text(), 30, "the restart")
        _wait_for(lambda: health_status(f"127.0.0.1:{second}") == SERVING, 120, "the restarted replica")
        children = [p for p in psutil.Process(launcher.pid).children() if p.is_running()]
        assert len(children) == 2 and pids[second] not in {c.pid for c in children}

        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=60) == 0
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert "stopping ragtune" in out.read_text()
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_ragtune_up_starts_gateway_replicas_over_one_database(database_url: str, tmp_path: Path):
    name = f"launch_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = free_port_block([0, REPLICA_PORT_STEP])
    state = tmp_path / "state"
    env = dict(os.environ, DATABASE_URL=psycopg.conninfo.make_conninfo(database_url, dbname=name))
    env.update(RAGTUNE_GATEWAY_PORT=str(base))
    for variable in ("RAGTUNE_SERVICE_TOKEN", "RAGTUNE_GATEWAY_ADMIN_KEY"):
        env.pop(variable, None)
    ragtune = shutil.which("ragtune", path=str(Path(sys.executable).parent))
    assert ragtune, "the ragtune command is installed beside this interpreter"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        launcher = subprocess.Popen(
            [ragtune, "up", "--services", "gateway", "--replicas", "gateway=2", "--state-dir", str(state),
             "--grace", "5"],
            env=env, stdout=stdout, stderr=stderr,
        )  # fmt: skip
    try:
        _wait_for(lambda: "ragtune is up" in out.read_text() or launcher.poll() is not None, 180, "the gateways")
        text = out.read_text()
        assert "ragtune is up" in text, err.read_text()[-3000:]
        urls = dict(re.findall(r"^(gateway(?:-1)?) +(http://\S+)/v1 ", text, re.MULTILINE))
        assert urls == {"gateway": f"http://127.0.0.1:{base}", "gateway-1": f"http://127.0.0.1:{base + 10}"}, text
        credentials = json.loads((state / "gateway" / "credentials.json").read_text())
        admin = {"Authorization": f"Bearer {credentials['admin_key']}"}
        for url in urls.values():  # the first made the admin key, the second read it
            assert httpx.get(f"{url}/v1/admin/tenants", headers=admin, timeout=30).status_code == 200, url
        headers = {"Authorization": f"Bearer {credentials['api_key']}"}
        with httpx.Client(headers=headers, timeout=30) as http:
            uploaded = http.post(
                f"{urls['gateway']}/v1/files", files={"file": ("a.txt", b"hello")}, data={"purpose": "assistants"}
            )
            assert uploaded.status_code == 200, uploaded.text
            seen = http.get(f"{urls['gateway-1']}/v1/files/{uploaded.json()['id']}")
            assert seen.status_code == 200 and seen.json()["filename"] == "a.txt", seen.text
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=60) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
