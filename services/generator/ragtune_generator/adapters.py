"""The adapter catalogue of one replica: publishing to, and reading from, the shared registry
(PostgreSQL + the adapter store), a mirror of it kept fresh by LISTEN/NOTIFY, and the check of an
adapter's files (at start, retried while they fail, and when the engine refuses them).

Every replica can serve every adapter of its base model: a request names an adapter, the catalogue
resolves it (mirror, else the database), checks the tenant, and loads it into the engine on first
use (see :mod:`ragtune_generator.residency`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from ragtune_common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, RagtuneError
from ragtune_generator import adapter_files as files
from ragtune_generator.adapter_files import BaseModelInfo
from ragtune_generator.registry import AdapterRow, RegistryStore
from ragtune_generator.residency import AdapterResidency, LoraEngine

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
DEFAULT_TENANT = "default"
LEGACY_REGISTRY = Path("generator") / "adapters.json"


def _describe(exc: BaseException) -> str:
    return exc.message if isinstance(exc, RagtuneError) else f"{type(exc).__name__}: {exc}"


class AdapterCatalog:
    def __init__(
        self,
        registry: RegistryStore,
        engine: LoraEngine,
        base: BaseModelInfo,
        store: Path,
        roots: list[Path],
        max_rank: int,
        capacity: int,
    ) -> None:
        self._registry = registry
        self._engine = engine
        self._base = base
        self._store = store
        self._roots = roots
        self._max_rank = max_rank
        self.residency = AdapterResidency(engine, capacity)
        self.rows: dict[str, AdapterRow] = {}  # mirror of this base model's registry rows, by name
        self._publishing = asyncio.Lock()

    def path(self, row: AdapterRow) -> Path:
        return self._store / row.directory

    # -- the mirror, kept by the listener ------------------------------------------------------

    async def resync(self) -> None:
        fresh = {row.name: row for row in await self._registry.list(self._base.name)}
        for name in set(self.rows) - set(fresh):
            await self._forget(name)
        for row in fresh.values():
            await self._remember(row)

    async def changed(self, name: str) -> None:
        row = await self._registry.get(name)
        if row is None or row.base_model != self._base.name:
            await self._forget(name)
        else:
            await self._remember(row)

    async def _remember(self, row: AdapterRow) -> None:
        old = self.rows.get(row.name)
        if old is not None and old.id != row.id:
            await self.residency.retire(old.id)
        self.rows[row.name] = row

    async def _forget(self, name: str) -> None:
        old = self.rows.pop(name, None)
        if old is not None:
            await self.residency.retire(old.id)

    # -- serving -------------------------------------------------------------------------------

    async def resolve(self, name: str, tenant: str) -> AdapterRow:
        """The servable adapter ``name`` of ``tenant``; another tenant's is NOT_FOUND like an unknown one."""
        row = self.rows.get(name)
        if row is None:  # published a moment ago on another replica, before its notification came
            row = await self._registry.get(name)
            if row is not None and row.base_model == self._base.name:
                self.rows[name] = row
        if row is None or row.base_model != self._base.name or row.tenant != (tenant or DEFAULT_TENANT):
            raise NotFound(f"adapter {name!r} is not loaded", field="adapter")
        if row.load_error:
            raise FailedPrecondition(f"adapter {name!r} cannot be loaded: {row.load_error}", field="adapter")
        return row

    async def acquire(self, row: AdapterRow) -> None:
        """Hold the adapter in this replica's engine for one request (release with ``residency``)."""
        try:
            await self.residency.acquire(row.id, row.name, str(self.path(row)))
        except RagtuneError:
            raise
        except Exception as exc:
            error = await self.check(row)
            reason = error or f"this replica's engine refused it: {_describe(exc)}"
            raise FailedPrecondition(f"adapter {row.name!r} cannot be loaded: {reason}", field="adapter") from exc

    # -- publishing ----------------------------------------------------------------------------

    async def publish(self, name: str, path: str, tenant: str) -> tuple[AdapterRow, bool]:
        if not _NAME.match(name):
            raise InvalidArgument("must be 1-128 characters of letters, digits, '_', '.', ':', '-'", field="name")
        source = files.resolve_under_roots(path, self._roots)
        tenant = tenant or DEFAULT_TENANT
        async with self._publishing:
            config, fingerprint = await asyncio.to_thread(files.inspect_adapter, source, self._base, self._max_rank)
            existing = await self._registry.get(name)
            if existing is not None:
                return self._same(existing, fingerprint, tenant), False
            lora_id = await self._registry.next_id()
            row = AdapterRow(
                id=lora_id,
                name=name,
                tenant=tenant,
                base_model=self._base.name,
                rank=int(config["r"]),
                alpha=float(config.get("lora_alpha", config["r"])),
                target_modules=sorted(str(t) for t in config["target_modules"]),
                fingerprint=fingerprint,
                directory=f"{lora_id}-{fingerprint[:16]}",
                created_at=datetime.now(UTC),
                load_error="",
            )
            await asyncio.to_thread(files.copy_into_store, source, self._store, row.directory)
            try:
                await self.residency.acquire(row.id, row.name, str(self.path(row)))
            except Exception as exc:
                await asyncio.to_thread(files.remove_from_store, self._store, row.directory)
                if isinstance(exc, RagtuneError):
                    raise
                raise FailedPrecondition(f"the engine refused the adapter: {_describe(exc)}", field="path") from exc
            self.residency.release(row.id)  # loaded and warm here; evictable like any other
            try:
                inserted = await self._registry.insert(row)
            except BaseException:
                await self.residency.retire(row.id)
                await asyncio.to_thread(files.remove_from_store, self._store, row.directory)
                raise
            if not inserted:  # another replica published this name meanwhile
                await self.residency.retire(row.id)
                await asyncio.to_thread(files.remove_from_store, self._store, row.directory)
                existing = await self._registry.get(name)
                if existing is None:
                    raise AlreadyExists(f"{name!r} was published and removed meanwhile; retry", field="name")
                return self._same(existing, fingerprint, tenant), False
            self.rows[name] = row
            log.info("published adapter %s (id %d, rank %d) to %s", name, row.id, row.rank, self.path(row))
            return row, True

    @staticmethod
    def _same(existing: AdapterRow, fingerprint: str, tenant: str) -> AdapterRow:
        if existing.fingerprint == fingerprint and existing.tenant == tenant:
            return existing
        raise AlreadyExists(f"a different adapter is already loaded as {existing.name!r}; use a new name", field="name")

    async def unload(self, name: str, tenant: str) -> None:
        row = await self._registry.get(name)
        if row is None or row.tenant != (tenant or DEFAULT_TENANT):
            raise NotFound(f"adapter {name!r} is not loaded", field="name")
        if await self._registry.delete(name):
            await self._forget(name)
            await self.residency.retire(row.id)  # published here but never mirrored: retire by id too
            await asyncio.to_thread(files.remove_from_store, self._store, row.directory)
            log.info("unloaded adapter %s (id %d)", name, row.id)

    async def list(self, tenant: str = "") -> list[AdapterRow]:
        return await self._registry.list(self._base.name, tenant)

    # -- checking stored files -----------------------------------------------------------------

    async def check(self, row: AdapterRow) -> str:
        """Check the row's stored files and record the outcome in the registry (announced to every
        replica when it changes); returns the error, ``''`` when they are whole."""
        try:
            await asyncio.to_thread(files.check_stored, self.path(row), self._base, self._max_rank, row.fingerprint)
            error = ""
        except (RagtuneError, OSError) as exc:
            error = _describe(exc)
        if error != row.load_error:
            if error:
                log.error("adapter %s (id %d): its stored files cannot be loaded: %s", row.name, row.id, error)
            else:
                log.info("adapter %s (id %d) can be loaded again", row.name, row.id)
            await self._registry.mark(row, error)
            await self.changed(row.name)
        return error

    async def check_all(self, only_failed: bool = False) -> None:
        for row in await self._registry.list(self._base.name):
            if row.load_error or not only_failed:
                await self.check(row)

    async def retry_failed(self, interval_s: float) -> None:
        """Re-check failed adapters forever (a replaced volume, files restored by an operator)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.check_all(only_failed=True)
            except RagtuneError as exc:
                log.warning("re-checking failed adapters: %s", exc.message)

    # -- the registry file of earlier versions ------------------------------------------------

    async def import_legacy(self, state_dir: Path) -> int:
        """Import ``<state_dir>/generator/adapters.json`` (one replica's registry before PostgreSQL)
        once: each adapter is copied into the store; one whose files are gone is registered with the
        error, never dropped. The file is then renamed ``adapters.json.imported``."""
        legacy = state_dir / LEGACY_REGISTRY
        if not legacy.is_file():
            return 0
        imported = 0
        for record in json.loads(legacy.read_text()).get("adapters", []):
            if await self._registry.get(record["name"]) is not None:
                continue
            lora_id = await self._registry.next_id()
            row = AdapterRow(
                id=lora_id,
                name=record["name"],
                tenant=record.get("tenant") or DEFAULT_TENANT,
                base_model=record.get("base_model") or self._base.name,
                rank=int(record["rank"]),
                alpha=float(record["alpha"]),
                target_modules=list(record["target_modules"]),
                fingerprint=record["fingerprint"],
                directory=f"{lora_id}-{record['fingerprint'][:16]}",
                created_at=datetime.now(UTC),
                load_error="",
            )
            try:
                await asyncio.to_thread(files.copy_into_store, Path(record["path"]), self._store, row.directory)
            except OSError as exc:
                row = dataclasses.replace(row, load_error=f"not found when importing: {exc}")
            imported += await self._registry.insert(row)
            log.info("imported adapter %s from %s", row.name, legacy)
        with contextlib.suppress(FileNotFoundError):  # another replica on this state directory was quicker
            os.replace(legacy, legacy.with_name(legacy.name + ".imported"))
        return imported
