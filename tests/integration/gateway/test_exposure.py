"""What the gateway shows: ``/metrics`` names no tenant's models unless the admin asks, and file
content is a download (``Content-Disposition: attachment``, ``nosniff``), never a page of the origin."""

from __future__ import annotations

import httpx

from tests.integration.gateway.conftest import GatewayFactory


async def test_metrics_name_models_only_for_the_admin(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    _, _, key = await gateway.new_tenant()
    model = "ft:SmolLM2-135M-Instruct:acme-payroll:ftjob-1234"
    gateway.app.state.runtime.metrics.count_tokens(model, 11, 7)  # as a chat completion does
    async with gateway.client(key) as tenant_client, httpx.AsyncClient(base_url=gateway.url) as anonymous:
        for client in (anonymous, tenant_client):
            public = await client.get("/metrics")
            assert public.status_code == 200
            assert "acme-payroll" not in public.text and 'model="' not in public.text
            assert 'ragtune_gateway_tokens_total{kind="prompt"}' in public.text
    admin = (await gateway.admin.get("/metrics")).text
    assert f'ragtune_gateway_model_tokens_total{{kind="completion",model="{model}"}} 7.0' in admin


async def test_file_content_is_an_attachment(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    _, _, key = await gateway.new_tenant()
    page = b"<html><script>alert(document.cookie)</script></html>"
    async with gateway.client(key) as client:
        name = "r\u00e9sum\u00e9;1.html"
        uploaded = await client.post("/v1/files", files={"file": (name, page)}, data={"purpose": "assistants"})
        assert uploaded.status_code == 200, uploaded.text
        content = await client.get(f"/v1/files/{uploaded.json()['id']}/content")
    assert content.status_code == 200 and content.content == page
    assert content.headers["x-content-type-options"] == "nosniff"
    disposition = content.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert disposition == "attachment; filename=\"r_sum__1.html\"; filename*=UTF-8''r%C3%A9sum%C3%A9%3B1.html"
