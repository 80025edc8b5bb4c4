"""``ragtune``: start the stack, ingest documents, ask questions with citations, fine-tune, list;
the command groups (keys, tenants, stores, files, completions, eval) live in modules of their own, added here.

A command runs its body in ``one_line_errors()`` (a failure is one line, never a traceback) and talks to
the gateway through ``openai_client()`` where the route is in the OpenAI dialect, else through ``Gateway``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import TextColumn

from ragtune_eval.cli.completions import completions_app
from ragtune_eval.cli.distill import distill, distillations
from ragtune_eval.cli.eval import eval_app
from ragtune_eval.cli.files import files_app, local_files
from ragtune_eval.cli.gateway import CliError, Gateway, openai_client
from ragtune_eval.cli.keys import keys_app, tenants_app
from ragtune_eval.cli.stores import add_files, find_store, stores_app
from ragtune_eval.cli.terminal import bars, console, one_line_errors, show_table

app = typer.Typer(help="ragtune: RAG and LoRA fine-tuning on your own data.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(tenants_app, name="tenants")
app.add_typer(stores_app, name="stores")
app.add_typer(files_app, name="files")
app.add_typer(completions_app, name="completions")
app.add_typer(eval_app, name="eval")
app.command()(distill)
app.command()(distillations)


@app.command()
def up(
    replicas: Annotated[
        str | None,
        typer.Option(help="processes per service, e.g. retriever=2,generator=2,gateway=2 (default 1 each)"),
    ] = None,
    services: Annotated[
        str | None, typer.Option(help="start only these, comma-separated (default: every installed service)")
    ] = None,
    host: Annotated[str | None, typer.Option(help="address every service binds (default 127.0.0.1)")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="database, models, adapters (default .ragtune)")] = None,
    start_timeout: Annotated[float | None, typer.Option(help="seconds to wait for each replica to serve")] = None,
    grace: Annotated[float | None, typer.Option(help="seconds services get to drain on stop")] = None,
) -> None:
    """Start the whole stack on embedded defaults (what `make run` does); Ctrl-C stops it. Gateway
    replicas listen on 8080, 8090, ... over one database: any of them answers any request."""
    from ragtune_common.launcher import main as launch

    raise typer.Exit(launch(launcher_args(replicas, services, host, state_dir, start_timeout, grace)))


def launcher_args(
    replicas: str | None,
    services: str | None,
    host: str | None,
    state_dir: Path | None,
    start_timeout: float | None,
    grace: float | None,
) -> list[str]:
    """The launcher's command line for the options given (the others keep its defaults and the
    ``RAGTUNE_*`` variables it reads)."""
    given = {
        "--replicas": replicas,
        "--services": services,
        "--host": host,
        "--state-dir": state_dir,
        "--start-timeout": start_timeout,
        "--grace": grace,
    }
    return [part for flag, value in given.items() if value is not None for part in (flag, str(value))]


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files or directories (.txt .md .html .pdf)")],
    store: Annotated[str, typer.Option(help="vector store id or name (created if no store has it)")] = "default",
) -> None:
    """Upload documents and add them to a vector store, one by one, with a progress bar."""
    with one_line_errors(), openai_client() as client:
        files = local_files(paths)
        target = find_store(client, store, create=True)
        add_files(client, target.id, files, [])
        console.print(f"{len(files)} file(s) in vector store [bold]{target.id}[/bold] ({escape(target.name or '')})")


@app.command()
def ask(
    question: str,
    store: Annotated[list[str] | None, typer.Option(help="vector store id or name; repeat for several")] = None,
    model: Annotated[str | None, typer.Option(help="base model or ft: model; default: the base model")] = None,
    top_k: Annotated[int, typer.Option(min=1, max=50)] = 5,
    max_tokens: Annotated[int, typer.Option(min=1)] = 256,
) -> None:
    """Ask a question, grounded in vector stores when --store is given; prints numbered citations."""
    with one_line_errors(), Gateway() as gw:
        chosen = model or _base_model(gw.request("GET", "/v1/models")["data"])
        body: dict[str, Any] = {
            "model": chosen,
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": 0,
            "messages": [{"role": "user", "content": question}],
        }
        if store:
            with openai_client() as client:
                body["rag"] = {"vector_store_ids": [find_store(client, s).id for s in store], "top_k": top_k}
        citations: list[dict[str, Any]] = []
        for chunk in gw.events("POST", "/v1/chat/completions", json=body):
            citations = chunk.get("citations") or citations
            for choice in chunk.get("choices", []):
                sys.stdout.write(choice.get("delta", {}).get("content") or "")
                sys.stdout.flush()
        sys.stdout.write("\n")
        for c in citations:
            quoted = " ".join(c["text"].split())
            console.print(
                f"[bold][{c['index']}][/bold] {escape(c.get('filename') or c['document_id'])} "
                f"({c['start_offset']}-{c['end_offset']}, score {c['score']:.3f}): "
                f"[dim]{escape(quoted[:160])}{'...' if len(quoted) > 160 else ''}[/dim]",
                highlight=False,
            )


def _kind(model: dict[str, Any]) -> str:
    """What a listed model is: ``base``, ``adapter``, ``alias`` or ``embedding`` (ragtune's fields)."""
    if model.get("kind") == "embedding":
        return "embedding"
    return "alias" if model.get("alias_for") else "adapter" if model.get("parent") else "base"


def _base_model(listed: list[dict[str, Any]]) -> str:
    if served := [m["id"] for m in listed if _kind(m) == "base"]:
        return str(served[0])
    raise CliError("the gateway lists no base model: is the generator up?")


@app.command()
def finetune(
    file: Annotated[
        Path, typer.Argument(dir_okay=False, help="JSONL: chat or prompt/completion; or the id of an uploaded file")
    ],
    model: Annotated[str, typer.Option(help="base model; default: the server's")] = "",
    suffix: Annotated[str | None, typer.Option()] = None,
    epochs: Annotated[int | None, typer.Option(min=1, max=50)] = None,
    watch: Annotated[bool, typer.Option(help="follow the job with a progress bar and the loss")] = False,
) -> None:
    """Upload a training file and start a LoRA fine-tuning job (a file-... id that is no local file:
    the uploaded or distilled file of that id)."""
    with one_line_errors(), Gateway() as gw:
        if str(file).startswith("file-") and not file.exists():
            uploaded = gw.request("GET", f"/v1/files/{file}")
        else:
            with file.open("rb") as f:
                uploaded = gw.request(
                    "POST", "/v1/files", files={"file": (file.name, f)}, data={"purpose": "fine-tune"}
                )
        body: dict[str, Any] = {"training_file": uploaded["id"], "model": model, "suffix": suffix}
        if epochs:
            body["hyperparameters"] = {"n_epochs": epochs}
        job = gw.request("POST", "/v1/fine_tuning/jobs", json=body)
        console.print(f"job [bold]{job['id']}[/bold] {job['status']} (training file {uploaded['id']})")
        if watch:
            _watch(gw, job["id"])


def _watch(gw: Gateway, job_id: str) -> None:
    with bars(TextColumn("{task.fields[loss]}")) as progress:
        task = progress.add_task("training", total=None, loss="")
        for event in gw.events("GET", f"/v1/fine_tuning/jobs/{job_id}/events", params={"stream": "true"}):
            data = event.get("data") or {}
            if event["type"] == "metrics" and "train_loss" in data:
                progress.update(
                    task, completed=data["step"], total=data["total_steps"], loss=f"loss {data['train_loss']:.4f}"
                )
            else:
                progress.console.print(event["message"])
    job = gw.request("GET", f"/v1/fine_tuning/jobs/{job_id}")
    console.print(
        f"job {job_id} {job['status']}" + (f": model {job['fine_tuned_model']}" if job["fine_tuned_model"] else "")
    )


@app.command()
def jobs(limit: Annotated[int, typer.Option(min=1, max=100)] = 20) -> None:
    """List fine-tuning jobs, newest first."""
    with one_line_errors(), Gateway() as gw:
        page = gw.request("GET", "/v1/fine_tuning/jobs", params={"limit": limit})
    show_table(
        ("id", "status", "step", "loss", "fine-tuned model"),
        (
            (
                j["id"],
                j["status"],
                f"{j['step']}/{j['total_steps']}",
                f"{j['train_loss']:.4f}" if j.get("train_loss") else "",
                j["fine_tuned_model"],
            )
            for j in page["data"]
        ),
    )


@app.command()
def models() -> None:
    """List the models: the base model, your adapters and aliases, the embedding models."""
    with one_line_errors(), Gateway() as gw:
        data = gw.request("GET", "/v1/models")["data"]
    show_table(
        ("id", "kind", "base model or alias target", "owner"),
        ((m["id"], _kind(m), m.get("parent") or m.get("alias_for"), m["owned_by"]) for m in data),
    )


if __name__ == "__main__":
    app()
