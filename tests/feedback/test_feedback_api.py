"""/v1/feedback through the real FastAPI app (TestClient) over a real store: a write key marks, a read key is
refused and lists, exports read back, deletes, and every field is bounded before the store is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.keys import KeyStore
from api.server import create_app
from rag.feedback import FEEDBACK_COLLECTION, FeedbackStore
from rag.pipeline import RagPipeline
from rag.settings import Settings
from tests.feedback.conftest import QUESTIONS

Q = QUESTIONS[0]


@pytest.fixture
def client(store_copy: Path):
    settings = Settings(data_dir=store_copy)
    keys = KeyStore(settings)
    tokens = {scope: keys.create(scope, collection="default", scope=scope)[1] for scope in ("read", "write")}
    tokens["other"] = keys.create("other", collection="elsewhere", scope="write")[1]
    tokens["star"] = keys.create("star", collection="*", scope="admin")[1]
    chunks = [c.chunk_id for c in RagPipeline(settings).ask(Q, generate=False).chunks]
    with TestClient(create_app(settings, warm=False), base_url="http://127.0.0.1") as http:
        yield http, tokens, chunks


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_write_key_marks_a_read_key_lists_and_is_refused(client) -> None:
    http, tokens, chunks = client
    body = {"collection": "default", "question": Q, "chunk_id": chunks[0], "label": "relevant"}
    refused = http.post("/v1/feedback", json=body, headers=auth(tokens["read"]))
    assert refused.status_code == 403 and "write" in refused.json()["error"]["message"]
    assert http.post("/v1/feedback", json=body).status_code == 401
    made = http.post("/v1/feedback", json=body, headers=auth(tokens["write"]))
    assert made.status_code == 200, made.text
    mark = made.json()["mark"]
    assert (mark["label"], mark["chunk_ids"], mark["by"]) == ("relevant", [chunks[0]], "write")
    assert mark["reranker"] == "cross-encoder/ms-marco-MiniLM-L-12-v2"  # what the collection ranks with
    answer = http.post("/v1/feedback", json={"question": Q, "answer": "wrong", "chunk_ids": chunks},
                       headers=auth(tokens["write"]))  # the key's own collection by default
    assert answer.status_code == 200 and answer.json()["mark"]["collection"] == "default"
    listed = http.get("/v1/feedback", params={"collection": "default"}, headers=auth(tokens["read"])).json()
    assert listed["total"] == 2 and listed["trainable_questions"] == 1
    assert {m["kind"] for m in listed["data"]} == {"chunk", "answer"}
    page = http.get("/v1/feedback", params={"limit": 1, "offset": 1}, headers=auth(tokens["read"])).json()
    assert len(page["data"]) == 1 and page["offset"] == 1


def test_exports_and_delete(client) -> None:
    http, tokens, chunks = client
    write = auth(tokens["write"])
    http.post("/v1/feedback", json={"question": Q, "chunk_id": chunks[0], "label": "relevant"}, headers=write)
    made = http.post("/v1/feedback", json={"question": Q, "chunk_id": chunks[1], "label": "irrelevant"}, headers=write)
    questions = http.get("/v1/feedback/export", headers=auth(tokens["read"]))
    assert questions.status_code == 200
    assert questions.text.strip() == f'{{"question": "{Q}", "expected_chunk_id": ["{chunks[0]}"]}}'
    pairs = http.get("/v1/feedback/export", params={"format": "pairs"}, headers=auth(tokens["read"])).text
    assert pairs.count("\n") == 1 and '"negatives": ["' in pairs
    mark_id = made.json()["mark"]["mark_id"]
    assert http.delete(f"/v1/feedback/{mark_id}", headers=auth(tokens["read"])).status_code == 403
    assert http.delete(f"/v1/feedback/{mark_id}", headers=write).status_code == 200
    assert http.delete(f"/v1/feedback/{mark_id}", headers=write).status_code == 404
    assert http.get("/v1/feedback", headers=auth(tokens["read"])).json()["total"] == 1


def test_every_field_is_bounded_and_the_stores_own_collection_is_no_target(client) -> None:
    http, tokens, chunks = client
    write = auth(tokens["write"])
    cases = [
        ({"question": Q, "chunk_id": chunks[0], "label": "relevant", "labels": "typo"}, 400),
        ({"question": Q, "chunk_id": "x" * 201, "label": "relevant"}, 400),
        ({"question": Q, "chunk_id": chunks[0], "label": "perhaps"}, 400),
        ({"question": Q, "answer": "good", "chunk_ids": ["c"] * 51}, 400),
        ({"question": "x" * 4001, "chunk_id": chunks[0], "label": "relevant"}, 400),
        ({"question": Q, "chunk_id": "no-such-chunk", "label": "relevant"}, 400),
        ({"question": Q}, 400),
        ({"collection": FEEDBACK_COLLECTION, "question": Q, "chunk_id": chunks[0], "label": "relevant"}, 403),
        ({"collection": "elsewhere", "question": Q, "chunk_id": chunks[0], "label": "relevant"}, 403),
    ]
    for body, status in cases:
        response = http.post("/v1/feedback", json=body, headers=write)
        assert response.status_code == status, (body, response.text)
    other = auth(tokens["other"])  # opens only 'elsewhere', which does not exist
    assert http.post("/v1/feedback", json={"collection": "elsewhere", "question": Q, "chunk_id": chunks[0],
                                           "label": "relevant"}, headers=other).status_code == 404
    star = tokens["star"]
    reserved = http.get("/v1/feedback", params={"collection": FEEDBACK_COLLECTION}, headers=auth(star))
    assert reserved.status_code == 404
    assert http.get("/v1/feedback", params={"limit": 5000}, headers=auth(star)).status_code == 400


def streamed_reranker(http: TestClient, chat: dict, token: str) -> str:
    """The reranker a streamed chat's last chunk names."""
    lines = http.post("/v1/chat/completions", json={**chat, "stream": True}, headers=auth(token)).text.splitlines()
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    return next(e["rerank_rag"]["reranker"] for e in events if "rerank_rag" in e)


def test_after_a_switch_a_read_key_sees_the_fine_tunes_name_not_the_servers_folder(trained) -> None:
    from training.feedback_job import status

    settings, job = trained
    folder = status(job)["reranker"]
    keys, store = KeyStore(settings), FeedbackStore(settings)
    tokens = {scope: keys.create(f"switch-{scope}", collection="default", scope=scope)[1]
              for scope in ("read", "admin")}
    store.switch("default", folder, previous=None)
    try:
        with TestClient(create_app(settings, warm=False), base_url="http://127.0.0.1") as http:
            made = http.post("/v1/feedback", json={"question": Q, "answer": "good", "chunk_ids": []},
                             headers=auth(tokens["admin"]))  # a mark records the reranker it was made with: the folder
            assert made.status_code == 200, made.text
            chat = {"model": "rerank-rag/default", "messages": [{"role": "user", "content": Q}]}
            seen = {scope: (http.post("/v1/ask", json={"question": Q}, headers=auth(token)).json()["reranker"],
                            http.get("/v1/feedback", headers=auth(token)).json()["data"][0]["reranker"],
                            http.post("/v1/chat/completions", json=chat, headers=auth(token)).json()["rerank_rag"]
                            ["reranker"], streamed_reranker(http, chat, token))
                    for scope, token in tokens.items()}
    finally:
        store.switch_back("default")
        for scope in tokens:
            keys.revoke(f"switch-{scope}")
        store.delete("default", [m.mark_id for m in store.marks("default") if m.by == "switch-admin"])
    assert seen["read"] == (Path(folder).name,) * 4 and Path(folder).is_absolute()
    assert seen["admin"] == (folder,) * 4  # the admin runs the server: the whole path
