"""End to end in a real browser: `streamlit run app.py` on a free port with an empty data dir, driven by
Playwright through Debian's Chromium (never a downloaded browser).

The flow is a new user's first minutes: the app paints, the sample documents go in, a first question
about them is answered, the chat is downloaded with that answer and its cited PDF page opened as an image;
then a real SEC 10-Q PDF is uploaded on the Library page while a second browser session asks a question
(two sessions at once), and that PDF is asked about on Ask and on Compare.
Each page is screenshotted into tmp, and into docs/screenshots/ when UPDATE_SCREENSHOTS=1 (so a
test run leaves the checkout clean); the first-minute figures are printed
and written to the tmp dir as first-minute.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import re
from pathlib import Path

import pytest

from tests.helpers import REPO, SEC_PDFS, free_port, stop_process, wait_for_streamlit, write_dataset

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]  # containers often have a tiny /dev/shm
SCREENSHOTS = REPO / "docs" / "screenshots"
PDF = SEC_PDFS / "2022 Q3 AAPL.pdf"
SLOW = 240_000  # ms: first model loads and the PDF ingest on a busy 2-core machine

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium "
                       "(`make browser` or `apt-get install chromium` installs it)"),
    pytest.mark.skipif(not PDF.exists(), reason=f"the SEC 10-Q PDFs are missing: {PDF}"),
]


def _reranker(plumbing_reranker: str) -> str:
    """The shipped reranker when this checkout has it, else the plumbing one (ranks are then meaningless)."""
    from rag import catalog

    info = catalog.lookup(catalog.DEFAULT_RERANKER)
    return info.name if info and catalog.availability(info)[0] else plumbing_reranker


@pytest.fixture
def app_server(tmp_path: Path, plumbing_reranker: str):
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAG_") and k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}}
    write_dataset(tmp_path / "datasets" / "tiny")  # the Evaluate page's first dataset folder
    env.update(RAG_DATA_DIR=str(tmp_path / "store"), RAG_RERANKER=_reranker(plumbing_reranker),
               RAG_DATASETS_DIR=str(tmp_path / "datasets"),
               RAG_TOP_K="10", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = wait_for_streamlit(process, port, tmp_path / "streamlit.log")
    yield url, started, time.perf_counter() - started
    stop_process(process)
    log.close()


def note(figures: dict, key: str, since: float) -> None:
    figures[key] = round(time.perf_counter() - since, 1)
    print(f"  {key}: {figures[key]} s", flush=True)


def shoot(page, name: str, tmp_path: Path, height: int) -> None:
    page.set_viewport_size({"width": 1400, "height": height})
    page.wait_for_timeout(1000)  # let the data grid and the chart finish drawing
    target = tmp_path / "screenshots" / name
    target.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(target, SCREENSHOTS / name)


def ask(page, question: str, answers_before: int) -> None:
    from playwright.sync_api import expect

    box = page.get_by_test_id("stChatInputTextArea")
    expect(box).to_be_enabled(timeout=SLOW)
    box.fill(question)
    box.press("Enter")
    expect(page.get_by_test_id("stChatMessage")).to_have_count(2 * (answers_before + 1), timeout=SLOW)
    expect(page.get_by_test_id("stDataFrame")).to_have_count(answers_before + 1, timeout=SLOW)
    idle(page)


def go(page, title: str, heading: str) -> None:
    from playwright.sync_api import expect

    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    idle(page)


def idle(page) -> None:
    """Wait until the app's script run is over (the running-man status widget is gone)."""
    from playwright.sync_api import expect

    page.wait_for_timeout(300)
    expect(page.get_by_test_id("stStatusWidget")).to_be_hidden(timeout=SLOW)


def test_new_user_flow_in_a_real_browser(app_server, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, started, server_up_s = app_server
    figures: dict[str, float] = {"server_up_s": round(server_up_s, 1)}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1800})
            page = context.new_page()
            page.set_default_timeout(SLOW)
            opened = time.perf_counter()
            page.goto(url)
            expect(page.get_by_role("heading", name="Ask your documents")).to_be_visible(timeout=60_000)
            note(figures, "first_paint_after_open_s", opened)
            note(figures, "first_paint_after_start_s", started)
            expect(page.get_by_text("Added the sample documents (5 of 5)")).to_be_visible(timeout=SLOW)

            # the first question about the sample documents (ingested on this first start)
            ask(page, "How long do I have to return a bike for a refund?", 0)
            note(figures, "first_answer_after_open_s", opened)
            note(figures, "first_answer_after_start_s", started)
            expect(page.get_by_test_id("stChatMessage").nth(1)).to_contain_text("[1]")

            # "Download chat" right after the answer saves that answer (it once saved the chat without it)
            with page.expect_download() as download:
                page.get_by_test_id("stDownloadButton").get_by_role("button").click()
            saved = Path(download.value.path()).read_text(encoding="utf-8")
            assert "## 1. How long do I have to return a bike for a refund?" in saved, saved
            assert "(extractive answer" in saved and "- [1] " in saved, saved

            # the cited PDF page opens as an image beside the answer, the quoted sentence boxed
            page.get_by_role("button", name=re.compile(r"returns-and-service\.pdf, p\. \d")).first.click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_role("img")).to_be_visible(timeout=60_000)
            expect(dialog).to_contain_text("boxed in yellow")
            shoot(page, "cited-page.png", tmp_path, 1300)
            page.keyboard.press("Escape")
            expect(dialog).to_be_hidden()

            # Library: upload a real 10-Q while a second browser session asks a question
            go(page, "Library", "Documents in 'default'")
            page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(PDF))
            page.get_by_role("button", name="Ingest 1 file").click()
            other = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
            other.set_default_timeout(SLOW)
            other.goto(url)
            ask(other, "How many days of paid holiday do employees get?", 0)
            expect(other.get_by_test_id("stChatMessage").nth(1)).to_contain_text("[1]")
            expect(page.get_by_text(f"{PDF.name}: ok")).to_be_visible(timeout=SLOW)
            idle(page)
            note(figures, "pdf_ingest_visible_after_start_s", started)
            expect(page.get_by_test_id("stDataFrame").last).to_contain_text(PDF.name)
            shoot(page, "library.png", tmp_path, 1150)

            # Ask about the PDF
            go(page, "Ask", "Ask your documents")
            expect(page.get_by_test_id("stChatMessage")).to_have_count(2)  # this session's history survives
            ask(page, "What were Apple's total net sales for the three months ended June 25, 2022?", 1)
            answer = page.get_by_test_id("stChatMessage").nth(3)
            expect(answer).to_contain_text("[1]")
            expect(answer.get_by_test_id("stDataFrame")).to_be_visible()
            expect(answer).to_contain_text("rerank")
            page.set_viewport_size({"width": 1400, "height": 1300})
            page.get_by_test_id("stChatMessage").nth(2).evaluate("e => e.scrollIntoView({block: 'start'})")
            shoot(page, "ask.png", tmp_path, 1300)

            # Compare: both columns and the slope chart
            go(page, "Compare", "Compare")
            page.get_by_label("Question").fill("What were Apple's total net sales for the three months ended "
                                               "June 25, 2022?")
            page.get_by_role("button", name="Compare").click()
            # both sides start from the same first stage: rerank off against on
            expect(page.get_by_role("heading", name="Hybrid (dense + BM25), no rerank")).to_be_visible(timeout=SLOW)
            expect(page.get_by_role("heading", name=re.compile(r"^Hybrid \(dense \+ BM25\) \+ "))).to_be_visible()
            columns = page.get_by_test_id("stColumn")
            expect(columns.nth(2).get_by_test_id("stDataFrame")).to_be_visible()
            expect(columns.nth(3).get_by_test_id("stDataFrame")).to_be_visible()
            expect(page.get_by_text("Rerank cost")).to_be_visible()
            # the slope chart is drawn after the metrics: on a loaded machine it takes more than expect's 5 s
            expect(page.get_by_test_id("stVegaLiteChart").first).to_be_visible(timeout=SLOW)
            idle(page)
            shoot(page, "compare.png", tmp_path, 1800)

            go(page, "Settings", "Loaded models")
            shoot(page, "settings.png", tmp_path, 1300)

            # Evaluate a tiny dataset: the table, the run names explained, the chart
            go(page, "Evaluate", "Evaluate")
            page.get_by_role("button", name="Run the evaluation").click()
            expect(page.get_by_text("Runs: dense, bm25 and hybrid are the first retrieval alone")).to_be_visible(
                timeout=SLOW)
            expect(page.get_by_test_id("stVegaLiteChart")).to_be_visible()
            idle(page)
            shoot(page, "evaluate.png", tmp_path, 2000)
            assert not page.get_by_test_id("stException").count()
        finally:
            browser.close()
    (tmp_path / "first-minute.json").write_text(json.dumps(figures, indent=2))
    print("first-minute figures:", json.dumps(figures))
