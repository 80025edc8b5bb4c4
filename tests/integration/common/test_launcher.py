"""``make run`` / ``ragtune up`` as a user runs it: replicas on consecutive ports, each with its
metrics port, a replica killed with SIGKILL restarted by the supervisor while the other keeps
serving, and Ctrl-C stopping every process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
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
