"""Measure a new user's first minute: `make run` on an empty data dir, then in Debian's Chromium the time to
first paint and to the first answer about the sample documents. Not collected by pytest; run it by hand:

    .venv/bin/python tests/first_minute.py                                # exactly `make run`
    .venv/bin/python tests/first_minute.py --server.fileWatcherType none  # streamlit run app.py + these flags
    RAG_RERANKER=rerank-minilm-l6 .venv/bin/python tests/first_minute.py  # with a reranker configured

Prints one JSON line: seconds since the command started until the server answers, the Ask page's title is
visible (first paint), and the first answer with its chunk table is visible.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
QUESTION = "How long do I have to return a bike for a refund?"


def main(extra: list[str]) -> dict:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = tempfile.mkdtemp(prefix="first-minute-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_") or k == "RAG_RERANKER"}
    env.update(RAG_DATA_DIR=store, STREAMLIT_SERVER_PORT=str(port))
    command = ["make", "run"] if not extra else [str(REPO / ".venv/bin/streamlit"), "run", "app.py", *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True,
                               stdout=open(Path(store) / "server.log", "wb"), stderr=subprocess.STDOUT)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}", timeout=2000)
                    break
                except Exception:  # noqa: BLE001 - not listening yet
                    if process.poll() is not None:
                        raise SystemExit((Path(store) / "server.log").read_text()[-2000:])
                    time.sleep(0.2)
            reachable = time.perf_counter()
            expect(page.get_by_role("heading", name="Ask your documents")).to_be_visible(timeout=120_000)
            painted = time.perf_counter()
            box = page.get_by_test_id("stChatInputTextArea")
            expect(box).to_be_enabled(timeout=300_000)
            box.fill(QUESTION)
            box.press("Enter")
            expect(page.get_by_test_id("stDataFrame")).to_have_count(1, timeout=300_000)
            answered = time.perf_counter()
            browser.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
    return {"command": " ".join(command), "server_reachable_s": round(reachable - started, 1),
            "first_paint_s": round(painted - started, 1), "first_answer_s": round(answered - started, 1),
            "reranker": env.get("RAG_RERANKER", "(default)"), "load_average": os.getloadavg()[0]}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
