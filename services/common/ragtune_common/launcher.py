"""Start the whole system on embedded defaults, in the foreground (``make run``).

Starts the embedded PostgreSQL once (unless ``DATABASE_URL`` is set) and hands its URL to every
service, starts each installed service as its own process, waits until each reports SERVING on
grpc.health.v1, prints where it listens, and on Ctrl-C / SIGTERM stops them all (SIGTERM, then
their grace period, then SIGKILL) before stopping the database.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ragtune_common.database import start_embedded_postgres


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


def health_status(address: str, timeout_s: float = 1.0) -> int | None:
    """The overall grpc.health.v1 status of a server, or None if it does not answer."""
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
            return int(reply.status)
    except grpc.RpcError:
        return None


def http_ready(address: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=timeout_s) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def wait_serving(address: str, process: subprocess.Popen[bytes], timeout_s: float, http: bool = False) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if http_ready(address) if http else health_status(address) == health_pb2.HealthCheckResponse.SERVING:
            return True
        time.sleep(0.5)
    return False


def stop_all(processes: list[tuple[ServiceSpec, subprocess.Popen[bytes]]], grace_s: float) -> None:
    for _, process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for spec, process in reversed(processes):
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{spec.name} did not stop within {grace_s:.0f}s, killing it", file=sys.stderr)
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ragtune up", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("RAGTUNE_HOST", "127.0.0.1"))
    parser.add_argument("--state-dir", default=os.environ.get("RAGTUNE_STATE_DIR", ".ragtune"))
    parser.add_argument("--start-timeout", type=float, default=600.0, help="seconds to wait for SERVING")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds services get to drain on stop")
    args = parser.parse_args(argv)

    state_dir = Path(args.state_dir).expanduser().resolve()
    env = dict(os.environ, RAGTUNE_STATE_DIR=str(state_dir))
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = start_embedded_postgres(state_dir)  # stops when this process exits
        print(f"database   embedded PostgreSQL, data in {state_dir / 'postgres'}", flush=True)
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    processes: list[tuple[ServiceSpec, subprocess.Popen[bytes]]] = []
    # every service learns where the others listen (RAGTUNE_<SERVICE>_<OTHER>_ADDRESS), unless set
    addresses = {s.name: f"{args.host}:{env.get(s.port_env, s.port)}" for s in SERVICES if not s.http}
    try:
        for spec in installed_services():
            port = int(env.get(spec.port_env, spec.port))
            child_env = dict(env, **{spec.port_env: str(port), f"RAGTUNE_{spec.name.upper()}_HOST": args.host})
            for other, address in addresses.items():
                child_env.setdefault(f"RAGTUNE_{spec.name.upper()}_{other.upper()}_ADDRESS", address)
            process = subprocess.Popen([sys.executable, "-m", spec.module], env=child_env)
            processes.append((spec, process))
            address = f"{args.host}:{port}"
            if not wait_serving(address, process, args.start_timeout, spec.http) or stop_requested:
                if not stop_requested:
                    print(f"{spec.name} failed to reach SERVING at {address}", file=sys.stderr)
                return 1
            if spec.http:
                print(f"{spec.name:<10} http://{address}/v1 (OpenAPI: http://{address}/docs)", flush=True)
                if not env.get("RAGTUNE_GATEWAY_ADMIN_KEY"):
                    print(f"{'':<10} keys: {state_dir / 'gateway' / 'credentials.json'}", flush=True)
            else:
                print(f"{spec.name:<10} SERVING on {address}", flush=True)
        print("ragtune is up; Ctrl-C stops everything", flush=True)
        while not stop_requested:
            for spec, process in processes:
                if process.poll() is not None:
                    print(f"{spec.name} exited with code {process.returncode}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        print("stopping ragtune ...", flush=True)
        stop_all(processes, args.grace)


if __name__ == "__main__":
    sys.exit(main())
