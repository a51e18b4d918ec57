"""The app's sign-in and its escaping in a real browser (issue 22): `streamlit run app.py` with a key in the store,
driven by Playwright through Debian's Chromium. A session signs in with the key (typed into a password field,
never on the page afterwards), uploads files whose names and text are Markdown, HTML and LaTeX, and the page
then holds no link, image, KaTeX or coloured span made from them: only their literal text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.keys import KeyStore
from rag.settings import Settings
from tests.app.test_browser_e2e import CHROMIUM, CHROMIUM_ARGS, SLOW, idle
from tests.helpers import REPO, free_port, stop_process, wait_for_streamlit

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                                "/usr/bin/chromium (`make browser` or `apt-get install chromium` installs it)")

NAMES = ["[click](x.html) a.txt", "<img src=x onerror=alert(1)> b.txt", "$x^2$ c.txt", "**bold** d.txt",
         ":red[x] e.txt"]
TEXT = ("The battery charges in four hours. [click](x.html) <img src=x onerror=alert(1)> $x^2$ **bold** "
        ":red[x] `tick`")


@pytest.fixture
def keyed_app(tmp_path: Path):
    store = tmp_path / "store"
    _, token = KeyStore(Settings(data_dir=store)).create("browser", collection="*", scope="write")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAG_") and k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}}
    env.update(RAG_DATA_DIR=str(store), RAG_SAMPLE_DIR="", RAG_RERANKER="none", HF_HUB_OFFLINE="1")
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                "--server.address", "127.0.0.1"], cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = wait_for_streamlit(process, port, tmp_path / "streamlit.log")
    yield url, token, tmp_path / "streamlit.log"
    stop_process(process)
    log.close()


def assert_no_markup(page) -> None:
    """Nothing on the page was made from the hostile strings: no link to them, no image, no KaTeX, no colour."""
    assert page.locator("a[href*='x.html']").count() == 0
    assert page.locator("img[src='x']").count() == 0
    assert page.locator(".katex").count() == 0
    assert page.locator("[data-testid='stMarkdownContainer'] strong", has_text="bold").count() == 0
    assert page.locator("span[style*='red'], span[class*='red']", has_text="x").count() == 0


def test_sign_in_then_hostile_names_and_text_stay_text(keyed_app, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, token, log = keyed_app
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
            page.set_default_timeout(SLOW)
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(url)
            field = page.get_by_label("API key")
            expect(field).to_be_visible(timeout=60_000)
            assert field.get_attribute("type") == "password"
            expect(page.get_by_role("heading", name="Ask your documents")).to_have_count(0)
            field.fill("rr_wrong")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("That is not a valid key")).to_be_visible()
            page.get_by_label("API key").fill(token)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Ask your documents")).to_be_visible(timeout=SLOW)
            expect(page.get_by_text("Signed in with the key 'browser'")).to_be_visible()
            idle(page)
            assert token not in page.content()

            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Library").click()
            expect(page.get_by_role("heading", name="Documents in 'default'")).to_be_visible()
            page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
                [{"name": name, "mimeType": "text/plain", "buffer": TEXT.encode()} for name in NAMES])
            page.get_by_role("button", name=f"Ingest {len(NAMES)} files").click()
            for name in NAMES:
                expect(page.get_by_text(f"{name}: ok", exact=False)).to_be_visible(timeout=SLOW)
            idle(page)
            assert_no_markup(page)
            expect(page.get_by_test_id("stDataFrame")).to_be_visible()
            page.get_by_test_id("stSelectbox").filter(has_text="Delete a document").click()
            for name in NAMES:  # a selectbox draws its options as text
                expect(page.get_by_role("option", name=name, exact=True)).to_be_visible()
            page.keyboard.press("Escape")

            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Ask").click()
            box = page.get_by_test_id("stChatInputTextArea")
            expect(box).to_be_enabled(timeout=SLOW)
            box.fill("How long does the battery take to charge?")
            box.press("Enter")
            expect(page.get_by_test_id("stDataFrame")).to_be_visible(timeout=SLOW)
            idle(page)
            answer = page.get_by_test_id("stChatMessage").nth(1)
            expect(answer).to_contain_text("<img src=x onerror=alert(1)>")  # the document's text, literally
            expect(answer).to_contain_text("[click](x.html)")
            assert_no_markup(page)
            assert token not in page.content()

            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_label("API key")).to_be_visible()
            assert not page.get_by_test_id("stException").count()
        finally:
            browser.close()
    assert not dialogs, dialogs  # no onerror ever ran
    assert token not in log.read_text()  # nor did the server log the key
