"""How the API answers when what it stands on fails: the store unreachable, a configured model missing.
In process (FastAPI's TestClient, no model loaded): these need no documents and no real server."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.server import create_app
from rag.settings import Settings
from tests.helpers import free_port


def test_an_unreachable_chroma_server_is_a_503_in_plain_words() -> None:
    app = create_app(Settings(chroma_host="127.0.0.1", chroma_port=free_port()), warm=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for reply in (client.get("/v1/models"), client.post("/v1/ask", json={"question": "why?"})):
            assert reply.status_code == 503
            error = reply.json()["error"]
            assert error["type"] == "store_unavailable" and "cannot reach the Chroma server" in error["message"]


def test_a_configured_reranker_that_cannot_be_had_is_a_503(settings: Settings,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings.reranker = "no-such-org/no-such-reranker"
    with TestClient(create_app(settings, warm=False), raise_server_exceptions=False, base_url="http://127.0.0.1") as client:
        reply = client.post("/rerank", json={"query": "q", "texts": ["a"]})
    assert reply.status_code == 503
    assert reply.json()["error"]["type"] == "model_unavailable"
    assert "no-such-org/no-such-reranker" in reply.json()["error"]["message"]
    assert "Traceback" not in reply.text
