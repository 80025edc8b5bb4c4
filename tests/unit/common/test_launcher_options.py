"""``ragtune up`` options and the launcher's plan, without starting anything: the CLI hands
``--replicas`` / ``--services`` to the launcher as given, the launcher plans gateway replicas on
consecutive ports over one database, and a bad count is refused before anything starts."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from ragtune_common import launcher
from ragtune_common.launcher import REPLICA_PORT_STEP, SERVICES, parse_replicas, plan
from ragtune_eval.cli.main import app


def test_replicas_counts_include_the_gateway() -> None:
    counts = parse_replicas("retriever=2, gateway=3")
    assert (counts["retriever"], counts["gateway"], counts["generator"], counts["trainer"]) == (2, 3, 1, 1)
    for bad in ("gateway", "gateway=0", "gateway=10", "gateways=2"):
        with pytest.raises(ValueError, match="--replicas"):
            parse_replicas(bad)


def test_gateway_replicas_take_consecutive_ports_over_one_database() -> None:
    env = {"DATABASE_URL": "postgresql://db/ragtune", "RAGTUNE_STATE_DIR": "/state"}
    by_name = {spec.name: spec for spec in SERVICES}
    services = [by_name["retriever"], by_name["gateway"]]
    replicas = plan(services, parse_replicas("retriever=2,gateway=3"), "127.0.0.1", env)
    gateways = replicas["gateway"]
    assert [g.port for g in gateways] == [8080, 8080 + REPLICA_PORT_STEP, 8080 + 2 * REPLICA_PORT_STEP]
    assert [g.label for g in gateways] == ["gateway", "gateway-1", "gateway-2"]
    for gateway in gateways:
        assert gateway.env["DATABASE_URL"] == env["DATABASE_URL"] and gateway.env["RAGTUNE_STATE_DIR"] == "/state"
        assert gateway.env["RAGTUNE_GATEWAY_PORT"] == str(gateway.port)
        assert gateway.env["RAGTUNE_GATEWAY_RETRIEVER_ADDRESS"] == "127.0.0.1:50051,127.0.0.1:50061"
        assert "RAGTUNE_GATEWAY_METRICS_PORT" not in gateway.env  # served on its own /metrics
    assert "RAGTUNE_RETRIEVER_GATEWAY_ADDRESS" not in replicas["retriever"][0].env  # nobody calls a gateway
    moved = plan([by_name["gateway"]], parse_replicas("gateway=2"), "0.0.0.0", {"RAGTUNE_GATEWAY_PORT": "9000"})
    assert [g.address for g in moved["gateway"]] == ["0.0.0.0:9000", "0.0.0.0:9010"]


def test_ragtune_up_passes_its_options_to_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def launch(argv: list[str] | None = None) -> int:
        calls.append(list(argv or []))
        return 0

    monkeypatch.setattr(launcher, "main", launch)
    runner = CliRunner()
    result = runner.invoke(app, ["up", "--replicas", "retriever=2,gateway=2", "--services", "retriever,gateway"])
    assert result.exit_code == 0, result.output
    assert calls == [["--replicas", "retriever=2,gateway=2", "--services", "retriever,gateway"]]
    result = runner.invoke(app, ["up", "--state-dir", "/tmp/s", "--grace", "5"])
    assert result.exit_code == 0 and calls[-1] == ["--state-dir", "/tmp/s", "--grace", "5.0"]
    result = runner.invoke(app, ["up"])
    assert result.exit_code == 0 and calls[-1] == []  # the launcher's defaults and RAGTUNE_* variables


def test_ragtune_up_refuses_a_bad_count_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(launcher, "start_embedded_postgres", lambda *_: pytest.fail("started a database"))
    result = CliRunner().invoke(app, ["up", "--replicas", "gateway=0", "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 2 and "--replicas" in result.output
    assert not (tmp_path / "state").exists()
