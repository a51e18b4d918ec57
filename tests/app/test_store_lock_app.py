"""The app and the embedded store's one writer (rag.chroma_client), with real second processes: `rerank-rag serve`
serving the same store leaves the app read-only and saying who holds it; a process writing to it makes the app
wait and say so; and while the app serves, a `rerank-rag ingest` into its store is refused naming the app."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from rag.chroma_client import store_holders
from rag.settings import Settings
from tests.helpers import REPO, free_port, run_app as run

APP = str(REPO / "app.py")
RERANK_RAG = str(Path(sys.executable).with_name("rerank-rag"))
WRITER = textwrap.dedent("""
    import sys
    from rag.settings import Settings
    from rag.store import writing
    with writing(Settings(data_dir=sys.argv[1])):   # what an ingest holds while it writes
        print("writing", flush=True)
        sys.stdin.readline()
""")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "store"
    for name, value in {"RAG_DATA_DIR": str(path), "RAG_SAMPLE_DIR": "", "RAG_RERANKER": "none"}.items():
        monkeypatch.setenv(name, value)
    before = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    yield path
    config.set_option("server.address", before)


def plain(markdown: str) -> str:
    return markdown.replace("\\", "")


def wait_for_holder(store: Path, pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while pid not in [p for p, _, _ in store_holders(Settings(data_dir=store))]:
        assert time.monotonic() < deadline, "the other process never took its claim on the store"
        time.sleep(0.2)


def test_while_serve_holds_the_store_the_app_reads_and_names_it(store: Path) -> None:
    port = free_port()
    serve = subprocess.Popen([RERANK_RAG, "serve", "--port", str(port)], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for_holder(store, serve.pid)
        at = run(AppTest.from_file(APP, default_timeout=180))
        sidebar = " ".join(plain(c.value) for c in at.sidebar.caption)
        assert "Read-only" in sidebar and f"pid {serve.pid} (rerank-rag serve)" in sidebar, sidebar
        at.chat_input[0].set_value("How long does the battery take to charge?")
        run(at)  # questions still work: reading is safe while nobody writes
        run(at.switch_page("app_pages/library.py"))
        assert not at.file_uploader and not [b for b in at.button if b.label == "Delete"]
        notice = " ".join(plain(i.value) for i in at.info)
        assert f"pid {serve.pid} (rerank-rag serve)" in notice and "server mode" in notice, notice

        # and the other way round: serve's own upload is refused while the app serves the store too
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert serve.poll() is None and time.monotonic() < deadline, "serve never answered"
            time.sleep(0.5)
        up = httpx.post(f"http://127.0.0.1:{port}/v1/collections/default/documents",
                        files={"files": ("a.txt", b"The battery charges in four hours.", "text/plain")}, timeout=60)
        assert up.status_code >= 400 and f"pid {os.getpid()}" in up.text, up.text
    finally:
        serve.terminate()
        serve.wait(30)
    run(at)  # serve is gone: this app serves the store alone and may write
    assert at.file_uploader and not [i for i in at.info if "are off" in i.value]


def test_while_another_process_writes_the_app_waits_and_says_who(store: Path) -> None:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        at = run(AppTest.from_file(APP, default_timeout=180))
        warning = plain(at.warning[0].value)
        assert "cannot be read right now" in warning and f"pid {writer.pid} (python -c), writing to it" in warning
        assert not at.chat_input  # no page runs: a search now could miss what the writer commits
        assert [b.label for b in at.button] == ["Try again"]
    finally:
        writer.communicate("\n", timeout=30)
    run(at.button[0].click())
    assert at.chat_input and not at.warning


def test_while_the_app_serves_an_ingest_into_its_store_is_refused_naming_it(store: Path, tmp_path: Path) -> None:
    run(AppTest.from_file(APP, default_timeout=180))
    document = tmp_path / "notes.txt"
    document.write_text("The battery charges in four hours.")
    ingest = subprocess.run([RERANK_RAG, "ingest", str(document)], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert ingest.returncode != 0, (ingest.stdout, ingest.stderr)
    assert f"pid {os.getpid()}" in ingest.stderr and "server mode" in ingest.stderr, ingest.stderr
