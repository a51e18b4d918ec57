"""The ways in, closed (issue 22): the store's own collections are no request's target, the server answers
only its own Host names and refuses state-changing requests from foreign web pages, every body and question
is bounded before it costs anything, and X-API-Key works as well as Bearer. Real HTTP on 127.0.0.1 (uvicorn
in a thread, no model loaded: every case here is refused before one would be)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from api.keys import KEYS_COLLECTION, KeyStore
from api.server import create_app
from rag.settings import Settings
from rag.store import REGISTRY, KnowledgeBase, ReservedCollectionError, check_user_collection, collection_names
from tests.helpers import free_port


def serve(settings: Settings) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, warm=False, bind_host="127.0.0.1"),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def keyless(settings: Settings) -> Iterator[str]:
    yield from serve(settings)


@pytest.fixture
def keyed(settings: Settings) -> Iterator[tuple[str, str, str]]:
    store = KeyStore(settings)
    _, writer = store.create("writer", collection="*", scope="write")
    _, reader = store.create("reader", collection="default", scope="read")
    for url in serve(settings):
        yield url, writer, reader


def test_a_write_key_cannot_touch_the_stores_own_collections(keyed: tuple[str, str, str],
                                                              settings: Settings) -> None:
    url, writer, _ = keyed
    auth = {"Authorization": f"Bearer {writer}"}
    for name in (KEYS_COLLECTION, REGISTRY, "eval-cisi-0123456789abcdef", "default.reindex"):
        up = httpx.post(f"{url}/v1/collections/{name}/documents", headers=auth,
                        files={"files": ("a.txt", b"planted text", "text/plain")})
        assert up.status_code == 404 and "reserved" in up.json()["error"]["message"], up.text
        for reply in (httpx.get(f"{url}/v1/collections/{name}/documents", headers=auth),
                      httpx.delete(f"{url}/v1/collections/{name}/documents/x", headers=auth),
                      httpx.post(f"{url}/v1/ask", headers=auth, json={"question": "q", "collection": name}),
                      httpx.post(f"{url}/v1/chat/completions", headers=auth,
                                 json={"model": f"rerank-rag/{name}", "messages": [{"role": "user", "content": "q"}]})):
            assert reply.status_code == 404 and "reserved" in reply.json()["error"]["message"], reply.text
    listed = httpx.get(f"{url}/v1/collections", headers=auth).json()["data"]
    assert not [c for c in listed if c["name"] in (KEYS_COLLECTION, REGISTRY)]
    assert {k.name for k in KeyStore(settings).keys()} == {"writer", "reader"}  # every key still there


def test_keyless_upload_into_the_keys_collection_is_refused(keyless: str, settings: Settings) -> None:
    up = httpx.post(f"{keyless}/v1/collections/{KEYS_COLLECTION}/documents",
                    files={"files": ("a.txt", b"planted", "text/plain")})
    assert up.status_code == 404
    KeyStore(settings).create("after", collection="*", scope="read")  # keys create still works


def test_reserved_names_in_the_library() -> None:
    for name in (KEYS_COLLECTION, REGISTRY, "rerank-rag-anything", "eval-x", "bench-ingest", "docs.reindex"):
        with pytest.raises(ReservedCollectionError, match="reserved"):
            check_user_collection(name)
    assert check_user_collection("default") == "default"


def test_the_sweep_never_deletes_records_that_are_not_chunks(settings: Settings) -> None:
    with pytest.raises(ReservedCollectionError):
        KnowledgeBase(settings, REGISTRY)
    settings.orphan_grace_s = 0
    kb = KnowledgeBase(settings, "docs", embed_model="test")
    # A record without a document's fields (as a key or registry record would be) in the chunks collection.
    kb.chunks.upsert(ids=["foreign"], embeddings=[[1.0, 0.0]], metadatas=[{"collection": "docs", "doc_id": "d",
                                                                            "content_sha256": "x"}])
    assert kb.repair(grace_s=0) == 0
    assert kb.chunks.get(ids=["foreign"])["ids"] == ["foreign"]
    assert "docs" in collection_names(settings) and REGISTRY not in collection_names(settings)


def test_foreign_host_and_origin_are_refused(keyless: str) -> None:
    port = keyless.rsplit(":", 1)[1]
    upload = {"files": ("a.txt", b"planted", "text/plain")}
    evil = httpx.post(f"{keyless}/v1/collections/default/documents", files=upload,
                      headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and evil.json()["error"]["type"] == "forbidden_origin"
    rebound = httpx.post(f"{keyless}/v1/ask", json={"question": "q"}, headers={"Host": f"evil.example:{port}"})
    assert rebound.status_code == 403 and "RAG_ALLOWED_HOSTS" in rebound.json()["error"]["message"]
    ours = httpx.get(f"{keyless}/health", headers={"Host": f"localhost:{port}", "Origin": "http://evil.example"})
    assert ours.status_code == 200  # a read from any page is not a state change (and CORS keeps the answer)


def test_allowed_hosts_adds_names(settings: Settings) -> None:
    settings.allowed_hosts = "rag.internal, other.example"
    for url in serve(settings):
        port = url.rsplit(":", 1)[1]
        reply = httpx.get(f"{url}/health", headers={"Host": f"rag.internal:{port}"})
        assert reply.status_code == 200
        post = httpx.post(f"{url}/v1/ask", json={"question": "\x00\x00"},
                          headers={"Origin": "https://other.example"})
        assert post.status_code == 400  # past the origin check, stopped at the question


def test_questions_are_bounded_and_cleaned_on_every_endpoint(keyless: str) -> None:
    long = "a" * 4001
    chat = f"{keyless}/v1/chat/completions"
    cases = [
        httpx.post(f"{keyless}/v1/ask", json={"question": long}),
        httpx.post(f"{keyless}/v1/retrieve", json={"question": "\x00\x00\x00"}),
        httpx.post(f"{keyless}/v1/rerank", json={"query": long, "documents": ["a"]}),
        httpx.post(f"{keyless}/rerank", json={"query": "\x01\x02", "texts": ["a"]}),
        httpx.post(chat, json={"model": "rerank-rag", "messages": [{"role": "user", "content": "x" * 200_000}]}),
        httpx.post(chat, json={"model": "rerank-rag", "messages": [{"role": "user", "content": "\x00"}]}),
        httpx.post(chat, json={"model": "rerank-rag", "messages": [{"role": "user", "content": "y" * 3000}] * 6}),
    ]
    for reply in cases:
        assert reply.status_code == 400, reply.text
    assert "RAG_MAX_CHAT_CHARS" in cases[-1].json()["error"]["message"]
    assert "empty" in cases[1].json()["error"]["message"]


def test_a_huge_body_is_refused_before_the_key_and_while_read(keyed: tuple[str, str, str]) -> None:
    url, _, _ = keyed
    big = b'{"question": "' + b"a" * 11_000_000 + b'"}'
    declared = httpx.post(f"{url}/v1/ask", content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and "RAG_MAX_REQUEST_MB" in declared.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, counted as it arrives
        for _ in range(12):
            yield b"a" * 1_000_000

    streamed = httpx.post(f"{url}/v1/ask", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413


def test_x_api_key_is_accepted_as_well_as_bearer(keyed: tuple[str, str, str]) -> None:
    url, _, reader = keyed
    assert httpx.get(f"{url}/v1/models", headers={"X-API-Key": reader}).status_code == 200
    assert httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {reader}"}).status_code == 200
    assert httpx.get(f"{url}/v1/models", headers={"X-API-Key": "rr_wrong"}).status_code == 401
    assert httpx.get(f"{url}/v1/models").status_code == 401




def test_an_origin_is_ours_only_on_our_own_port(keyless: str) -> None:
    port = int(keyless.rsplit(":", 1)[1])
    for origin in (f"http://[::1]:{port + 1}", f"http://127.0.0.1:{port + 1}", f"http://localhost:{port + 1}",
                   f"https://127.0.0.1:{port}", "http://127.0.0.1", "null"):
        other = httpx.post(f"{keyless}/v1/ask", json={"question": "q"}, headers={"Origin": origin})
        assert other.status_code == 403 and other.json()["error"]["type"] == "forbidden_origin", origin
    ours = httpx.post(f"{keyless}/v1/ask", json={"question": "\x00"}, headers={"Origin": f"http://127.0.0.1:{port}"})
    assert ours.status_code == 400  # past the origin check, stopped at the question
    bracketed = httpx.post(f"{keyless}/v1/ask", json={"question": "\x00"},
                           headers={"Host": f"[::1]:{port}", "Origin": f"http://[::1]:{port}"})
    assert bracketed.status_code == 400


def post_escaped(url: str, body: dict) -> httpx.Response:
    """POST ``body`` as JSON with every non-ASCII character escaped, as a client may send a lone "\\ud800"."""
    return httpx.post(url, content=json.dumps(body), headers={"Content-Type": "application/json"})


def test_a_lone_surrogate_or_an_invisible_question_is_a_400_everywhere(keyless: str) -> None:
    def refused(reply: httpx.Response, *why: str) -> bool:
        return reply.status_code == 400 and any(w in reply.json()["error"]["message"] for w in why)

    for question in ("why \ud800?", "\udfff"):
        for path in ("/v1/ask", "/v1/retrieve", "/v1/feedback"):
            reply = post_escaped(f"{keyless}{path}", {"question": question, "chunk_id": "c", "label": "relevant"})
            # the question's own cleaning says why; feedback's field, bounded in length, is refused by its model first
            assert refused(reply, "surrogate", *(["unicode"] if path == "/v1/feedback" else [])), (path, reply.text)
        chat = post_escaped(f"{keyless}/v1/chat/completions",
                            {"model": "rerank-rag", "messages": [{"role": "user", "content": question}]})
        assert refused(chat, "surrogate"), chat.text
        rerank = post_escaped(f"{keyless}/v1/rerank", {"query": question, "documents": ["a"]})
        assert refused(rerank, "surrogate", "unicode"), rerank.text
    for question in ("\u200b\u200b\u200b", " \ufeff\u2060\u200d "):
        for path in ("/v1/ask", "/v1/feedback"):
            reply = post_escaped(f"{keyless}{path}", {"question": question, "chunk_id": "c", "label": "relevant"})
            assert refused(reply, "shows nothing"), (path, reply.text)
