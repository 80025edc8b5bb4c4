"""The prompt text of grounded (RAG) answers, shared by the gateway, which builds it at inference
time, and the evaluation harness, which trains RAFT adapters on exactly that prompt.

Plain strings in, plain strings out: no protobuf, no imports, so both sides read the same text.
"""

GROUNDING = (
    "Answer the user's question using only the numbered passages below. Cite the passages you use "
    "with their numbers in square brackets, like [1]. If the passages do not contain the answer, say "
    "that you do not know."
)


def numbered_passages(passages: list[tuple[str, str]]) -> str:
    """``(source, text)`` pairs as ``[1] (source)\\ntext`` blocks, numbered from 1 in the order given."""
    return "\n\n".join(f"[{i}] ({source})\n{text.strip()}" for i, (source, text) in enumerate(passages, 1))


def grounded_system_prompt(system: list[str], passages: list[tuple[str, str]]) -> str:
    """The system message of a grounded conversation: the caller's own system texts first, then the
    grounding instruction with the numbered passages (or a note that none were found)."""
    if passages:
        block = f"{GROUNDING}\n\nPassages:\n\n{numbered_passages(passages)}"
    else:
        block = f"{GROUNDING}\n\nPassages: none found."
    return "\n\n".join([*system, block])


def grounded_messages(messages: list[dict[str, str]], passages: list[tuple[str, str]]) -> list[dict[str, str]]:
    """A conversation of ``{"role", "content"}`` dicts with its system messages folded into one
    grounded system message, first; the other turns follow in order."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    return [{"role": "system", "content": grounded_system_prompt(system, passages)}, *rest]
