"""The Responses API's pieces that need no stack: the ``[n]`` markers of a grounded answer become
``file_citation`` annotations (the same whether the answer comes whole or in any split of deltas),
the wire models mirror the official client's types and what they send validates as them (with
``response.output_text`` working), the request refuses what ragtune cannot do naming the field,
and ``/openapi.json`` documents the routes."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from openai.types import responses as oai
from openai.types.responses import response_file_search_tool_call, response_output_text
from pydantic import BaseModel, ValidationError

from ragtune_gateway.errors import ApiError, _validation_error
from ragtune_gateway.schemas import responses as schema
from ragtune_gateway.services.citations import Citations, Source, cite
from ragtune_gateway.services.responses import check_tools
from tests.fixtures.openapi import assert_mirrors, gateway_openapi

HANDBOOK = Source("file-hb", "handbook.txt", "Every employee gets 27 days of paid leave per year.")
POLICY = Source("file-po", "policy.txt", "Laptops are handed out on the first day; leave requests go to HR.")


def test_markers_become_annotations_where_they_stood() -> None:
    text, annotations = cite("Employees get 27 days [1]. Flights are economy [2][1].", [HANDBOOK, POLICY])
    assert text == "Employees get 27 days. Flights are economy."
    assert [(a.file_id, a.filename, a.index) for a in annotations] == [
        ("file-hb", "handbook.txt", len("Employees get 27 days")),
        ("file-po", "policy.txt", len("Employees get 27 days. Flights are economy")),
        ("file-hb", "handbook.txt", len("Employees get 27 days. Flights are economy")),
    ]
    assert all(a.type == "file_citation" for a in annotations)


def test_lists_unknown_numbers_and_non_file_passages() -> None:
    text, annotations = cite("Both [1, 2]. In [2024] it changed [3]. Odd [x].", [HANDBOOK, POLICY, None])
    assert text == "Both. In [2024] it changed. Odd [x]."
    assert [(a.file_id, a.index) for a in annotations] == [("file-hb", 4), ("file-po", 4)]
    # no passages: the text is left as it is
    assert cite("See [1].", []) == ("See [1].", [])


def test_an_answer_citing_nothing_is_annotated_with_the_files_that_support_it() -> None:
    text, annotations = cite("An employee gets 27 days of leave.", [POLICY, None, HANDBOOK, HANDBOOK])
    assert text == "An employee gets 27 days of leave."
    assert [(a.file_id, a.index) for a in annotations] == [("file-hb", len(text))]  # once, and not the policy
    assert [a.file_id for a in cite("Laptops come on the first day.", [HANDBOOK, POLICY])[1]] == ["file-po"]
    # each file must hold at least half of the answer's content words on its own
    mixed = "Leave requests go to HR; employees get 27 days of paid leave per year."
    assert [a.file_id for a in cite(mixed, [POLICY, HANDBOOK])[1]] == ["file-hb"]  # policy: 4 of 12 words
    # what no passage says is credited to none of them
    assert cite("The cafeteria opens at noon.", [HANDBOOK, POLICY]) == ("The cafeteria opens at noon.", [])
    # one cited passage is enough: the others are not added
    assert [a.file_id for a in cite("27 days [2].", [HANDBOOK, POLICY])[1]] == ["file-po"]
    assert cite("Nothing to cite.", [None]) == ("Nothing to cite.", [])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_streamed_deltas_give_the_whole_answers_text_and_annotations(size: int) -> None:
    answer = "Leave: 27 days [1].  Laptop on day one [2, 1]; see [3 and [12] too [1"
    whole_text, whole_annotations = cite(answer, [HANDBOOK, POLICY])
    citations = Citations([HANDBOOK, POLICY])
    given, made = [], []
    for start in range(0, len(answer), size):
        text, annotations = citations.feed(answer[start : start + size])
        given.append(text)
        made.extend(annotations)
        for annotation in annotations:  # an annotation's position is in the text already given out
            assert annotation.index <= len("".join(given))
    rest, last = citations.finish()
    given.append(rest)
    assert last == []  # it cited passages: nothing is added at its end
    assert "".join(given) == whole_text == citations.text
    assert made == whole_annotations == citations.annotations
    assert whole_text == "Leave: 27 days.  Laptop on day one; see [3 and [12] too [1"


# (ours, the openai client's)
MIRRORS: list[tuple[type[BaseModel], type[BaseModel]]] = [
    (schema.Response, oai.Response),
    (schema.OutputMessage, oai.ResponseOutputMessage),
    (schema.OutputText, oai.ResponseOutputText),
    (schema.FileCitation, response_output_text.AnnotationFileCitation),
    (schema.FileSearchCall, oai.ResponseFileSearchToolCall),
    (schema.FileSearchResult, response_file_search_tool_call.Result),
    (schema.InputMessageItem, oai.ResponseInputMessageItem),
    (schema.ResponseUsage, oai.ResponseUsage),
    (schema.ResponseLifecycleEvent, oai.ResponseCompletedEvent),
    (schema.OutputItemEvent, oai.ResponseOutputItemAddedEvent),
    (schema.FileSearchCallEvent, oai.ResponseFileSearchCallSearchingEvent),
    (schema.ContentPartEvent, oai.ResponseContentPartAddedEvent),
    (schema.TextDeltaEvent, oai.ResponseTextDeltaEvent),
    (schema.TextDoneEvent, oai.ResponseTextDoneEvent),
    (schema.AnnotationAddedEvent, oai.ResponseOutputTextAnnotationAddedEvent),
]


@pytest.mark.parametrize(("ours", "theirs"), MIRRORS, ids=lambda m: m.__name__)
def test_models_mirror_the_openai_types(ours: type[BaseModel], theirs: type[BaseModel]) -> None:
    assert_mirrors(ours, theirs)


def test_a_response_validates_as_the_clients_and_gives_its_output_text() -> None:
    call = schema.FileSearchCall(
        id="fs_1",
        queries=["leave"],
        status="completed",
        results=[schema.FileSearchResult(file_id="file-hb", filename="handbook.txt", score=0.9, text="27 days")],
    )
    annotation = schema.FileCitation(file_id="file-hb", filename="handbook.txt", index=7)
    message = schema.OutputMessage(
        id="msg_1", status="completed", content=[schema.OutputText(text="27 days.", annotations=[annotation])]
    )
    usage = schema.ResponseUsage(input_tokens=3, output_tokens=2, total_tokens=5)
    ours = schema.Response(
        id="resp_1", created_at=1, status="completed", model="m", output=[call, message], tools=[], usage=usage
    )
    sent = ours.model_dump(mode="json")
    assert "conversation" not in sent and "reasoning" not in sent  # documented, not sent
    theirs = oai.Response.model_validate(sent)
    assert theirs.output_text == "27 days."
    assert theirs.output[0].type == "file_search_call" and theirs.output[0].results
    said = theirs.output[1]
    assert isinstance(said, oai.ResponseOutputMessage) and isinstance(said.content[0], oai.ResponseOutputText)
    cited = said.content[0].annotations[0]
    assert isinstance(cited, response_output_text.AnnotationFileCitation) and cited.index == 7
    assert schema.Response.model_validate(sent) == ours  # what is stored reads back the same


def _param(body: dict[str, Any]) -> str | None:
    with pytest.raises(ValidationError) as caught:
        schema.CreateResponse.model_validate(body)
    errors = [{**e, "loc": ("body", *e["loc"])} for e in caught.value.errors()]
    return _validation_error(RequestValidationError(errors)).param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "input": "q", "tools": [{"type": "function", "name": "f"}]}, "tools[0].type"),
        ({"model": "m", "input": "q", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"model": "m", "input": "q", "tools": [{"type": "file_search"}]}, "tools[0].vector_store_ids"),
        ({"model": "m", "input": [{"type": "function_call_output", "role": "user", "content": "x"}]}, "input[0].type"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]},
            "input[0].content[0].type",
        ),
        ({"model": "m", "input": "q", "include": ["message.output_text.logprobs"]}, "include[0]"),
        ({"model": "m", "input": "q", "background": True}, "background"),
        ({"model": "m", "input": "q", "reasoning": {"effort": "high"}}, "reasoning"),
        ({"model": "m", "input": "q", "text": {"format": {"type": "json_schema"}}}, "text.format.type"),
        ({"model": "m", "input": "q", "top_logprobs": 3}, "top_logprobs"),
        ({"model": "m", "input": "q", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "m", "input": "q", "temperature": 3}, "temperature"),
        ({"model": "m", "input": "q\x00"}, "input"),
        ({"input": "q"}, "model"),
    ],
)
def test_what_ragtune_cannot_do_is_refused_naming_the_field(body: dict[str, Any], param: str) -> None:
    assert _param(body) == param


def test_ordinary_requests_are_accepted() -> None:
    body = schema.CreateResponse.model_validate(
        {
            "model": "m",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "q"}]}],
            "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"], "max_num_results": 3}],
            "include": ["file_search_call.results"],
            "reasoning": None,
            "top_logprobs": 0,
            "text": {"format": {"type": "text"}},
            "user": "u",
            "service_tier": "auto",
        }
    )
    assert body.searches() and body.includes_results()
    assert not schema.CreateResponse.model_validate({**body.model_dump(), "tool_choice": "none"}).searches()


def test_openapi_documents_the_routes(tmp_path_factory: pytest.TempPathFactory) -> None:
    spec = gateway_openapi(tmp_path_factory.mktemp("state"))
    create = spec["paths"]["/v1/responses"]["post"]["responses"]["200"]["content"]
    assert "text/event-stream" in create and "application/json" in create
    assert {"get", "delete"} <= set(spec["paths"]["/v1/responses/{response_id}"])
    assert "get" in spec["paths"]["/v1/responses/{response_id}/input_items"]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"tools": [{"type": "file_search", "vector_store_ids": [s]} for s in ("vs_1", "vs_2")]}, "tools[1]"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_tools_and_tool_choice_must_agree(change: dict[str, Any], param: str) -> None:
    body = schema.CreateResponse.model_validate({"model": "m", "input": "q", **change})
    with pytest.raises(ApiError) as caught:
        check_tools(body)
    assert caught.value.status == 400 and caught.value.param == param
    check_tools(schema.CreateResponse.model_validate({"model": "m", "input": "q", "tool_choice": "auto"}))
