"""The served app answers only its own Host names (issue 36): `streamlit run app.py`, keyless on loopback as
`make run` serves it, asked over real HTTP and real websocket handshakes. A DNS-rebinding page names a foreign
Host: its page, health check and websocket are refused and nothing of the app runs (no store is touched); the
loopback names and RAG_ALLOWED_HOSTS's own still open the page, and a session over loopback runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import REPO, free_port, stop_process, wait_for_streamlit


@pytest.fixture(scope="module")
def keyless_app(tmp_path_factory):
    root = tmp_path_factory.mktemp("host-guard")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAG_") and k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}}
    env.update(RAG_DATA_DIR=str(root / "store"), RAG_SAMPLE_DIR="", RAG_RERANKER="none", HF_HUB_OFFLINE="1",
               RAG_ALLOWED_HOSTS="rag.example")
    log_path = root / "streamlit.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                "--server.address", "127.0.0.1"], cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    wait_for_streamlit(process, port, log_path)
    yield port, root / "store"
    stop_process(process)
    log.close()


def handshake(port: int, host: str, *, run_page: bool = False, extra_host: str | None = None) -> bytes | int:
    """A websocket handshake to the app's stream, sent to 127.0.0.1 but naming ``host`` (as a rebound name does;
    ``extra_host``: a second Host header besides it): the HTTP status it was refused with, or (opened) the bytes
    the app sent back, after asking it to run the page when ``run_page``."""
    import socket

    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg

    async def go() -> bytes | int:
        try:
            async with websockets.connect(
                    f"ws://{host}/_stcore/stream", sock=socket.create_connection(("127.0.0.1", port)),
                    subprotocols=["streamlit"], open_timeout=20,
                    additional_headers={"Host": extra_host} if extra_host else None) as stream:
                received = b""
                if run_page:
                    message = BackMsg()
                    message.rerun_script.query_string = ""
                    await stream.send(message.SerializeToString())
                    while b"Ask your documents" not in received:  # the Ask page's title, once the page runs
                        received += await asyncio.wait_for(stream.recv(), timeout=180)
                return received
        except websockets.InvalidStatus as refused:
            return refused.response.status_code

    return asyncio.run(go())


def store_files(store: Path) -> list[Path]:
    return sorted(store.rglob("*")) if store.exists() else []


def test_a_foreign_host_gets_neither_page_nor_websocket(keyless_app) -> None:
    port, store = keyless_app
    for host in (f"rebind.example:{port}", "rebind.example", f"127.0.0.1.rebind.example:{port}", ""):
        for path in ("/", "/library", "/_stcore/health", "/_stcore/host-config"):
            page = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
            assert page.status_code == 403, (host, path, page.status_code)
            assert "RAG_ALLOWED_HOSTS" in page.text and "<html" not in page.text.lower()
        if host:
            assert handshake(port, host, run_page=True) == 403
    # two Host headers, one of them ours: refused, whichever one a server behind would read
    assert handshake(port, f"localhost:{port}", extra_host=f"rebind.example:{port}", run_page=True) == 403
    assert handshake(port, f"rebind.example:{port}", extra_host=f"localhost:{port}", run_page=True) == 403
    assert store_files(store) == []  # the page never ran: no store claimed, no key table read


def test_loopback_and_configured_names_still_serve_the_app(keyless_app) -> None:
    port, store = keyless_app
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"rag.example:{port}",
                 f"RAG.example:{port}"):
        page = httpx.get(f"http://127.0.0.1:{port}/library", headers={"Host": host})
        assert page.status_code == 200 and "<html" in page.text.lower(), (host, page.status_code)
        assert handshake(port, host) == b""  # opened
    assert b"Ask your documents" in handshake(port, f"localhost:{port}", run_page=True)
    assert store_files(store)  # the page ran this time, and claimed its store
