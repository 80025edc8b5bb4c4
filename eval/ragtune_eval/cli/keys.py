"""``ragtune keys`` and ``ragtune tenants``: API keys and tenants, through the gateway's admin API
(``/v1/admin``), with the admin key (``RAGTUNE_ADMIN_KEY``, else the one ``ragtune up`` wrote to the
state directory). A tenant's own key cannot manage keys."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer

from ragtune_eval.cli.gateway import Gateway, admin_key
from ragtune_eval.cli.terminal import one_line_errors, say, show_table, when

keys_app = typer.Typer(help="API keys of a tenant: create, list, revoke (needs the admin key).", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants: create, list (needs the admin key).", no_args_is_help=True)
DEFAULT_TENANT = "default"  # the tenant the gateway makes on its first start
Tenant = Annotated[str, typer.Option(help="the tenant's id (`ragtune tenants list`)")]


def keys_path(tenant: str, key_id: str = "") -> str:
    path = f"/v1/admin/tenants/{quote(tenant, safe='')}/keys"
    return f"{path}/{quote(key_id, safe='')}" if key_id else path


@keys_app.command()
def create(tenant: Tenant = DEFAULT_TENANT) -> None:
    """Create an API key for a tenant; the key is printed this once (only its hash is stored)."""
    with one_line_errors(), Gateway(key=admin_key()) as gw:
        created = gw.request("POST", keys_path(tenant))
    say(f"key {created['id']} of tenant {tenant}; shown only now, so keep it:")
    say(created["key"])
    say(f"use it: export RAGTUNE_API_KEY={created['key']}")


@keys_app.command("list")
def list_keys(tenant: Tenant = DEFAULT_TENANT) -> None:
    """List a tenant's keys (their first characters, never the keys), revoked ones too."""
    with one_line_errors(), Gateway(key=admin_key()) as gw:
        page = gw.request("GET", keys_path(tenant))
    show_table(
        ("id", "starts with", "created", "expires", "revoked"),
        (
            (k["id"], f"{k['prefix']}...", when(k["created_at"]), when(k.get("expires_at")), when(k["revoked_at"]))
            for k in page["data"]
        ),
    )


@keys_app.command()
def revoke(
    key_ids: Annotated[list[str], typer.Argument(help="key ids (`ragtune keys list`)")], tenant: Tenant = DEFAULT_TENANT
) -> None:
    """Revoke keys: every gateway process refuses them at once."""
    with one_line_errors(), Gateway(key=admin_key()) as gw:
        for key_id in key_ids:
            gw.request("DELETE", keys_path(tenant, key_id))
            say(f"revoked {key_id} of tenant {tenant}")


@tenants_app.command("list")
def list_tenants() -> None:
    """List the tenants."""
    with one_line_errors(), Gateway(key=admin_key()) as gw:
        page = gw.request("GET", "/v1/admin/tenants")
    show_table(("id", "name", "created"), ((t["id"], t["name"], when(t["created_at"])) for t in page["data"]))


@tenants_app.command("create")
def create_tenant(
    name: str,
    tenant_id: Annotated[str | None, typer.Option("--id", help="1-64 of [A-Za-z0-9_.-]; default: generated")] = None,
) -> None:
    """Create a tenant (then `ragtune keys create --tenant ID` gives it a key)."""
    with one_line_errors(), Gateway(key=admin_key()) as gw:
        tenant = gw.request("POST", "/v1/admin/tenants", json={"name": name, "id": tenant_id})
    say(f"tenant {tenant['id']} ({tenant['name']})")
