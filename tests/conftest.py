"""Shared fixtures: real stores, real models, and real servers on 127.0.0.1.

- ``settings``: Settings on a fresh temp data dir (embedded Chroma), packaged MiniLM embedder, no LLM.
- ``openai_server``: an HTTP server that speaks OpenAI's chat-completions API, plain and streamed, and
  fails on demand by model name: ``fail-401`` (or key ``bad-key``), ``fail-429``, ``fail-500``,
  ``fail-429-retry-after-N`` (429 with ``Retry-After: N`` for N seconds from its first request, then it
  answers: a rate-limit window),
  ``hang`` (answers after 5 s), ``broken-stream`` (drops the connection mid-answer), ``stream-no-done``
  (ends the stream cleanly after two pieces, with neither a finish_reason nor ``[DONE]``),
  ``stream-no-finish`` (a whole answer and ``[DONE]``, no finish_reason), ``stream-no-done-finished``
  (a whole answer with finish_reason ``stop``, no ``[DONE]``), ``truncated-json`` (a non-streamed JSON
  body cut midway, Content-Length matching the short body), ``truncated-body`` (Content-Length of the
  whole body, half of it sent, then the connection closed). A normal stream ends like OpenAI's: a last
  chunk with finish_reason ``stop``, then ``[DONE]``.
- ``chroma_server``: ``chroma run`` on a free port with a temp path.
- ``plumbing_reranker``: a cross-encoder with an untrained head (fixed seed), for plumbing only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from rag.settings import Settings
from tests.helpers import FakeOpenAI, free_port, openai_handler

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


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAI]:
    state = FakeOpenAI(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), openai_handler(state))
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
    from rag.embedders.models import packaged_minilm_path

    return packaged_minilm_path()


@pytest.fixture(scope="session")
def plumbing_reranker(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A cross-encoder folder whose head is random (seeded): for plumbing tests, never for quality."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("plumbing-reranker")
    CrossEncoder(minilm_path, num_labels=1).save_pretrained(str(folder))
    return str(folder)
