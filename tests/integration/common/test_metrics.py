"""Per-service Prometheus metrics: every RPC counted by method and status, timed, gauged in flight,
and exported over HTTP on the service's metrics port."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import pytest
from prometheus_client import REGISTRY

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune_common.metrics import serve_metrics
from tests.ports import free_port

LIST = "/ragtune.retriever.v1.RetrieverService/ListCollections"
GET = "/ragtune.retriever.v1.RetrieverService/GetCollection"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_rpcs_are_counted_by_method_and_status(stub):
    ok_before = _sample("ragtune_rpc_requests_total", method=LIST, code="OK")
    missing_before = _sample("ragtune_rpc_requests_total", method=GET, code="NOT_FOUND")
    timed_before = _sample("ragtune_rpc_seconds_count", method=LIST)

    for _ in range(3):
        await stub.ListCollections(pb.ListCollectionsRequest())
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetCollection(pb.GetCollectionRequest(name="metrics-no-such-collection"))

    assert _sample("ragtune_rpc_requests_total", method=LIST, code="OK") == ok_before + 3
    assert _sample("ragtune_rpc_requests_total", method=GET, code="NOT_FOUND") == missing_before + 1
    assert _sample("ragtune_rpc_seconds_count", method=LIST) == timed_before + 3
    assert _sample("ragtune_rpc_in_flight", method=LIST) == 0


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return str(reply.read().decode())


async def test_metrics_port_exports_the_rpc_series(stub):
    await stub.ListCollections(pb.ListCollectionsRequest())
    assert serve_metrics("127.0.0.1", 0) is None  # 0 = off
    port = serve_metrics("127.0.0.1", free_port())
    body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
    assert f'ragtune_rpc_requests_total{{code="OK",method="{LIST}"}}' in body
    assert "grpc.health" not in body  # probes are not traffic
