"""Two real frameworks run unchanged against ragtune, pointed at the gateway with a tenant key:
a LangChain pipeline (``OpenAIEmbeddings`` picks the nearest passage, ``ChatOpenAI`` answers from
it) and a LlamaIndex one (``OpenAIEmbedding`` builds an in-memory ``VectorStoreIndex`` over three
documents, ``OpenAILike`` answers the query through ``/v1/completions``). Answers are kept short:
the checks are that every call the frameworks make is understood, and that retrieval picks the
right passage."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from pydantic import SecretStr

from tests.e2e.conftest import Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
PASSAGES = [
    "Leave policy: every employee gets 27 days of paid leave per calendar year.",
    "Equipment: new staff receive a laptop on their first day; the IT desk is in room 4.12.",
    "Travel policy: employees book economy class for flights shorter than six hours.",
]
QUESTION = "Where is the IT desk?"


async def test_langchain_openai_pipeline(tenant_a: Tenant, gateway_url: str, base_model: str) -> None:
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    base_url = f"{gateway_url}/v1"
    embeddings = OpenAIEmbeddings(
        model=EMBEDDING_MODEL, base_url=base_url, api_key=SecretStr(tenant_a.key), check_embedding_ctx_length=False
    )
    documents = np.array(await embeddings.aembed_documents(PASSAGES))
    query = np.array(await embeddings.aembed_query(QUESTION))
    assert documents.shape == (3, 384) and query.shape == (384,)
    scores = documents @ query / (np.linalg.norm(documents, axis=1) * np.linalg.norm(query))
    best = PASSAGES[int(np.argmax(scores))]
    assert "IT desk" in best

    llm = ChatOpenAI(
        model=base_model,
        base_url=base_url,
        api_key=SecretStr(tenant_a.key),
        max_completion_tokens=12,
        temperature=0,
        max_retries=0,
    )
    answer = await llm.ainvoke([("system", f"Answer from this passage: {best}"), ("user", QUESTION)])
    assert isinstance(answer.content, str) and answer.content.strip()
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] <= 12


async def test_llama_index_pipeline(tenant_a: Tenant, gateway_url: str, base_model: str) -> None:
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.embeddings.openai import OpenAIEmbedding
    from llama_index.llms.openai_like import OpenAILike

    api_base = f"{gateway_url}/v1"
    # model_name overrides the OpenAI model the class checks `model` against
    embed_model = OpenAIEmbedding(model_name=EMBEDDING_MODEL, api_base=api_base, api_key=tenant_a.key, max_retries=0)
    llm = OpenAILike(
        model=base_model,
        api_base=api_base,
        api_key=tenant_a.key,
        is_chat_model=False,  # the legacy /v1/completions on the rendered prompt
        context_window=2048,
        max_tokens=12,
        temperature=0,
        max_retries=0,
    )

    def build_and_ask() -> tuple[list[str], str]:
        # the synchronous API, as most LlamaIndex code calls it: in a thread, so that this event
        # loop (which serves the gateway) stays free
        documents = [Document(text=text, id_=f"doc-{i}") for i, text in enumerate(PASSAGES)]
        index = VectorStoreIndex.from_documents(documents, embed_model=embed_model)
        response = index.as_query_engine(llm=llm, similarity_top_k=1).query(QUESTION)
        return [n.node.get_content() for n in response.source_nodes], str(response)

    sources, answer = await asyncio.to_thread(build_and_ask)
    assert len(sources) == 1 and "IT desk" in sources[0]
    assert answer.strip()
