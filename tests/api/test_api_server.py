"""The HTTP API, end to end, in the shapes other tools call: OpenAI's chat and models, Cohere's, Jina's and TEI's
rerank, our retrieve and ask, each called by the client people use (openai, cohere, httpx) against the live
server of tests/api/live_server.py (the sample documents uploaded through the API; its LLM a switchable
OpenAI-compatible test server). Documents, keys, load and errors: test_api_server_operations.py."""

from __future__ import annotations

import json

import pytest

from rag.types import PUBLIC_FIELDS
from tests.api.live_server import (
    BODIES,
    QUESTION,
    Server,
    http_client,
    in_process_scores,
    openai_client,
    twenty_documents,
)


# ---- OpenAI ----------------------------------------------------------------------------------------
def test_openai_chat_completion_answers_with_citations_and_the_whole_result(server: Server) -> None:
    reply = openai_client(server).chat.completions.create(
        model="rerank-rag/default", messages=[{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": QUESTION}])
    content = reply.choices[0].message.content
    assert content.startswith(server.llm.state.answer)
    assert "\n\nSources:\n[1] " in content
    assert reply.choices[0].finish_reason == "stop"
    extra = reply.model_extra["rerank_rag"]
    assert set(extra) == PUBLIC_FIELDS
    assert extra["answer_mode"] == "llm" and extra["reranked"] and extra["collection"] == "default"
    assert len(extra["chunks"]) == 5
    sent = server.llm.state.requests[-1]
    assert QUESTION in sent["messages"][-1]["content"]  # the last user message was the question


def test_openai_streamed_chat_relays_the_llm_tokens(server: Server) -> None:
    stream = openai_client(server).chat.completions.create(
        model="rerank-rag/default", messages=[{"role": "user", "content": QUESTION}], stream=True)
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    words = server.llm.state.answer.split(" ")
    assert "".join(pieces[:len(words)]) == server.llm.state.answer  # token by token, as the LLM sent them
    assert pieces[len(words)].startswith("\n\nSources:\n[1] ")
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["rerank_rag"]["answer_mode"] == "llm"
    BODIES.append("".join(pieces))


def test_a_failing_llm_streams_the_extractive_answer_and_says_why(server: Server) -> None:
    client = openai_client(server)
    try:
        server.llm.mode["model"] = "fail-500"  # fails before any token: the extractive answer, in one piece
        chunks = list(client.chat.completions.create(
            model="rerank-rag/default", messages=[{"role": "user", "content": QUESTION}], stream=True))
        pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
        result = chunks[-1].model_extra["rerank_rag"]
        assert result["answer_mode"] == "extractive" and result["error"]
        assert pieces[0] == result["answer"] and pieces[1].startswith("\n\nSources:")
        assert len(pieces) == 2

        server.llm.mode["model"] = "broken-stream"  # breaks off after two pieces
        chunks = list(client.chat.completions.create(
            model="rerank-rag/default", messages=[{"role": "user", "content": QUESTION}], stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert text.startswith("The refund") and "The LLM's answer broke off" in text
        assert chunks[-1].choices[0].finish_reason == "stop"
        BODIES.append(text)
    finally:
        server.llm.mode["model"] = None


def test_openai_models_are_the_collections_the_key_opens(server: Server) -> None:
    assert sorted(m.id for m in openai_client(server).models.list()) == ["rerank-rag/default", "rerank-rag/other"]
    assert [m.id for m in openai_client(server, "scoped").models.list()] == ["rerank-rag/default"]


def test_chat_with_an_unknown_model_is_a_clear_404(server: Server) -> None:
    import openai

    with pytest.raises(openai.NotFoundError, match="rerank-rag/<collection>"):
        openai_client(server).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


# ---- rerank: Cohere, Jina, TEI ---------------------------------------------------------------------------
def test_cohere_sdk_rerank_equals_the_reranker_in_process(server: Server) -> None:
    import cohere

    docs = twenty_documents()
    expected = in_process_scores(QUESTION, docs, "rerank-minilm-l6")
    order = sorted(range(len(docs)), key=lambda i: -expected[i])
    body = {"model": "rerank-minilm-l6", "query": QUESTION, "documents": docs[:2]}
    with server.client("reader") as reader, server.client("admin") as admin:
        refused = reader.post("/v1/rerank", json=body)  # not loaded yet: loading one takes an admin key
        assert refused.status_code == 403 and "admin key" in refused.json()["error"]["message"], refused.text
        assert admin.post("/v1/rerank", json=body).status_code == 200  # loads it
    co = cohere.ClientV2(api_key=server.tokens["reader"], base_url=server.url, httpx_client=http_client())
    reply = co.rerank(model="rerank-minilm-l6", query=QUESTION, documents=docs, top_n=5)  # loaded: a reader may
    assert [r.index for r in reply.results] == order[:5]
    assert [r.relevance_score for r in reply.results] == pytest.approx([expected[i] for i in order[:5]], abs=1e-5)


def test_v1_rerank_takes_document_objects_and_returns_them(server: Server) -> None:
    docs = twenty_documents()[:6]
    expected = in_process_scores(QUESTION, docs)
    with server.client("reader") as client:
        reply = client.post("/v1/rerank", json={"query": QUESTION, "documents": [{"text": d} for d in docs],
                                                "return_documents": True})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    from rag import catalog

    assert body["model"] == catalog.DEFAULT_RERANKER
    assert [r["index"] for r in body["results"]] == sorted(range(6), key=lambda i: -expected[i])
    assert all(r["document"]["text"] == docs[r["index"]] for r in body["results"])


def test_the_text_one_rerank_sends_through_the_model_is_bounded_first(server: Server) -> None:
    from rag.settings import Settings

    flood = {"query": QUESTION, "documents": ["The battery charges in four hours. " * 250] * 1000}  # ~8.8 MB
    with server.client("reader") as client:
        for path, body in (("/v1/rerank", flood), ("/v2/rerank", flood),
                           ("/rerank", {"query": QUESTION, "texts": flood["documents"]})):
            refused = client.post(path, json=body)
            assert refused.status_code == 413, (path, refused.text)
            message = refused.json()["error"]["message"]
            assert "RAG_MAX_RERANK_CHARS" in message and f"{Settings().max_rerank_chars:,}" in message
        # a long document is cut to what the window holds: the same scores as the model on the whole texts
        docs = twenty_documents()[:3] + [twenty_documents()[3] + " " + "Unrelated filler text. " * 20_000]
        reply = client.post("/v1/rerank", json={"query": QUESTION, "documents": docs, "return_documents": True})
        assert reply.status_code == 200, reply.text
        expected = in_process_scores(QUESTION, docs)
        results = {r["index"]: r for r in reply.json()["results"]}
        assert [results[i]["relevance_score"] for i in range(4)] == pytest.approx(expected, abs=1e-5)
        assert results[3]["document"]["text"] == docs[3]  # returned whole
        bad = client.post("/v1/rerank", content=json.dumps({"query": QUESTION, "documents": ["fine", "half \ud800"]}),
                          headers={"Content-Type": "application/json"})  # a lone surrogate, escaped as JSON allows
        assert bad.status_code == 400 and "document 2" in bad.json()["error"]["message"], bad.text


def test_tei_rerank_equals_the_reranker_in_process(server: Server) -> None:
    docs = twenty_documents()
    expected = in_process_scores(QUESTION, docs)
    with server.client("reader") as client:
        reply = client.post("/rerank", json={"query": QUESTION, "texts": docs, "return_text": True})
    assert reply.status_code == 200, reply.text
    ranks = reply.json()
    assert [r["index"] for r in ranks] == sorted(range(len(docs)), key=lambda i: -expected[i])
    assert [r["score"] for r in ranks] == pytest.approx([expected[r["index"]] for r in ranks], abs=1e-5)
    assert all(r["text"] == docs[r["index"]] for r in ranks)


def test_unknown_or_unavailable_rerankers_are_refused_in_plain_words(server: Server) -> None:
    from rag import catalog

    with server.client("reader") as client:
        unknown = client.post("/v1/rerank", json={"model": "rerank-v3.5", "query": "q", "documents": ["a"]})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["type"] == "model_not_found"
        assert "rerank-minilm-l6" in unknown.json()["error"]["message"]
        missing = next((i for i in catalog.CATALOG if not catalog.availability(i)[0]), None)
        if missing is not None:
            refused = client.post("/v1/rerank", json={"model": missing.name, "query": "q", "documents": ["a"]})
            assert refused.status_code == 400
            assert refused.json()["error"]["type"] == "model_unavailable"
            assert missing.name in refused.json()["error"]["message"]


# ---- retrieve / ask ------------------------------------------------------------------------------------
def test_retrieve_and_ask_return_the_ask_json_payload(server: Server) -> None:
    with server.client("scoped") as client:
        found = client.post("/v1/retrieve", json={"question": QUESTION, "top_k": 10, "top_n": 3})
        asked = client.post("/v1/ask", json={"question": QUESTION, "rerank": False, "retrieval": "bm25"})
    assert found.status_code == 200 and asked.status_code == 200, (found.text, asked.text)
    found, asked = found.json(), asked.json()
    assert set(found) == set(asked) == PUBLIC_FIELDS  # the one helper behind `rerank-rag ask --json`
    assert found["answer"] == "" and len(found["chunks"]) == 3 and len(found["candidates"]) <= 10
    assert found["reranked"] and found["chunks"][0]["rerank_rank"] == 1
    assert found["collection"] == "default"  # the scoped key's own collection
    assert asked["answer"] and asked["answer_mode"] == "llm"
    assert not asked["reranked"] and asked["retrieval"] == "bm25"
    assert "A full charge" in " ".join(c["text"] for c in found["chunks"])
    # each chunk names its document (ingest.identity): the samples' titles, and the line retrieval read before it
    assert all(c["doc_title"] and c["context"].startswith(c["doc_title"]) for c in found["chunks"])


def test_an_unanswered_question_says_why_and_the_llm_is_told_to_say_so(server: Server) -> None:
    from rag.answer import DOUBT_NOTE

    def asked(question: str) -> tuple[dict, str]:
        before = len(server.llm.state.requests)
        with server.client("scoped") as client:
            reply = client.post("/v1/ask", json={"question": question})
        assert reply.status_code == 200, reply.text
        prompts = [r["messages"][-1]["content"] for r in server.llm.state.requests[before:] if "messages" in r]
        return reply.json(), prompts[-1]

    unanswered, prompt = asked("What was Microsoft's revenue in Q3 2023?")
    assert unanswered["low_confidence"] and "likely unanswered" in unanswered["low_confidence_reason"]
    assert unanswered["abstention"]["probability"] >= unanswered["abstention"]["threshold"]
    assert DOUBT_NOTE.split("(")[0] in prompt and unanswered["low_confidence_reason"] in prompt
    answered, prompt = asked(QUESTION)
    assert not answered["low_confidence"] and answered["low_confidence_reason"] is None
    assert DOUBT_NOTE.split("(")[0] not in prompt
