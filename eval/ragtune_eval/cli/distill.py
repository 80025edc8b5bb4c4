"""``ragtune distill`` and ``ragtune distillations``: build a fine-tuning file from the tenant's stored
chat completions (``POST /v1/distillations``, a ragtune route, so over httpx) chosen by model,
metadata, rating and time, with a held-out share kept apart for the evaluation; and list or show
what was built."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from ragtune_eval.cli.completions import metadata_pairs
from ragtune_eval.cli.gateway import CliError, Gateway
from ragtune_eval.cli.terminal import console, one_line_errors, say, show_table, when

AGO = re.compile(r"^(\d+)([mhd])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def moment(text: str, option: str, now: datetime | None = None) -> int:
    """``2026-12-01``, ``2026-12-01 14:30`` (local time) or ``7d`` / ``12h`` / ``30m`` ago, as Unix seconds."""
    if match := AGO.match(text.strip()):
        delta = timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
        return int(((now or datetime.now()) - delta).timestamp())
    try:
        return int(datetime.fromisoformat(text.strip()).timestamp())
    except ValueError:
        raise CliError(
            f"{option} takes a date (2026-12-01), a time (2026-12-01 14:30) or 7d/12h/30m, not {text!r}"
        ) from None


def distill_body(
    model: str | None,
    metadata: list[str],
    feedback: list[str],
    since: str | None,
    until: str | None,
    limit: int | None,
    holdout: float,
    seed: int,
    teacher: str | None,
    teacher_url: str | None,
    filename: str | None,
) -> dict[str, Any]:
    """The ``POST /v1/distillations`` body of the options given (the gateway checks every value)."""
    if teacher_url and not teacher:
        raise CliError("--teacher-url needs --teacher MODEL")
    chosen: dict[str, Any] = {
        "model": model,
        "metadata": metadata_pairs(metadata) or None,
        "feedback": feedback or None,
        "created_after": moment(since, "--since") if since else None,
        "created_before": moment(until, "--until") if until else None,
        "limit": limit,
    }
    body: dict[str, Any] = {
        "filter": {k: v for k, v in chosen.items() if v is not None},
        "holdout_fraction": holdout,
        "seed": seed,
    }
    if teacher:
        body["teacher"] = {"model": teacher, **({"base_url": teacher_url} if teacher_url else {})}
    if filename:
        body["filename"] = filename
    return body


def filter_text(chosen: dict[str, Any]) -> str:
    """A distillation's filter as ``model ft:x, app=bank, feedback bad, since 2026-12-01 10:00``."""
    parts = [f"model {chosen['model']}"] if chosen.get("model") else []
    parts += [f"{k}={v}" for k, v in (chosen.get("metadata") or {}).items()]
    if chosen.get("feedback"):
        parts.append("feedback " + "|".join(chosen["feedback"]))
    for key, label in (("created_after", "since"), ("created_before", "until")):
        if chosen.get(key) is not None:
            parts.append(f"{label} {when(chosen[key])}")
    if chosen.get("limit"):
        parts.append(f"newest {chosen['limit']}")
    return ", ".join(parts) or "everything"


def describe(d: dict[str, Any]) -> list[str]:
    counts = d["counts"]
    return [
        f"distillation {d['id']}: file {d['file_id'] or '(deleted)'} ({d['filename']})",
        f"  matched {counts['matched']}: {counts['training']} training line(s) ({counts['corrected']} corrected,"
        f" {counts['teacher']} from the teacher), {counts['holdout']} held out for the evaluation,"
        f" {counts['rejected']} rejected (bad, no correction), {counts['merged']} merged duplicate(s)",
    ]


def distill(
    model: Annotated[str | None, typer.Option(help="the model that answered, or the model or alias asked for")] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="key=value the metadata must hold; repeat for several")
    ] = None,
    feedback: Annotated[
        list[str] | None,
        typer.Option(help="ratings to take: good, bad (only with a correction), none (not rated); repeat; default all"),
    ] = None,
    since: Annotated[str | None, typer.Option(help="stored at or after: 2026-12-01, '2026-12-01 14:30' or 7d")] = None,
    until: Annotated[str | None, typer.Option(help="stored before (same forms)")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="the newest this many at most")] = None,
    holdout: Annotated[float, typer.Option(help="share of the distinct prompts kept apart for the evaluation")] = 0.2,
    seed: Annotated[int, typer.Option(min=0, help="chooses the held-out prompts")] = 0,
    teacher: Annotated[str | None, typer.Option(help="re-answer the training prompts with this model")] = None,
    teacher_url: Annotated[
        str | None, typer.Option(help="the teacher's OpenAI-compatible endpoint (default: this gateway)")
    ] = None,
    filename: Annotated[str | None, typer.Option(help="the training file's name")] = None,
) -> None:
    """Build a fine-tuning file from stored chat completions: corrections replace answers, answers rated
    bad without one are left out, duplicates merged, a held-out share kept apart for the evaluation."""
    with one_line_errors(), Gateway() as gw:
        body = distill_body(
            model, metadata or [], feedback or [], since, until, limit, holdout, seed, teacher, teacher_url, filename
        )
        with console.status("distilling" + (f" (the teacher {teacher} answers)" if teacher else "")):
            made = gw.request("POST", "/v1/distillations", json=body)
    for line in describe(made):
        say(line)
    if made["file_id"]:
        say(f"train on it: ragtune finetune {made['file_id']} --watch")


def distillations(
    distillation_id: Annotated[str | None, typer.Argument(help="show this one whole")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """List distillations, newest first; with an id, show one with its filter and held-out completions."""
    with one_line_errors(), Gateway() as gw:
        if distillation_id:
            made = gw.request("GET", f"/v1/distillations/{distillation_id}")
            for line in describe(made):
                say(line)
            say(f"  filter: {filter_text(made['filter'])}; holdout {made['holdout_fraction']}, seed {made['seed']}")
            if made["teacher"]:
                say(f"  teacher {made['teacher']}")
            for completion_id in made["holdout_completion_ids"]:
                say(f"  held out: {completion_id}")
            return
        page = gw.request("GET", "/v1/distillations", params={"limit": limit})
    if not page["data"]:
        say("no distillations yet (ragtune distill builds one)")
        return
    show_table(
        ("id", "created", "file", "training", "held out", "filter"),
        (
            (
                d["id"],
                when(d["created_at"]),
                d["file_id"],
                d["counts"]["training"],
                d["counts"]["holdout"],
                filter_text(d["filter"]),
            )
            for d in page["data"]
        ),
    )
