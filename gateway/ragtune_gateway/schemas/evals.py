"""Wire models of ``/v1/evals`` (the OpenAI Evals dialect): evals (an item schema and graders),
runs (a data source sampled with a model, or samples given), output items (one graded item each).
Requests mirror the official client's parameters; what ragtune does not run (python graders,
model graders, stored-completions sources) parses, so the service can refuse it by name with a 400."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from ragtune_gateway.schemas.common import Id, JsonObject, ResponseModel, Text, WireModel
from ragtune_gateway.schemas.vector_stores import MAX_METADATA_PAIRS, MetadataKey, MetadataValue

Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=MAX_METADATA_PAIRS)]
Name = Annotated[Text, Field(max_length=256)]
TemplateText = Annotated[Text, Field(max_length=65_536)]
RunStatus = Literal["queued", "in_progress", "completed", "failed", "canceled"]
SIMILARITY = Literal[
    "cosine", "fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"
]


class OpenAIModel(WireModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


# -- evals ------------------------------------------------------------------------------------------


class CustomDataSourceConfig(OpenAIModel):
    type: Literal["custom"]
    item_schema: JsonObject = Field(description="the JSON schema every item of a run's data source must satisfy")
    include_sample_schema: bool = Field(default=False, description="runs sample a model for each item")


class LogsDataSourceConfig(OpenAIModel):
    """Refused: give items with each run ('custom'), or take stored chat completions."""

    type: Literal["logs"]
    metadata: JsonObject | None = None


class StoredCompletionsDataSourceConfig(OpenAIModel):
    """Items are the tenant's stored chat completions whose metadata holds ``metadata``: ``item.input``
    (the request's messages), ``item.reference`` (the correction, else the stored answer)."""

    type: Literal["stored_completions"]
    metadata: Metadata | None = None


class StringCheckGrader(OpenAIModel):
    type: Literal["string_check"]
    name: Name
    input: TemplateText
    reference: TemplateText
    operation: Literal["eq", "ne", "like", "ilike"]


class TextSimilarityGrader(OpenAIModel):
    type: Literal["text_similarity"]
    name: Name
    input: TemplateText
    reference: TemplateText
    evaluation_metric: SIMILARITY
    pass_threshold: float = Field(ge=0, le=1)


class RefusedGrader(OpenAIModel):
    """Graders ragtune does not run: ``python`` (it would execute the caller's code) and the model
    graders."""

    type: Literal["python", "label_model", "score_model", "multi"]
    name: Name = ""


Grader = Annotated[StringCheckGrader | TextSimilarityGrader | RefusedGrader, Field(discriminator="type")]


class CreateEval(OpenAIModel):
    name: Name | None = None
    metadata: Metadata | None = None
    data_source_config: Annotated[
        CustomDataSourceConfig | LogsDataSourceConfig | StoredCompletionsDataSourceConfig, Field(discriminator="type")
    ]
    testing_criteria: list[Grader] = Field(min_length=1, max_length=32)


class UpdateEval(OpenAIModel):
    name: Name | None = None
    metadata: Metadata | None = None


class EvalObject(ResponseModel):
    object: Literal["eval"] = "eval"
    id: str
    created_at: int
    name: str
    metadata: dict[str, str] | None = None
    data_source_config: dict[str, Any]
    testing_criteria: list[dict[str, Any]]


class EvalDeleted(ResponseModel):
    object: Literal["eval.deleted"] = "eval.deleted"
    deleted: bool = True
    eval_id: str


# -- runs -------------------------------------------------------------------------------------------


class SourceRow(OpenAIModel):
    item: JsonObject
    sample: JsonObject | None = None


class FileContentSource(OpenAIModel):
    type: Literal["file_content"]
    content: list[SourceRow] = Field(min_length=1)


class FileIdSource(OpenAIModel):
    type: Literal["file_id"]
    id: Id = Field(description="a JSONL file of {item, sample?} rows uploaded with purpose 'evals'")


class StoredSource(OpenAIModel):
    """Refused: stored responses are not an item source here."""

    type: Literal["responses"]


class StoredCompletionsSource(OpenAIModel):
    """The tenant's stored chat completions (and the eval's ``metadata``), as OpenAI filters them,
    plus ragtune's ``distillation_id``: only the completions that distillation held out."""

    type: Literal["stored_completions"]
    model: Annotated[Text, Field(min_length=1, max_length=256)] | None = None
    metadata: Metadata | None = None
    created_after: Annotated[int, Field(ge=0, le=253_402_300_799)] | None = None
    created_before: Annotated[int, Field(ge=0, le=253_402_300_799)] | None = None
    limit: int | None = Field(default=None, ge=1, le=10_000)
    distillation_id: Id | None = Field(default=None, description="ragtune: only what this distillation held out")


Source = Annotated[
    FileContentSource | FileIdSource | StoredSource | StoredCompletionsSource, Field(discriminator="type")
]


class TemplateMessage(OpenAIModel):
    role: Literal["user", "assistant", "system", "developer"]
    content: TemplateText
    type: Literal["message"] | None = None


class TemplateInput(OpenAIModel):
    type: Literal["template"]
    template: list[TemplateMessage] = Field(min_length=1, max_length=64)


class ItemReferenceInput(OpenAIModel):
    type: Literal["item_reference"]
    item_reference: Annotated[Text, Field(min_length=1, max_length=256)]


InputMessages = Annotated[TemplateInput | ItemReferenceInput, Field(discriminator="type")]


class SamplingParams(OpenAIModel):
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32_768)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    response_format: JsonObject | None = None
    tools: list[JsonObject] | None = Field(default=None, max_length=16)


class JsonlRunDataSource(OpenAIModel):
    type: Literal["jsonl"]
    source: Source


class ModelRunDataSource(OpenAIModel):
    type: Literal["completions", "responses"]
    source: Source
    input_messages: InputMessages | None = None
    model: Id | None = None
    sampling_params: SamplingParams | None = None


class CreateRun(OpenAIModel):
    name: Name | None = None
    metadata: Metadata | None = None
    data_source: Annotated[JsonlRunDataSource | ModelRunDataSource, Field(discriminator="type")]


class ResultCounts(ResponseModel):
    total: int = 0
    passed: int = 0
    failed: int = 0
    errored: int = 0


class CriterionResult(ResponseModel):
    testing_criteria: str
    passed: int
    failed: int


class ModelUsage(ResponseModel):
    model_name: str
    invocation_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int = 0


class RunError(ResponseModel):
    code: str
    message: str


class EvalRunObject(ResponseModel):
    object: Literal["eval.run"] = "eval.run"
    id: str
    eval_id: str
    created_at: int
    name: str
    status: RunStatus
    model: str
    data_source: dict[str, Any]
    metadata: dict[str, str] | None = None
    error: RunError | None = None
    result_counts: ResultCounts
    per_testing_criteria_results: list[CriterionResult]
    per_model_usage: list[ModelUsage]
    report_url: str


class EvalRunDeleted(ResponseModel):
    object: Literal["eval.run.deleted"] = "eval.run.deleted"
    deleted: bool = True
    run_id: str


class GraderResult(ResponseModel):
    name: str
    type: str
    score: float
    passed: bool
    error: str | None = None


class OutputItemObject(ResponseModel):
    object: Literal["eval.run.output_item"] = "eval.run.output_item"
    id: str
    run_id: str
    eval_id: str
    created_at: int
    status: Literal["pass", "fail", "error", "pending"]
    datasource_item_id: int
    datasource_item: dict[str, Any]
    results: list[GraderResult]
    sample: dict[str, Any] | None = None


class EvalComparison(ResponseModel):
    """ragtune's verdict over the runs of one eval (an extension): each run's pass rate per grader
    with its interval, latency and prompt tokens; every pair of runs compared on their shared items
    (paired bootstrap, McNemar); which run to use, in words."""

    object: Literal["eval.comparison"] = "eval.comparison"
    eval_id: str
    level: float
    runs: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    recommendation: str


class PromoteFromRuns(OpenAIModel):
    """Offer a run's adapter for an alias (a ragtune extension): over a holder, the holder's run of
    the same eval is the baseline, paired on their shared items."""

    alias: Annotated[Text, Field(min_length=1, max_length=128)]
    run_id: Id = Field(description="a completed run of the eval whose model is the candidate adapter")
    testing_criteria: Name | None = Field(default=None, description="the grader to compare on (default: the first)")
