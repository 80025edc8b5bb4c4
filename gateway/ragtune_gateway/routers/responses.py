"""``/v1/responses``: the Responses API with the ``file_search`` tool, answered whole or streamed as
SSE events; stored responses retrieved, deleted, and their input items listed."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from ragtune_gateway import limits
from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.schemas.common import Cursor, PathId
from ragtune_gateway.schemas.responses import CreateResponse, InputItemsPage, Response, ResponseDeleted
from ragtune_gateway.services import response_stream
from ragtune_gateway.services import responses as service

router = APIRouter(prefix="/v1/responses", tags=["responses"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
Includable = Literal["file_search_call.results"]
Include = Annotated[list[Includable], Query(max_length=8)]
# the official client sends lists as ``include[]=...``
IncludeBrackets = Annotated[list[Includable], Query(alias="include[]", max_length=8)]


@router.post(
    "",
    response_model=Response,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Response stream events with stream"}},
)
async def create_response(
    body: CreateResponse, runtime: Runtime, tenant: TenantId, http: Request
) -> Response | StreamingResponse:
    if not body.stream:
        return await service.create(runtime, tenant, body)
    events, release = await response_stream.stream(runtime, tenant, body, http.state.key_hash)
    return limits.limited_stream(events, release, headers=SSE_HEADERS)


@router.get("/{response_id}", response_model=Response)
async def get_response(
    response_id: PathId,
    runtime: Runtime,
    tenant: TenantId,
    include: Include = [],  # noqa: B006
    include_: IncludeBrackets = [],  # noqa: B006
) -> Response:
    return await service.get(runtime, tenant, response_id, [*include, *include_])


@router.delete("/{response_id}", response_model=ResponseDeleted)
async def delete_response(response_id: PathId, runtime: Runtime, tenant: TenantId) -> ResponseDeleted:
    return await service.delete(runtime, tenant, response_id)


@router.get("/{response_id}/input_items", response_model=InputItemsPage)
async def list_input_items(
    response_id: PathId,
    runtime: Runtime,
    tenant: TenantId,
    after: Cursor = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
    include: Include = [],  # noqa: B006
    include_: IncludeBrackets = [],  # noqa: B006
) -> InputItemsPage:
    return await service.list_input_items(runtime, tenant, response_id, after, limit, order, [*include, *include_])
