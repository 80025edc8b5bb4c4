"""The prompts of a task evaluation's arms and the training examples of its adapters.

Every arm starts from the same system turn, the task's instructions (for classification with the
label set, for extraction with the fields). ``base`` and ``ft`` then ask the input alone
(zero-shot); ``rag`` and ``rag+ft`` first show the ``k`` most similar labelled training examples,
retrieved through the gateway's vector store, as earlier user / assistant turns (the most similar
last, nearest the question). Each adapter is trained on exactly the prompt its arm is asked with."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ragtune_eval.task_data import TaskData, TaskItem

DEFAULT_MARK = "####"


def instructions(data: TaskData, labels: tuple[str, ...], mark: str = DEFAULT_MARK) -> str:
    """The system turn: the data's own instructions (a chat set's system message) or the task's
    default, with what the answer must look like."""
    own = data.instructions.strip()
    if data.kind == "classification":
        listed = ", ".join(labels)
        if own and all(label in own for label in labels):
            return own
        lead = own or "Classify the user's message."
        return f"{lead}\nAnswer with exactly one of these labels and nothing else: {listed}."
    if data.kind == "extraction":
        if own:
            return own
        fields = ", ".join(f"{key} (a list of strings)" if kind == "list" else key for key, kind in data.schema.items())
        return (
            f"Extract these fields from the user's message: {fields}.\nAnswer with one JSON object holding only the"
            " fields the message mentions, each value copied from the message; answer {} if it mentions none."
        )
    return own or f"Solve the problem step by step. On the last line write '{mark} ' and the final answer."


def messages(system: str, item: TaskItem, demonstrations: Sequence[TaskItem] = ()) -> list[dict[str, str]]:
    """The prompt: the system turn, each demonstration as a user / assistant pair, the input."""
    turns = [{"role": "system", "content": system}]
    for demo in demonstrations:
        turns += [{"role": "user", "content": demo.input}, {"role": "assistant", "content": demo.output()}]
    return [*turns, {"role": "user", "content": item.input}]


def training_line(system: str, item: TaskItem, demonstrations: Sequence[TaskItem] = ()) -> str:
    """One chat example: the arm's prompt for ``item`` and its gold output as the answer."""
    turns = [*messages(system, item, demonstrations), {"role": "assistant", "content": item.output()}]
    return json.dumps({"messages": turns}, ensure_ascii=False)
