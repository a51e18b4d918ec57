"""The HTTP API, end to end: `rerank-rag serve` in its own process on a free port, over a temp store with
the sample documents uploaded through the API, called by the clients people use (openai, cohere, httpx).

One server for the module: API keys exist before it starts (so every request needs one), and its LLM is
an OpenAI-compatible test server in this process whose behaviour a test can switch (normal, a stream
that breaks mid-answer, a 500). Every response body and the server's whole log are kept, and the last
test checks that no API key ever appears in them.
"""

from __future__ import annotations

import io
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from rag.settings import Settings
from rag.types import PUBLIC_FIELDS
from tests.helpers import SAMPLE, FakeOpenAI, openai_handler, serve_api, stop_process

QUESTION = "How long does the battery take to charge?"
BODIES: list[str] = []  # every response body any client here received


def keep_body(response: httpx.Response) -> None:
    if "text/event-stream" not in response.headers.get("content-type", ""):
        response.read()
        BODIES.append(response.text)


def http_client(**kwargs) -> httpx.Client:
    return httpx.Client(timeout=120, event_hooks={"response": [keep_body]}, **kwargs)


# ---- the LLM: the shared OpenAI test server, its behaviour switchable by the test ----------------------
@dataclass
class SwitchableLlm:
    state: FakeOpenAI
    mode: dict = field(default_factory=lambda: {"model": None})  # a fail-* / broken-stream model name, or None


@pytest.fixture(scope="module")
def llm() -> Iterator[SwitchableLlm]:
    llm = SwitchableLlm(FakeOpenAI(url=""))

    class Handler(openai_handler(llm.state)):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if llm.mode["model"]:
                data = json.loads(body)
                data["model"] = llm.mode["model"]
                body = json.dumps(data).encode()
            self.rfile = io.BytesIO(body)
            del self.headers["Content-Length"]
            self.headers["Content-Length"] = str(len(body))
            super()._serve()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    llm.state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield llm
    server.shutdown()
    server.server_close()


# ---- the server ----------------------------------------------------------------------------------------
@dataclass
class Server:
    url: str
    data_dir: Path
    log: Path
    tokens: dict[str, str]
    llm: SwitchableLlm

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[key]}"} if key else {}
        return http_client(base_url=self.url, headers=headers)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


KEYS = {  # name → (collection, scope)
    "admin": ("*", "admin"),
    "reader": ("*", "read"),
    "scoped": ("default", "read"),
    "writer": ("default", "write"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, llm: SwitchableLlm) -> Iterator[Server]:
    from api.keys import KeyStore

    data_dir = tmp_path_factory.mktemp("api-store")
    store = KeyStore(Settings(data_dir=data_dir, chroma_host=None))
    tokens = {name: store.create(name, collection=c, scope=s)[1] for name, (c, s) in KEYS.items()}

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_") and not k.startswith("OPENAI_")}
    env.update(OPENAI_BASE_URL=llm.state.url, OPENAI_API_KEY="sk-test-llm", RAG_LLM_MODEL="test-model",
               RAG_LLM_MAX_RETRIES="0", RAG_MAX_FILE_MB="0.2", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    process, url, log = serve_api(data_dir, env, "--workers", "2", "--queue", "2")
    running = Server(url, data_dir, log, tokens, llm)
    with running.client("admin") as client:
        files = [("files", (p.name, p.read_bytes())) for p in sorted(SAMPLE.iterdir())]
        done = client.post("/v1/collections/default/documents", files=files)
        assert done.status_code == 200, done.text
        assert [r["status"] for r in done.json()["results"]] == ["ok"] * len(files)
        other = client.post("/v1/collections/other/documents",
                            files=[("files", ("notes.txt", b"The office plants are watered on Fridays."))])
        assert other.json()["results"][0]["status"] == "ok", other.text
    yield running
    stop_process(process, timeout=20)


def in_process_scores(query: str, texts: list[str], name: str | None = None) -> list[float]:
    from rag import catalog
    from rag.rerank import load_reranker

    reranker = load_reranker(name or catalog.DEFAULT_RERANKER)
    assert reranker is not None
    return reranker.score(query, texts)


def twenty_documents() -> list[str]:
    lines = [line.strip() for name in ("product-faq.txt", "employee-handbook.md")
             for line in (SAMPLE / name).read_text().splitlines() if len(line.strip()) > 25]
    return lines[:20]


# ---- OpenAI ----------------------------------------------------------------------------------------
def openai_client(server: Server, key: str = "reader"):
    from openai import OpenAI

    return OpenAI(api_key=server.tokens[key], base_url=f"{server.url}/v1", http_client=http_client(), max_retries=0)


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


# ---- documents ------------------------------------------------------------------------------------------
def test_upload_a_good_a_broken_and_a_too_big_file_then_delete(server: Server) -> None:
    good = (SAMPLE / "returns-and-service.pdf").read_bytes()
    files = [("files", ("service-copy.pdf", good, "application/pdf")),
             ("files", ("broken.pdf", b"%PDF-1.7 not really", "application/pdf")),
             ("files", ("huge.txt", b"word " * 50_000, "text/plain"))]  # 250 kB, over RAG_MAX_FILE_MB=0.2
    with server.client("writer") as client:
        done = client.post("/v1/collections/default/documents", files=files)
        assert done.status_code == 200, done.text
        results = {r["source"]: r for r in done.json()["results"]}
        assert results["service-copy.pdf"]["status"] == "ok" and results["service-copy.pdf"]["chunks"] > 0
        assert results["broken.pdf"]["status"] == "failed"
        assert results["broken.pdf"]["reason"].startswith("not a readable PDF")
        assert results["huge.txt"]["status"] == "failed" and "too large" in results["huge.txt"]["reason"]

        again = client.post("/v1/collections/default/documents", files=files[:1])
        assert again.json()["results"][0]["status"] == "skipped"

        listed = client.get("/v1/collections/default/documents").json()["data"]
        assert "service-copy.pdf" in [d["source"] for d in listed] and "broken.pdf" not in str(listed)

        gone = client.delete("/v1/collections/default/documents/service-copy.pdf")
        assert gone.status_code == 200, gone.text
        assert gone.json()["deleted"]["source"] == "service-copy.pdf" and gone.json()["chunks"] > 0
        assert "service-copy.pdf" not in str(client.get("/v1/collections/default/documents").json())
        again = client.delete("/v1/collections/default/documents/service-copy.pdf")
        assert again.status_code == 404 and again.json()["error"]["type"] == "not_found"

        collections = client.get("/v1/collections").json()["data"]
        assert [c["name"] for c in collections] == ["default"]  # the writer's one collection
        assert collections[0]["documents"] == len(list(SAMPLE.iterdir()))


# ---- keys ------------------------------------------------------------------------------------------------
def test_requests_without_a_valid_key_get_401_and_outside_their_key_403(server: Server) -> None:
    with http_client(base_url=server.url) as anonymous:
        assert anonymous.get("/health").status_code == 200
        missing = anonymous.post("/v1/ask", json={"question": QUESTION})
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"]["type"] == "authentication_error"
        wrong = anonymous.get("/v1/models", headers={"Authorization": "Bearer rr_not-a-key"})
        assert wrong.status_code == 401 and "rr_not-a-key" not in wrong.text
    with server.client("reader") as reader:
        upload = reader.post("/v1/collections/default/documents", files=[("files", ("a.txt", b"some text"))])
        assert upload.status_code == 403 and "scope 'read'" in upload.json()["error"]["message"]
        assert reader.delete("/v1/collections/default/documents/product-faq.txt").status_code == 403
    with server.client("scoped") as scoped:
        other = scoped.post("/v1/ask", json={"question": QUESTION, "collection": "other"})
        assert other.status_code == 403 and other.json()["error"]["type"] == "permission_error"
        chat = scoped.post("/v1/chat/completions", json={"model": "rerank-rag/other",
                                                          "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 403
        assert scoped.get("/v1/collections/other/documents").status_code == 403
    with server.client("writer") as writer:
        elsewhere = writer.post("/v1/collections/other/documents", files=[("files", ("a.txt", b"some text"))])
        assert elsewhere.status_code == 403


def test_keys_created_and_revoked_by_the_cli_reach_the_running_server(server: Server, capsys) -> None:
    from rag.cli import main

    assert main(["keys", "create", "--data-dir", str(server.data_dir), "--name", "late", "--collection", "other",
                 "--scope", "read"]) == 0
    printed = capsys.readouterr()
    token = printed.out.strip().splitlines()[-1]
    assert token.startswith("rr_") and token not in printed.err
    server.tokens["late"] = token

    def status_with(token: str) -> int:
        with http_client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as client:
            return client.get("/v1/models").status_code

    deadline = time.time() + 8
    while status_with(token) != 200:
        assert time.time() < deadline, "the server never accepted a key created by the CLI"
        time.sleep(0.3)

    assert main(["keys", "list", "--data-dir", str(server.data_dir)]) == 0
    listed = capsys.readouterr().out
    assert "late" in listed and "rr_" not in listed

    assert main(["keys", "revoke", "--data-dir", str(server.data_dir), "late"]) == 0
    deadline = time.time() + 8
    while status_with(token) != 401:
        assert time.time() < deadline, "the server kept accepting a revoked key"
        time.sleep(0.3)


# ---- load ------------------------------------------------------------------------------------------------
def test_concurrent_questions_during_an_upload_are_answered_or_told_503(server: Server) -> None:
    rng = random.Random(7)
    vocabulary = ("battery motor frame brake chain wheel charge service warranty rider range torque cable "
                  "display sensor gear tyre pedal light lock").split()
    text = " ".join(" ".join(rng.choice(vocabulary) for _ in range(12)) + "." for _ in range(2000)).encode()
    assert len(text) < 200_000
    upload: dict = {}

    def ingest() -> None:
        with server.client("writer") as client:
            upload["reply"] = client.post("/v1/collections/default/documents",
                                          files=[("files", ("load-test.txt", text))])

    uploader = threading.Thread(target=ingest)
    uploader.start()
    time.sleep(1.0)
    replies: list[httpx.Response] = []

    def ask() -> None:
        with server.client("reader") as client:
            replies.append(client.post("/v1/ask", json={"question": QUESTION, "top_k": 10}))

    askers = [threading.Thread(target=ask) for _ in range(8)]
    for thread in askers:
        thread.start()
    for thread in askers:
        thread.join()
    uploader.join()

    statuses = sorted(r.status_code for r in replies)
    assert len(statuses) == 8 and set(statuses) <= {200, 503}, [r.text for r in replies]
    assert 200 in statuses
    for reply in replies:
        if reply.status_code == 503:
            assert reply.headers["retry-after"].isdigit() and reply.json()["error"]["type"] == "overloaded"
        else:
            assert reply.json()["chunks"]
    assert upload["reply"].status_code == 200 and upload["reply"].json()["results"][0]["status"] == "ok"
    with server.client("writer") as client:
        assert client.delete("/v1/collections/default/documents/load-test.txt").status_code == 200


# ---- errors ----------------------------------------------------------------------------------------------
def test_errors_are_json_in_plain_words(server: Server) -> None:
    with server.client("reader") as client:
        cases = [
            client.post("/v1/ask", json={"question": "  ", "top_k": 0}),
            client.post("/v1/ask", content=b'{"question": ', headers={"Content-Type": "application/json"}),
            client.get("/v1/no-such-thing"),
            client.get("/v1/ask"),
            client.post("/v1/ask", json={"question": QUESTION, "collection": "nope"}),
            client.post("/v1/chat/completions", json={"model": "rerank-rag/default",
                                                      "messages": [{"role": "system", "content": "x"}]}),
        ]
    assert [r.status_code for r in cases] == [400, 400, 404, 405, 404, 400]
    for reply in cases:
        error = reply.json()["error"]
        assert error["message"] and error["type"] and "Traceback" not in reply.text
    assert "top_k" in cases[0].json()["error"]["message"]
    assert "not valid JSON" in cases[1].json()["error"]["message"]


def test_no_key_ever_appears_in_a_response_or_the_server_log(server: Server) -> None:
    log = server.log_text()
    assert '"POST /v1/collections/default/documents HTTP/1.1" 200' in log  # the access log was captured
    assert "Traceback" not in log
    assert BODIES
    for name, token in server.tokens.items():
        assert token not in log, name
        assert not any(token in body for body in BODIES), name
