"""Start the whole system on embedded defaults and keep it up, in the foreground (``make run``,
``ragtune up``).

Starts the embedded PostgreSQL once (unless ``DATABASE_URL`` is set) and hands its URL to every
service; starts N processes of each installed service (``--replicas retriever=2,generator=2,gateway=2``)
on consecutive ports (the service's port, +10, +20, ...: gateways on 8080, 8090, ...), each gRPC
service with its Prometheus metrics on its port + 1000; tells every caller the address list of the
services it calls; waits until each replica reports SERVING on grpc.health.v1 (a gateway: answers
``/healthz``) and prints where it listens. Gateway replicas share the database and the state
directory: any of them answers any request (put a load balancer in front for one address); they
start one after another, so the first makes the admin key and the others read it. Then it supervises: a process that
dies is restarted with exponential backoff (logged), the rest of the stack stays up. Ctrl-C /
SIGTERM stops them all (SIGTERM, their grace period, then SIGKILL) before the database.

Callers authenticate to the services with ``RAGTUNE_SERVICE_TOKEN``; when it is unset the launcher
makes one for the run, so even loopback ports answer only the stack's own processes. It is written,
readable only by the owner, to ``<state_dir>/service-token`` (for grpcurl: ``-H "authorization:
Bearer $(cat .ragtune/service-token)"``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from grpc_health.v1 import health_pb2

from ragtune_common import channels
from ragtune_common.database import start_embedded_postgres
from ragtune_common.state_paths import credentials_path

REPLICA_PORT_STEP = 10
METRICS_PORT_OFFSET = 1000
MAX_BACKOFF_S = 30.0
HEALTHY_RESET_S = 60.0  # a replica that stayed up this long starts its backoff afresh


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    port_env: str
    port: int
    http: bool = False  # answers GET /healthz over HTTP (the gateway) instead of grpc.health.v1


SERVICES = (
    ServiceSpec("retriever", "ragtune_retriever.main", "RAGTUNE_RETRIEVER_PORT", 50051),
    ServiceSpec("generator", "ragtune_generator.main", "RAGTUNE_GENERATOR_PORT", 50052),
    ServiceSpec("trainer", "ragtune_trainer.main", "RAGTUNE_TRAINER_PORT", 50053),
    # Last: it fronts the others (its /healthz answers once its database and gRPC clients are open).
    ServiceSpec("gateway", "ragtune_gateway.main", "RAGTUNE_GATEWAY_PORT", 8080, http=True),
)


def installed_services() -> list[ServiceSpec]:
    return [spec for spec in SERVICES if importlib.util.find_spec(spec.module.split(".")[0]) is not None]


def select_services(text: str) -> list[ServiceSpec]:
    """The installed services named in ``text`` (comma-separated), or all installed ones."""
    installed = installed_services()
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - {spec.name for spec in installed})
    if unknown:
        raise ValueError(f"--services: not installed or unknown: {', '.join(unknown)}")
    return [spec for spec in installed if not names or spec.name in names]


def parse_replicas(text: str) -> dict[str, int]:
    """``retriever=2,generator=2`` -> counts per service (1 for those not named)."""
    counts = {spec.name: 1 for spec in SERVICES}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in counts:
            raise ValueError(f"--replicas: expected SERVICE=N with SERVICE one of {', '.join(counts)}, got {item!r}")
        if not value.strip().isdigit() or not 1 <= int(value) <= 9:
            raise ValueError(f"--replicas: {name.strip()} needs a count from 1 to 9, got {value.strip()!r}")
        counts[name.strip()] = int(value)
    return counts


def health_status(address: str, timeout_s: float = 1.0) -> int | None:
    """The overall grpc.health.v1 status of a server, or None if it does not answer (health needs no
    token; TLS when ``RAGTUNE_TLS_*`` is set)."""
    return channels.health_status(address, channels.security_from_environment(), timeout_s)


def http_ready(address: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=timeout_s) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def is_ready(address: str, http: bool) -> bool:
    return http_ready(address) if http else health_status(address) == health_pb2.HealthCheckResponse.SERVING


@dataclass
class Replica:
    """One supervised process of a service."""

    spec: ServiceSpec
    index: int
    host: str
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 1.0
    restart_at: float | None = None
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.label = self.spec.name if self.index == 0 else f"{self.spec.name}-{self.index}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        # A process group of its own: what the service spawns (vLLM's engine core and workers, training
        # and extraction processes) goes with it when it dies, instead of living on as orphans.
        self.process = subprocess.Popen([sys.executable, "-m", self.spec.module], env=self.env, start_new_session=True)
        self.started_at = time.monotonic()
        self.restart_at = None

    def kill_group(self) -> None:
        """SIGKILL whatever is left of this replica's process group (its children, once it is gone)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def schedule_restart(self, now: float) -> float:
        """After an unexpected exit: restart after the current backoff, which doubles up to a cap
        (and starts afresh for a replica that had stayed up a while)."""
        if now - self.started_at >= HEALTHY_RESET_S:
            self.backoff_s = 1.0
        delay = self.backoff_s
        self.restart_at = now + delay
        self.backoff_s = min(MAX_BACKOFF_S, self.backoff_s * 2)
        return delay


def plan(
    services: list[ServiceSpec], counts: dict[str, int], host: str, env: dict[str, str]
) -> dict[str, list[Replica]]:
    """Every replica of every service, with its port and environment. Each caller learns the address
    list of the others (``RAGTUNE_<SERVICE>_<OTHER>_ADDRESS=h:p1,h:p2``) unless set already."""
    ports = {
        spec.name: [int(env.get(spec.port_env, spec.port)) + REPLICA_PORT_STEP * i for i in range(counts[spec.name])]
        for spec in services
    }
    addresses = {s.name: ",".join(f"{host}:{p}" for p in ports[s.name]) for s in services if not s.http}
    replicas: dict[str, list[Replica]] = {}
    for spec in services:
        prefix = f"RAGTUNE_{spec.name.upper()}_"
        replicas[spec.name] = []
        for index, port in enumerate(ports[spec.name]):
            child = dict(env, **{spec.port_env: str(port), f"{prefix}HOST": host})
            if not spec.http:
                child[f"{prefix}METRICS_PORT"] = str(port + METRICS_PORT_OFFSET)
            child["RAGTUNE_REPLICA_NAME"] = spec.name if index == 0 else f"{spec.name}-{index}"
            for other, address in addresses.items():
                if other != spec.name:
                    child.setdefault(f"{prefix}{other.upper()}_ADDRESS", address)
            replicas[spec.name].append(Replica(spec, index, host, port, child))
    return replicas


def stop_all(replicas: list[Replica], grace_s: float) -> None:
    running = [r for r in replicas if r.process is not None and r.process.poll() is None]
    for replica in running:
        assert replica.process is not None
        replica.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for replica in reversed(running):
        assert replica.process is not None
        try:
            replica.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{replica.label} did not stop within {grace_s:.0f}s, killing it", file=sys.stderr)
            replica.process.kill()
            replica.process.wait()
    for replica in replicas:
        replica.kill_group()


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def supervise_once(replicas: list[Replica], now: float) -> None:
    """One supervision step: notice exits, schedule restarts, start what is due."""
    for replica in replicas:
        code = replica.exited()
        if code is not None and replica.restart_at is None:
            replica.kill_group()  # e.g. a generator killed with SIGKILL leaves its vLLM engine core behind
            delay = replica.schedule_restart(now)
            _log(
                f"{replica.label} ({replica.address}) exited with code {code}; "
                f"restarting in {delay:.0f}s (restart {replica.restarts + 1})"
            )
        elif replica.restart_at is not None and now >= replica.restart_at:
            replica.restarts += 1
            replica.start()
            _log(f"{replica.label} restarted (pid {replica.process.pid if replica.process else '?'})")


def _service_token(env: dict[str, str], state_dir: Path) -> None:
    if env.get("RAGTUNE_SERVICE_TOKEN"):
        return
    token = secrets.token_urlsafe(32)
    path = state_dir / "service-token"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    env["RAGTUNE_SERVICE_TOKEN"] = token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ragtune up", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("RAGTUNE_HOST", "127.0.0.1"))
    parser.add_argument("--state-dir", default=os.environ.get("RAGTUNE_STATE_DIR", ".ragtune"))
    parser.add_argument(
        "--replicas",
        default=os.environ.get("RAGTUNE_REPLICAS", ""),
        help="processes per service, e.g. retriever=2,generator=2,trainer=2,gateway=2 (default 1 each)",
    )
    parser.add_argument(
        "--services",
        default=os.environ.get("RAGTUNE_SERVICES", ""),
        help="start only these, comma-separated (default: every installed service)",
    )
    parser.add_argument("--start-timeout", type=float, default=600.0, help="seconds to wait for SERVING")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds services get to drain on stop")
    args = parser.parse_args(argv)
    try:
        counts = parse_replicas(args.replicas)
        services = select_services(args.services)
    except ValueError as exc:
        parser.error(str(exc))

    state_dir = Path(args.state_dir).expanduser().resolve()
    env = dict(os.environ, RAGTUNE_STATE_DIR=str(state_dir))
    _service_token(env, state_dir)
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = start_embedded_postgres(state_dir)  # stops when this process exits
        print(f"database   embedded PostgreSQL, data in {state_dir / 'postgres'}", flush=True)
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    replicas = plan(services, counts, args.host, env)
    started: list[Replica] = []
    try:
        for name, group in replicas.items():
            deadline = time.monotonic() + args.start_timeout
            # A service's replicas start together, services one after another; gateways one by one,
            # so that the first writes the admin credentials that the others then read.
            together = not group[0].spec.http
            for replica in group if together else group[:1]:
                replica.start()
                started.append(replica)
            for replica in group:
                if replica.process is None:
                    replica.start()
                    started.append(replica)
                while not is_ready(replica.address, replica.spec.http):
                    supervise_once([r for r in started if r.spec.name != name], time.monotonic())
                    if stop_requested:
                        return 1
                    if replica.exited() is not None or time.monotonic() > deadline:
                        print(f"{replica.label} failed to reach SERVING at {replica.address}", file=sys.stderr)
                        return 1
                    time.sleep(0.5)
                if replica.spec.http:
                    url, pid = f"http://{replica.address}", replica.process.pid if replica.process else "?"
                    print(f"{replica.label:<11} {url}/v1 (OpenAPI: {url}/docs, pid {pid})")
                    if replica.index == 0 and not env.get("RAGTUNE_GATEWAY_ADMIN_KEY"):
                        print(f"{'':<11} keys: {credentials_path(state_dir)}")
                else:
                    metrics = replica.port + METRICS_PORT_OFFSET
                    pid = replica.process.pid if replica.process else "?"
                    print(f"{replica.label:<11} SERVING on {replica.address} (pid {pid}, metrics :{metrics})")
                sys.stdout.flush()
        print("ragtune is up; Ctrl-C stops everything", flush=True)
        while not stop_requested:
            supervise_once(started, time.monotonic())
            time.sleep(0.5)
        return 0
    finally:
        print("stopping ragtune ...", flush=True)
        stop_all(started, args.grace)


if __name__ == "__main__":
    sys.exit(main())
