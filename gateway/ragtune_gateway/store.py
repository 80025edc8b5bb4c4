"""Transitional re-exports while the resources move to :mod:`ragtune_gateway.repositories`."""

from ragtune_gateway.ids import KEY_PREFIX, hash_key, new_id, new_key
from ragtune_gateway.repositories import SCHEMA
from ragtune_gateway.repositories.files import (
    FileRecord,
    delete_file,
    delete_files,
    get_file,
    insert_file,
    list_files,
)
from ragtune_gateway.repositories.tenants import (
    KEY_REVOKED_CHANNEL,
    ApiKey,
    Tenant,
    create_key,
    create_tenant,
    get_tenant,
    list_keys,
    list_tenants,
    revoke_key,
    tenant_for_key_hash,
)

__all__ = [
    "KEY_PREFIX",
    "KEY_REVOKED_CHANNEL",
    "SCHEMA",
    "ApiKey",
    "FileRecord",
    "Tenant",
    "create_key",
    "create_tenant",
    "delete_file",
    "delete_files",
    "get_file",
    "get_tenant",
    "hash_key",
    "insert_file",
    "list_files",
    "list_keys",
    "list_tenants",
    "new_id",
    "new_key",
    "revoke_key",
    "tenant_for_key_hash",
]
