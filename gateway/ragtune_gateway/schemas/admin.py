"""``/v1/admin``: creating a tenant."""

from __future__ import annotations

from pydantic import Field

from ragtune_gateway.schemas.common import Text, WireModel


class CreateTenant(WireModel):
    name: Text = Field(min_length=1, max_length=256)
    id: Text | None = Field(default=None, max_length=64, description="1-64 of [A-Za-z0-9_.-]; unset = generated")
