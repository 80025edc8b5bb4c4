"""API keys: listed and revoked by the admin, the revocation effective at once on every gateway
process (each caches verified keys; a PostgreSQL notification drops the revoked one everywhere)."""

from __future__ import annotations

import asyncio

from ragtune_gateway.repositories import tenants
from tests.integration.gateway.conftest import GatewayFactory


async def test_admin_lists_keys_without_the_secret(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    tenant, key_id, key = await gateway.new_tenant()
    listed = await gateway.admin.get(f"/v1/admin/tenants/{tenant}/keys")
    assert listed.status_code == 200, listed.text
    (only,) = listed.json()["data"]
    assert only["id"] == key_id and only["prefix"] == key[:8] and only["revoked_at"] is None
    assert key not in listed.text  # only its hash is stored
    assert (await gateway.admin.get("/v1/admin/tenants/no-such-tenant/keys")).status_code == 404
    async with gateway.client(key) as tenant_client:  # a tenant's key is not the admin's
        assert (await tenant_client.get(f"/v1/admin/tenants/{tenant}/keys")).status_code == 401


async def test_revoked_key_is_refused_by_every_gateway_at_once(start_gateway: GatewayFactory) -> None:
    first = await start_gateway(auth_cache_s=300)
    second = await start_gateway(auth_cache_s=300)  # another replica, with its own cache
    tenant, key_id, key = await first.new_tenant()
    _, other_id, other_key = await first.new_tenant()
    async with first.client(key) as on_first, second.client(key) as on_second, second.client(other_key) as other:
        assert (await on_first.get("/v1/files")).status_code == 200
        assert (await on_second.get("/v1/files")).status_code == 200  # now cached there for 300 s
        assert (await other.get("/v1/files")).status_code == 200

        revoked = await first.admin.delete(f"/v1/admin/tenants/{tenant}/keys/{key_id}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None

        assert (await on_first.get("/v1/files")).status_code == 401  # where it was revoked: at once
        for _ in range(100):  # elsewhere: as soon as the notification arrives (allowed: 2 s)
            if (status := (await on_second.get("/v1/files")).status_code) != 200:
                break
            await asyncio.sleep(0.02)
        assert status == 401
        assert (await other.get("/v1/files")).status_code == 200  # the tenant's other keys are untouched

    listed = (await second.admin.get(f"/v1/admin/tenants/{tenant}/keys")).json()["data"]
    assert [k["revoked_at"] is not None for k in listed] == [True]
    # another tenant's key id under this tenant: not found, and not revoked
    assert (await first.admin.delete(f"/v1/admin/tenants/{tenant}/keys/{other_id}")).status_code == 404
    assert (await first.admin.delete(f"/v1/admin/tenants/{tenant}/keys/key_nope")).status_code == 404


async def test_an_expiring_key_stops_at_its_expiry_even_when_cached(start_gateway: GatewayFactory) -> None:
    """The keys an evaluation worker makes for a run expire unless extended (a killed worker never
    revokes its key): refused once expired, though the gateway caches verified keys for 300 s."""
    gateway = await start_gateway(auth_cache_s=300)
    pool = gateway.app.state.runtime.pool
    tenant, _, _ = await gateway.new_tenant()
    record, key = await tenants.create_key(pool, tenant, expires_in_s=1.5)
    assert record.expires_at is not None
    async with gateway.client(key) as client:
        assert (await client.get("/v1/files")).status_code == 200  # cached, but only until its expiry
        assert await tenants.extend_key(pool, record.id, 3.0)  # the worker's heartbeat
        await asyncio.sleep(2.0)
        assert (await client.get("/v1/files")).status_code == 200  # past the first expiry: extended
        await asyncio.sleep(1.5)
        assert (await client.get("/v1/files")).status_code == 401
        assert not await tenants.extend_key(pool, record.id, 60)  # an expired key is never brought back
    listed = (await gateway.admin.get(f"/v1/admin/tenants/{tenant}/keys")).json()["data"]
    expiring = next(k for k in listed if k["id"] == record.id)
    assert expiring["expires_at"] is not None and expiring["revoked_at"] is None
    assert all(k["expires_at"] is None for k in listed if k["id"] != record.id)  # admin keys never expire

    revoked, other = await tenants.create_key(pool, tenant, expires_in_s=60)
    assert await tenants.revoke_key(pool, revoked.id) is not None
    assert not await tenants.extend_key(pool, revoked.id, 60)  # nor a revoked one
    async with gateway.client(other) as client:
        assert (await client.get("/v1/files")).status_code == 401
