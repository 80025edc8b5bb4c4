"""RAFT data built from question/answer pairs and a real retriever collection."""

from __future__ import annotations

import json

import grpc
import pytest

from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune.trainer.v1 import trainer_pb2 as pb
from tests.integration.trainer.helpers import read_text

FACTS = {
    "leave": "Employees get 25 days of paid leave per year.",
    "parking": "Parking spaces are assigned by the facilities team on request.",
    "laptops": "Laptops are replaced every three years by IT.",
    "lunch": "Lunch is served in the canteen from noon to two.",
    "badges": "Lost badges are replaced at the front desk for a fee of ten euros.",
    "travel": "Travel must be booked through the company travel portal.",
}


async def test_raft_examples_hold_gold_among_distractors(trainer, stub, collection, trainer_settings):
    await stub.UpsertDocuments(
        rpb.UpsertDocumentsRequest(
            collection=collection, documents=[rpb.DocumentInput(id=k, text=v) for k, v in FACTS.items()]
        )
    )
    examples = [
        pb.RaftExample(
            question="How many days of paid leave do employees get?", answer="25 days.", gold_document_id="leave"
        ),
        pb.RaftExample(
            question="Who replaces laptops?", answer="IT, every three years.", gold_passage=FACTS["laptops"]
        ),
        pb.RaftExample(question="When is lunch served?", answer="From noon to two.", gold_document_id="lunch"),
        pb.RaftExample(
            question="Where are lost badges replaced?", answer="At the front desk.", gold_document_id="badges"
        ),
    ]
    request = pb.BuildRaftDatasetRequest(
        collections=[collection], examples=examples, distractors=2, no_gold_fraction=0.25, seed=3
    )
    # The retriever's collections are the default tenant's here.
    reply = await trainer.BuildRaftDataset(request)
    assert reply.report.valid, reply.report
    assert reply.dataset.source == "raft" and reply.dataset.example_count == 4 and reply.no_gold_count == 1

    path = trainer_settings.artifacts / "datasets" / f"{reply.dataset.id}.jsonl"
    records = [json.loads(line) for line in read_text(path).splitlines()]
    with_gold = 0
    for example, record in zip(examples, records, strict=True):
        system, user, assistant = record["messages"]
        assert system["role"] == "system" and assistant["content"] == example.answer
        assert user["content"].startswith("Documents:\n[1] ") and user["content"].endswith(
            f"Question: {example.question}"
        )
        gold = FACTS[example.gold_document_id or "laptops"]
        passages = [p.split("] ", 1)[1] for p in user["content"].split("\n\nQuestion:")[0].split("\n\n")]
        with_gold += gold in passages
        distractors = [p for p in passages if p != gold]
        assert len(distractors) == 2 and all(p in FACTS.values() for p in distractors)
    assert with_gold == 3

    again = await trainer.BuildRaftDataset(request)  # seeded: the same examples again
    again_path = trainer_settings.artifacts / "datasets" / f"{again.dataset.id}.jsonl"
    assert read_text(again_path) == read_text(path)


async def test_raft_bad_input_names_the_field(trainer, collection):
    cases = [
        (
            pb.BuildRaftDatasetRequest(examples=[pb.RaftExample(question="q", answer="a", gold_passage="p")]),
            "collections",
        ),
        (pb.BuildRaftDatasetRequest(collections=[collection]), "examples"),
        (
            pb.BuildRaftDatasetRequest(collections=[collection], examples=[pb.RaftExample(question="q", answer="a")]),
            "examples[0].gold_passage",
        ),
        (
            pb.BuildRaftDatasetRequest(
                collections=[collection],
                distractors=50,
                examples=[pb.RaftExample(question="q", answer="a", gold_passage="p")],
            ),
            "distractors",
        ),
        (
            pb.BuildRaftDatasetRequest(
                collections=[collection], examples=[pb.RaftExample(question="q", answer="a", gold_document_id="nope")]
            ),
            "examples[0].gold_document_id",
        ),
    ]
    for request, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await trainer.BuildRaftDataset(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert field in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await trainer.BuildRaftDataset(
            pb.BuildRaftDatasetRequest(
                collections=["no-such-collection"],
                examples=[pb.RaftExample(question="q", answer="a", gold_passage="p")],
            )
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
