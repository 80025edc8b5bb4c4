"""``ragtune completions``: the tenant's stored chat completions (``/v1/chat/completions``, through the
official ``openai`` client): list them by model and metadata, show one whole (messages, answer,
citations, feedback history), rate or correct its answer (a metadata update, as any OpenAI client
sends it), delete them."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from openai import OpenAI, omit
from openai.types.chat import ChatCompletion

from ragtune_eval.cli.gateway import CliError, openai_client
from ragtune_eval.cli.terminal import one_line_errors, say, show_table, when

completions_app = typer.Typer(help="Stored chat completions: list, show, rate, correct, delete.", no_args_is_help=True)
FEEDBACK_KEY = "feedback"  # the gateway's reserved metadata keys (docs/stored_completions.md)
CORRECTION_KEY = "correction"
MAX_METADATA_VALUE = 512  # a longer correction goes in ragtune's ``correction`` field
PREVIEW_CHARS = 60


def metadata_pairs(pairs: list[str]) -> dict[str, str]:
    """``["topic=leave", "feedback=bad"]`` as a dict; a pair without ``=`` is refused."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--metadata takes key=value, not {pair!r}")
        parsed[key] = value
    return parsed


def preview(text: str | None, chars: int = PREVIEW_CHARS) -> str:
    """One line of ``text``, cut to ``chars`` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= chars else f"{flat[: chars - 3]}..."


def _extra(completion: ChatCompletion, field: str) -> Any:
    """One of ragtune's fields beside OpenAI's (``request_model``, ``correction``, ``citations``, ...)."""
    return (completion.model_extra or {}).get(field)


def answer_of(completion: ChatCompletion) -> str:
    return (completion.choices[0].message.content or "") if completion.choices else ""


def last_question(client: OpenAI, completion_id: str) -> str:
    """The request's last user message (what was asked)."""
    for message in client.chat.completions.messages.list(completion_id, order="desc", limit=5).data:
        if message.role == "user":
            return message.content or ""
    return ""


@completions_app.command("list")
def list_completions(
    model: Annotated[str | None, typer.Option(help="the model that answered, or the model or alias asked for")] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="key=value the metadata must hold; repeat for several")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many")] = 20,
    oldest_first: Annotated[bool, typer.Option(help="oldest first (default: newest first)")] = False,
) -> None:
    """List stored chat completions with what was asked, the answer and its feedback
    (-m feedback=bad lists the answers rated bad)."""
    with one_line_errors(), openai_client() as client:
        wanted = metadata_pairs(metadata or [])
        pages = client.chat.completions.list(
            model=model or omit,
            metadata=wanted or omit,
            limit=min(limit, 100),
            order="asc" if oldest_first else "desc",
        )
        listed: list[ChatCompletion] = []
        for completion in pages:  # the client follows the cursor
            listed.append(completion)
            if len(listed) == limit:
                break
        if not listed:
            say("no stored completions" + (" match" if model or wanted else " (store: true keeps them)"))
            return
        show_table(
            ("id", "created", "model", "feedback", "question", "answer"),
            (
                (
                    c.id,
                    when(c.created),
                    c.model,
                    (c.metadata or {}).get(FEEDBACK_KEY, "") + (" +correction" if _extra(c, CORRECTION_KEY) else ""),
                    preview(last_question(client, c.id), 40),
                    preview(answer_of(c)),
                )
                for c in listed
            ),
        )


@completions_app.command()
def show(completion_id: str) -> None:
    """Show a stored completion whole: the messages sent, the answer, its citations, its metadata and
    correction, and every feedback update with who sent it."""
    with one_line_errors(), openai_client() as client:
        completion = client.chat.completions.retrieve(completion_id)
        messages = list(client.chat.completions.messages.list(completion_id, limit=100))
        history = client.get(f"/chat/completions/{completion_id}/feedback", cast_to=object)
    asked = _extra(completion, "request_model")
    say(
        f"{completion.id}  {when(completion.created)}  model {completion.model}"
        + (f" (asked for {asked})" if asked and asked != completion.model else "")
    )
    for key, value in (completion.metadata or {}).items():
        say(f"  {key}: {value}")
    say("")
    for message in messages:
        say(f"[{message.role}] {message.content or ''}")
    say(f"[answer] {answer_of(completion)}")
    if correction := _extra(completion, CORRECTION_KEY):
        say(f"[correction] {correction}")
    for c in _extra(completion, "citations") or []:
        say(
            f"  [{c['index']}] {c.get('filename') or c['document_id']} ({c['start_offset']}-{c['end_offset']}): "
            f"{preview(c['text'], 100)}"
        )
    updates = history.get("data", []) if isinstance(history, dict) else []
    if updates:
        say("")
        show_table(
            ("when", "key", "feedback", "correction"),
            (
                (when(u["created_at"]), u["api_key_id"] or "admin", u["feedback"], preview(u["correction"]))
                for u in updates
            ),
        )


def _update(
    client: OpenAI, completion_id: str, metadata: dict[str, str], correction: str | None = None
) -> ChatCompletion:
    """The metadata update (it replaces the metadata, so the caller sends all of it), with ragtune's
    longer ``correction`` field when one is given."""
    extra = {CORRECTION_KEY: correction} if correction is not None else None
    return client.chat.completions.update(completion_id, metadata=metadata, extra_body=extra)


@completions_app.command()
def rate(
    completion_id: str,
    rating: Annotated[str, typer.Argument(help="good or bad", metavar="good|bad")],
) -> None:
    """Rate an answer good or bad (metadata feedback=good|bad; the other metadata stays)."""
    with one_line_errors(), openai_client() as client:
        metadata = dict(client.chat.completions.retrieve(completion_id).metadata or {})
        rated = _update(client, completion_id, {**metadata, FEEDBACK_KEY: rating})
        say(f"{rated.id} rated {(rated.metadata or {}).get(FEEDBACK_KEY)}")


@completions_app.command()
def correct(
    completion_id: str,
    answer: Annotated[str, typer.Argument(help="the corrected answer; '-' reads it from stdin")],
) -> None:
    """Give the corrected answer (distillation trains on it instead of the stored one). Up to 512
    characters it goes in metadata (correction=...); a longer one, up to 32,768, in ragtune's
    correction field."""
    with one_line_errors(), openai_client() as client:
        text = sys.stdin.read().strip() if answer == "-" else answer
        if not text.strip():
            raise CliError("the correction is empty")
        metadata = dict(client.chat.completions.retrieve(completion_id).metadata or {})
        if len(text) <= MAX_METADATA_VALUE:
            corrected = _update(client, completion_id, {**metadata, CORRECTION_KEY: text})
        else:
            metadata.pop(CORRECTION_KEY, None)  # both at once is refused
            corrected = _update(client, completion_id, metadata, correction=text)
        say(f"{corrected.id} corrected ({len(text)} characters)")


@completions_app.command()
def delete(completion_ids: Annotated[list[str], typer.Argument(help="one or more stored completion ids")]) -> None:
    """Delete stored completions for good (with their feedback history)."""
    with one_line_errors(), openai_client() as client:
        for completion_id in completion_ids:
            client.chat.completions.delete(completion_id)
            say(f"deleted {completion_id}")
