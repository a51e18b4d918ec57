"""The HTTP API's operations, end to end against the live server of tests/api/live_server.py: documents
uploaded and deleted (a bad file fails alone), keys (401/403, made and revoked by the CLI while it runs),
questions during an upload (answered or told 503), errors in plain words, and last, that no API key ever
appeared in a response body or the server's log (this module runs after test_api_server.py)."""

from __future__ import annotations

import random
import threading
import time

import httpx

from tests.api.live_server import BODIES, QUESTION, Server, http_client
from tests.helpers import SAMPLE


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
