"""The HTTP API's live server for the tests of this folder (tests/api/conftest.py makes it a fixture): `rerank-rag
serve` in its own process on a free port, over a temp store with the sample documents uploaded through the API,
API keys made before it starts (so every request needs one), and an OpenAI-compatible test server in this
process as its LLM, whose behaviour a test can switch (normal, a stream that breaks mid-answer, a 500). Every
response body a client here receives is kept in ``BODIES``, for the check that no API key ever appears in one."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx

from rag.settings import Settings
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


def switchable_llm() -> Iterator[SwitchableLlm]:
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


def live_server(data_dir: Path, llm: SwitchableLlm) -> Iterator[Server]:
    from api.keys import KeyStore

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


def openai_client(server: Server, key: str = "reader"):
    from openai import OpenAI

    return OpenAI(api_key=server.tokens[key], base_url=f"{server.url}/v1", http_client=http_client(), max_retries=0)


