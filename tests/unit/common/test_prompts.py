"""One grounded prompt: the gateway's RAG (protobuf messages and search hits) and the harness's RAFT
training examples (plain dicts) both build it from ``ragtune_common.prompts``, so an adapter trains on
exactly the text it is later asked with."""

from __future__ import annotations

import json

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune_common.prompts import GROUNDING, grounded_messages
from ragtune_eval.arms import Passage, question_messages, raft_line
from ragtune_eval.dataset import QAItem
from ragtune_gateway.services import chat


def test_gateway_and_harness_build_the_same_grounded_prompt() -> None:
    item = QAItem("q1", "Where is the tower?", ("Paris",), "The tower is in Paris.")
    gold = Passage("file-gold", "", "  The tower is in Paris.\n")  # no name: the document id stands in
    # served as the gateway serves: the passages in the order raft_line leaves them (seeded shuffle)
    example = json.loads(raft_line(item, gold, [], 0, True, 0, 10_000))["messages"]
    hits = [rpb.SearchHit(document_id="file-gold", source_name="", text=gold.text)]
    question = [gpb.ChatMessage(role=m["role"], content=m["content"]) for m in question_messages(item)]
    served = chat.grounded_messages(question, hits)
    assert [{"role": m.role, "content": m.content} for m in served] == example[:-1]
    assert example[0]["content"].endswith(f"{GROUNDING}\n\nPassages:\n\n[1] (file-gold)\nThe tower is in Paris.")


def test_grounded_messages_fold_system_turns_first_and_say_when_nothing_was_found() -> None:
    conversation = [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "hello"},
    ]
    grounded = grounded_messages(conversation, [])
    assert grounded[0] == {"role": "system", "content": f"Be brief.\n\n{GROUNDING}\n\nPassages: none found."}
    assert grounded[1:] == [conversation[0], conversation[2]]
    two = grounded_messages([], [("a.txt", "one"), ("b.txt", "two")])[0]["content"]
    assert two.endswith("[1] (a.txt)\none\n\n[2] (b.txt)\ntwo")
