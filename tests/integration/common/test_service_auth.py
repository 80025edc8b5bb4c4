"""Who may talk to a gRPC service: the service token on every RPC but health, the loopback rule, and
mutual TLS, against a real retriever on a real port."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import SecretStr

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune.retriever.v1 import retriever_pb2_grpc
from ragtune_common.auth import InsecureBindError
from ragtune_common.channels import ChannelSecurity, health_status, open_channel
from ragtune_common.server import GrpcServer
from ragtune_retriever.main import SERVICE_NAME, create_server
from ragtune_retriever.runtime import RetrieverRuntime
from ragtune_retriever.settings import RetrieverSettings
from tests.fixtures.retriever import serve_retriever
from tests.fixtures.security import SECURITY, SERVICE_TOKEN, direct_channel

SERVING = health_pb2.HealthCheckResponse.SERVING


async def list_collections(channel: grpc.aio.Channel) -> pb.ListCollectionsResponse:
    return await retriever_pb2_grpc.RetrieverServiceStub(channel).ListCollections(
        pb.ListCollectionsRequest(), timeout=10
    )


@pytest.mark.parametrize(
    "security",
    [ChannelSecurity(), ChannelSecurity(token="not-the-service-token-at-all")],
    ids=["no-token", "wrong-token"],
)
async def test_calls_without_the_token_are_unauthenticated(retriever_server: GrpcServer, security):
    async with direct_channel(retriever_server.port, SERVICE_NAME, security) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await list_collections(channel)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "RAGTUNE_SERVICE_TOKEN" in (err.value.details() or "")
        # streaming calls too
        stream = retriever_pb2_grpc.RetrieverServiceStub(channel).StreamUpsertDocuments(
            iter([pb.UpsertDocumentsRequest(collection="nope")])
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # health answers without a token; reflection does not (it describes every method)
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in reflect:
                pass
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # the synchronous probe (launcher, container healthchecks) needs no token either
    assert await asyncio.to_thread(health_status, f"127.0.0.1:{retriever_server.port}") == SERVING


async def test_the_token_opens_every_method(retriever_server: GrpcServer):
    async with direct_channel(retriever_server.port, SERVICE_NAME, SECURITY) as channel:
        await list_collections(channel)
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = [s.name async for reply in reflect for s in reply.list_services_response.service]
        assert SERVICE_NAME in names


async def test_non_loopback_bind_without_token_refuses_to_start(retriever_settings: RetrieverSettings):
    exposed = retriever_settings.model_copy(update={"host": "0.0.0.0", "service_token": None})
    with pytest.raises(InsecureBindError) as err:
        await create_server(exposed, RetrieverRuntime(exposed))
    assert "RAGTUNE_SERVICE_TOKEN" in str(err.value.code)
    # loopback without a token is allowed (a developer's machine), and answers without one
    local = retriever_settings.model_copy(update={"host": "127.0.0.1", "service_token": None})
    bound = await create_server(local, RetrieverRuntime(local))
    await bound.server.stop(None)


def test_the_service_process_exits_with_a_clear_message(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "RAGTUNE_SERVICE_TOKEN"}
    env.update(RAGTUNE_RETRIEVER_HOST="0.0.0.0", RAGTUNE_RETRIEVER_PORT="0", RAGTUNE_STATE_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "ragtune_retriever.main"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "RAGTUNE_SERVICE_TOKEN" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_short_token_is_refused():
    with pytest.raises(ValueError, match="at least 16 characters"):
        RetrieverSettings(service_token=SecretStr("short"))


# --- mutual TLS -------------------------------------------------------------------------------


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write(stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        (directory / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("ragtune test CA"))
        .issuer_name(name("ragtune test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    write("ca", ca_key, ca)
    for stem, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(f"ragtune {stem}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write(stem, key, cert)
    return {p.name: p for p in directory.iterdir()}


@pytest_asyncio.fixture
async def tls_retriever(retriever_settings: RetrieverSettings, tmp_path: Path) -> AsyncIterator[tuple[int, dict]]:
    files = _certificates(tmp_path)
    settings = RetrieverSettings(
        **{
            **retriever_settings.model_dump(),
            "tls_cert_file": files["server.pem"],
            "tls_key_file": files["server.key"],
            "tls_ca_file": files["ca.pem"],
        }
    )
    async with serve_retriever(settings) as bound:
        yield bound.port, files


async def test_mutual_tls_round_trip(tls_retriever: tuple[int, dict]):
    port, files = tls_retriever
    client = ChannelSecurity(
        token=SERVICE_TOKEN, cert_file=files["client.pem"], key_file=files["client.key"], ca_file=files["ca.pem"]
    )
    async with open_channel(f"127.0.0.1:{port}", SERVICE_NAME, client) as channel:
        await list_collections(channel)
    assert await asyncio.to_thread(health_status, f"127.0.0.1:{port}", client, 5) == SERVING
    # a name list resolved to addresses still checks the certificate
    async with open_channel(f"localhost:{port},127.0.0.1:{port}", SERVICE_NAME, client) as channel:
        await list_collections(channel)

    refused = {
        "plaintext": ChannelSecurity(token=SERVICE_TOKEN),
        "no client certificate": ChannelSecurity(token=SERVICE_TOKEN, ca_file=files["ca.pem"]),
        "server not trusted": ChannelSecurity(
            token=SERVICE_TOKEN, cert_file=files["client.pem"], key_file=files["client.key"]
        ),
    }
    for label, security in refused.items():
        async with open_channel(f"127.0.0.1:{port}", SERVICE_NAME, security, health_check=False) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await list_collections(channel)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, label
    # TLS does not replace the token
    no_token = ChannelSecurity(cert_file=files["client.pem"], key_file=files["client.key"], ca_file=files["ca.pem"])
    async with open_channel(f"127.0.0.1:{port}", SERVICE_NAME, no_token) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await list_collections(channel)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
