"""ragtune's verdict over the runs of one eval (extensions of ``/v1/evals``): the comparison of the
runs on their shared items (:mod:`ragtune_eval.run_comparison`), and the promotion of a run's
adapter for an alias, decided as every promotion is (:func:`ragtune_gateway.services.aliases.promote`)."""

from __future__ import annotations

import asyncio

from ragtune_eval.run_comparison import RunGrades, compare_runs, item_key
from ragtune_gateway.errors import ApiError
from ragtune_gateway.repositories import aliases as alias_rows
from ragtune_gateway.repositories import evals as repository
from ragtune_gateway.repositories.evals import RunRow
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.aliases import AliasPromotion, PromotionComparison, PromotionRequest
from ragtune_gateway.schemas.evals import EvalComparison, PromoteFromRuns
from ragtune_gateway.services import aliases
from ragtune_gateway.services.evals import owned_eval, owned_run


async def compare(
    runtime: GatewayRuntime, tenant: str, eval_id: str, run_ids: list[str], level: float
) -> EvalComparison:
    """The runs named (default: every completed run of the eval, oldest first) compared on their
    graded items; the computation (bootstrap resamples) runs off the event loop."""
    evaluation = await owned_eval(runtime, tenant, eval_id)
    if run_ids:
        runs = [await owned_run(runtime, tenant, eval_id, run_id) for run_id in dict.fromkeys(run_ids)]
    else:
        runs = list(reversed(await repository.list_runs(runtime.pool, tenant, eval_id, "completed", "", 100, "desc")))
    grades = await _grades(runtime, runs)
    criteria = [c["name"] for c in evaluation.testing_criteria]
    built = await asyncio.to_thread(compare_runs, grades, criteria, level)
    return EvalComparison(eval_id=eval_id, **built)


async def _grades(runtime: GatewayRuntime, runs: list[RunRow]) -> list[RunGrades]:
    grades = {run.id: RunGrades(run.id, run.name, run.model) for run in runs}
    for run_id, row in await repository.graded_items(runtime.pool, list(grades)):
        passed = {r["name"]: float(bool(r["passed"])) for r in row.results or []}
        grades[run_id].passed[item_key(row.item)] = passed  # errored: no results, failed for every grader
        sample = row.sample or {}
        if isinstance(sample.get("latency_s"), int | float):
            grades[run_id].latencies_s.append(float(sample["latency_s"]))
        if isinstance((sample.get("usage") or {}).get("prompt_tokens"), int):
            grades[run_id].prompt_tokens.append(sample["usage"]["prompt_tokens"])
    return list(grades.values())


async def promote(runtime: GatewayRuntime, tenant: str, eval_id: str, body: PromoteFromRuns) -> AliasPromotion:
    """The run's adapter for the alias, decided as every promotion is (:func:`aliases.promote`): over a
    holder, the latest completed run of the holder in this eval is the baseline, and only a significant
    paired improvement on the grader moves the alias."""
    evaluation = await owned_eval(runtime, tenant, eval_id)
    criteria = [c["name"] for c in evaluation.testing_criteria]
    criterion = body.testing_criteria or criteria[0]
    if criterion not in criteria:
        raise ApiError(400, f"The eval has no grader named {criterion!r}.", param="testing_criteria")
    candidate = await owned_run(runtime, tenant, eval_id, body.run_id)
    if candidate.status != "completed":
        raise ApiError(400, f"Run {candidate.id} is {candidate.status}, not completed.", param="run_id")
    aliases.check_alias(body.alias)
    holder = await alias_rows.get_alias(runtime.pool, tenant, body.alias)
    baseline = None
    if holder is not None and holder.model != candidate.model:
        completed = await repository.list_runs(runtime.pool, tenant, eval_id, "completed", "", 100, "desc")
        baseline = next((r for r in completed if r.model == holder.model), None)
        if baseline is None:
            message = f"No completed run of the holder {holder.model!r} in this eval: run it on the same items first."
            raise ApiError(409, message, param="alias", code="holder_not_evaluated")
    level = runtime.settings.promotion_min_level
    runs = [baseline, candidate] if baseline else [candidate]  # compared as the second minus the first
    built = await asyncio.to_thread(compare_runs, await _grades(runtime, runs), [criterion], level)
    rates = [100 * r["pass_rate"][criterion]["value"] for r in built["runs"]]
    request = PromotionRequest(
        candidate=candidate.model,
        candidate_score=rates[-1],
        metric="pass_rate",
        evaluation={"eval_id": eval_id, "run_id": candidate.id, "testing_criteria": criterion},
    )
    if baseline is not None:
        paired = built["comparisons"][0]
        diff = paired["difference"]
        request.holder, request.holder_score = baseline.model, rates[0]
        request.comparison = PromotionComparison(
            value=100 * diff["value"],
            low=100 * diff["low"],
            high=100 * diff["high"],
            level=level,
            test="paired-bootstrap + mcnemar-exact" if paired["p_value"] is not None else "paired-bootstrap",
            questions=paired["items"],
            p_value=paired["p_value"],
        )
        request.evaluation = {**request.evaluation, "holder_run_id": baseline.id}
    elif holder is not None:  # the candidate holds it already
        request.holder, request.holder_score = holder.model, rates[-1]
    return await aliases.promote(runtime, tenant, body.alias, request)
