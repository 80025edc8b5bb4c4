"""The FastAPI app: routers per resource, OpenAI-shaped errors, request ids and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from ragtune_gateway.auth import RequestIdMiddleware
from ragtune_gateway.body_limits import BodyLimitMiddleware
from ragtune_gateway.errors import install_error_handlers
from ragtune_gateway.metrics import MetricsMiddleware
from ragtune_gateway.routers import (
    admin,
    aliases,
    chat,
    completions,
    distillations,
    embeddings,
    evals,
    evaluations,
    files,
    fine_tuning,
    health,
    models,
    stored_completions,
    vector_stores,
)
from ragtune_gateway.routers import responses as responses_router
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.services.completion_retention import CompletionRetention
from ragtune_gateway.services.eval_runs import EvalRuns
from ragtune_gateway.services.evaluation_worker import EvaluationWorker
from ragtune_gateway.services.file_batches import FileBatchWorker
from ragtune_gateway.services.files import import_legacy_bytes
from ragtune_gateway.settings import GatewaySettings
from ragtune_gateway.ui import mount_console

DOCS_ASSETS = "/static/docs"  # Swagger UI's and ReDoc's scripts and styles, served by the gateway


def create_app(settings: GatewaySettings, runtime: GatewayRuntime | None = None) -> FastAPI:
    """The app; its runtime (pool, gRPC channels) opens in the lifespan, on the serving loop."""
    runtime = runtime or GatewayRuntime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        await import_legacy_bytes(runtime, settings.legacy_files_dir)
        worker = app.state.evaluations = EvaluationWorker(runtime, app, (EvalRuns(),))
        await worker.start()
        batches = app.state.file_batches = FileBatchWorker(runtime)
        await batches.resume()
        retention = CompletionRetention(runtime)
        retention.start()
        try:
            yield
        finally:
            await retention.close()
            await batches.close()
            await worker.close()
            await runtime.close()

    app = FastAPIOffline(  # /docs and /redoc from assets in the package: they work without internet
        static_url=DOCS_ASSETS,
        title="ragtune gateway",
        version="0.1.0",
        description="OpenAI-compatible REST over ragtune's retriever, generator and trainer, with tenants.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    routers = (health, admin, models, aliases, chat, stored_completions, files, vector_stores, fine_tuning)
    for module in (*routers, distillations, evaluations, evals):
        app.include_router(module.router)
    mount_console(app)  # the web console at /ui: static pages that call the API with the user's key
    app.include_router(responses_router.router)
    app.include_router(completions.router)
    app.include_router(embeddings.router)
    app.add_middleware(BodyLimitMiddleware, runtime=runtime)  # innermost: refusals are counted and carry an id
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics)
    app.add_middleware(RequestIdMiddleware)
    return app
