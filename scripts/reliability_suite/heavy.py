"""The heavy cases (--heavy, minutes each): a 1,500-page PDF through the CLI; 8 browser sessions asking while
a 12-PDF upload runs."""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
from pathlib import Path

from reliability_suite.core import QUESTION, Child, Outcome, case, cli, load_avg, run, snapshot, texts
from tests.helpers import SEC_PDFS, free_port

# -- heavy cases (--heavy): minutes each
HEAVY_PAGES = int(os.environ.get("RELIABILITY_PDF_PAGES", "1500"))  # smaller for a quick try
RSS_AIM_MB = 1536  # the aim for a 1,500-page PDF: under 1.5 GB


# The pages are the SEC 10-Qs, but from one 28-page 10-Q repeated: ingest stores each distinct chunk of a
# document once, and on 2 cores shared with other work (load ~10) embedding runs at ~1.6 chunks/s, so the
# 536 distinct pages of all 12 10-Qs (~2,600 chunks) would take ~25 min alone. Parsing, progress and memory
# are those of 1,500 pages; the embedding that of 28.
HEAVY_PDF, HEAVY_PDF_CHANGED = "2022 Q3 AAPL.pdf", "2023 Q2 AAPL.pdf"


def _concat_sec_pdfs(path: Path, pages: int, names: list[str] | None = None) -> int:
    """The SEC 10-Q PDFs ``names`` (all of them by default) one after another, again and again, until
    ``pages`` pages. Fresh readers each round: a page object added twice to one writer would be shared."""
    from pypdf import PdfReader, PdfWriter

    sources = [SEC_PDFS / name for name in names] if names else sorted(SEC_PDFS.glob("*.pdf"))
    if not sources or not all(source.exists() for source in sources):
        raise RuntimeError(f"the SEC 10-Q PDFs are missing: {SEC_PDFS}")
    writer = PdfWriter()
    while len(writer.pages) < pages:
        for source in sources:
            for page in PdfReader(source).pages:
                if len(writer.pages) == pages:
                    break
                writer.add_page(page)
    with open(path, "wb") as out:
        writer.write(out)
    return len(writer.pages)


@case(f"heavy: a {HEAVY_PAGES:,}-page PDF through the CLI, then a changed version killed halfway",
      f"`ok`, progress lines `… of {HEAVY_PAGES:,} pages read` on stderr, peak RSS under 1.5 GB; the second run, SIGKILLed "
      "at half the first one's time, leaves the document list and chunk counts as they were, and the next "
      "ingest sweeps its chunks", "tests/ingest/test_ingest.py::test_a_real_sigkill_mid_batch_leaves_a_consistent_store"
      " (small)", heavy=True)
def _big_pdf(work: Path, env: dict[str, str]) -> Outcome:
    pdf = work / "sec-10q-1500-pages.pdf"  # under the run's temp dir, never in the repo
    pages = _concat_sec_pdfs(pdf, HEAVY_PAGES, [HEAVY_PDF])
    size_mb = pdf.stat().st_size / 1e6
    load = load_avg()
    done = run(cli("ingest", str(pdf)), env, timeout_s=900)
    read = [line for line in done.err.splitlines() if "pages read" in line]
    embedded = [line for line in done.err.splitlines() if "chunks embedded" in line]
    first = snapshot(env)

    _concat_sec_pdfs(pdf, HEAVY_PAGES, [HEAVY_PDF_CHANGED])  # a changed version: it would replace the stored one
    child = Child(cli("ingest", str(pdf)), env)
    time.sleep(done.seconds / 2)
    at_kill = (child.err[-1].strip() if child.err else "no progress line yet")
    child.kill()
    killed = child.reap()
    after_kill = snapshot(env)
    kept = after_kill["docs"] == first["docs"]
    (tiny,) = texts(work, n=1, sentences=5)
    swept_run = run(cli("ingest", str(tiny)), {**env, "RAG_ORPHAN_GRACE_S": "0"})
    swept = snapshot(env, [tiny.name])
    line = " | ".join(done.lines)
    observed = (f"{pages:,} pages ({HEAVY_PDF} repeated), {size_mb:.0f} MB: `{line}` in {done.seconds:.0f} s, peak RSS {done.rss_mb:,.0f} MB "
                f"(aim {RSS_AIM_MB:,}), load avg {load} before / {load_avg()} after; {len(read)} `pages read` lines "
                f"(first `{read[0].strip() if read else '-'}`), {len(embedded)} `chunks embedded`; changed version "
                f"killed at {done.seconds / 2:.0f} s (rc {killed.rc}, last progress `{at_kill}`): documents and chunk "
                f"counts kept: {kept} ({first['docs'].get(pdf.name)} chunks), {after_kill['orphans']} uncommitted "
                f"chunks swept by the next ingest -> {swept['orphans']} left, total {swept['count']} vs "
                f"{first['count']} before")
    passed = (done.rc == 0 and done.clean and ": ok " in line and bool(read) and done.rss_mb < RSS_AIM_MB
              and first["orphans"] == 0 and killed.rc == -9 and kept and swept_run.rc == 0
              and swept["orphans"] == 0 and swept["count"] == first["count"] and swept["docs"] == first["docs"])
    return Outcome(observed, passed, [pdf.name], max(done.rss_mb, killed.rss_mb))


BROWSER_QUESTIONS = ["How long do I have to return a bike for a refund?",
                     "How many days of paid holiday do employees get?",
                     "How long does the battery take to charge?",
                     "What does the warranty cover?",
                     "How do I book a service appointment?",
                     "Can I work from home?",
                     "What is the range of the e-bike on one charge?",
                     "Who pays for shipping on a return?"]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


UPLOAD_PAGES = 2


def _first_pages(source: Path, target: Path, pages: int) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(source).pages[:pages]:
        writer.add_page(page)
    with open(target, "wb") as out:
        writer.write(out)


def _streamlit(work: Path, env: dict[str, str]) -> tuple[Child, str]:
    """``streamlit run app.py`` on a fresh store that takes the sample documents on its first start."""
    port = free_port()
    app_env = {k: v for k, v in env.items() if k != "RAG_SAMPLE_DIR"}
    app_env.update(RAG_DATA_DIR=str(work / "app-store"), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    app = Child([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                 "--server.headless", "true", "--browser.gatherUsageStats", "false",
                 "--server.fileWatcherType", "none"], app_env)
    url = f"http://127.0.0.1:{port}"
    import urllib.request
    deadline = time.time() + 120
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read().strip() == b"ok":
                return app, url
        except OSError:
            pass
        if app.process.poll() is not None or time.time() > deadline:
            app.kill()
            raise RuntimeError(f"streamlit did not start: {''.join(app.err)[-1500:]}")
        time.sleep(0.3)


@case(f"heavy: 8 browser sessions ask at once while a 12-PDF upload runs (Streamlit + Chromium; the 10-Qs' "
      f"first {UPLOAD_PAGES} pages each)",
      "all 8 answered, no error or traceback on any page; the upload (a 9th session, Library page) ends "
      "`Done: 12 of 12`; time until all 8 answered, p95 per question", "tests/app/test_browser_e2e.py (2 sessions)",
      heavy=True)
def _browser_load(work: Path, env: dict[str, str]) -> Outcome:
    from playwright.sync_api import expect, sync_playwright

    if not CHROMIUM.exists():
        return Outcome(f"Debian's chromium is not at {CHROMIUM} (`make browser`)", False)
    pdfs = []  # the 12 10-Qs, their first UPLOAD_PAGES pages each: the whole of them would embed for ~25 min
    for source in sorted(SEC_PDFS.glob("*.pdf")):
        _first_pages(source, work / source.name, UPLOAD_PAGES)
        pdfs.append(work / source.name)
    slow = 600_000
    app, url = _streamlit(work, env)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                # the 9th session: opens the app first (the sample documents go in), warms the models with one
                # question, then starts the upload on the Library page
                uploader = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
                uploader.set_default_timeout(slow)
                uploader.goto(url)
                box = uploader.get_by_test_id("stChatInputTextArea")
                expect(box).to_be_enabled(timeout=slow)
                box.fill(QUESTION)
                box.press("Enter")
                expect(uploader.get_by_test_id("stDataFrame")).to_have_count(1, timeout=slow)
                uploader.get_by_test_id("stSidebarNav").get_by_role("link", name="Library").click()
                expect(uploader.get_by_test_id("stFileUploaderDropzoneInput")).to_be_attached(timeout=slow)
                # the 8 askers open their pages (each a new session) before anything starts
                pages = []
                for _ in BROWSER_QUESTIONS:
                    page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
                    page.set_default_timeout(slow)
                    page.goto(url)
                    pages.append(page)
                for page in pages:
                    expect(page.get_by_test_id("stChatInputTextArea")).to_be_enabled(timeout=slow)
                load = load_avg()
                uploader.get_by_test_id("stFileUploaderDropzoneInput").set_input_files([str(p) for p in pdfs])
                uploader.get_by_role("button", name=f"Ingest {len(pdfs)} files").click()
                upload_started = time.perf_counter()
                asked = []
                for page, question in zip(pages, BROWSER_QUESTIONS):
                    box = page.get_by_test_id("stChatInputTextArea")
                    box.fill(question)
                    box.press("Enter")
                    asked.append(time.perf_counter())
                answered: list[float | None] = [None] * len(pages)
                deadline = time.perf_counter() + slow / 1000
                while None in answered and time.perf_counter() < deadline:
                    for i, page in enumerate(pages):
                        if answered[i] is None and page.get_by_test_id("stChatMessage").count() == 2 \
                                and page.get_by_test_id("stDataFrame").count() >= 1:
                            answered[i] = time.perf_counter()
                    time.sleep(0.25)
                all_s = max((t for t in answered if t), default=time.perf_counter()) - asked[0]
                seconds = sorted(t - a for t, a in zip(answered, asked) if t)
                done_text = uploader.get_by_text(f"Done: {len(pdfs)} of {len(pdfs)} files")
                expect(done_text).to_be_visible(timeout=slow)
                upload_s = time.perf_counter() - upload_started
                errors = []
                for page in [*pages, uploader]:
                    errors += [page.get_by_test_id("stException").count(),
                               page.get_by_test_id("stAlertContentError").count()]
                    errors.append(int("Traceback" in page.content()))
                ok_lines = uploader.get_by_text(re.compile(r"\.pdf: ok ")).count()
            finally:
                browser.close()
    finally:
        app.process.terminate()
        served = app.reap(60)
    p95 = statistics.quantiles(seconds, n=20, method="inclusive")[-1] if len(seconds) > 1 else float("nan")
    observed = (f"{len(seconds)}/8 answered, all within {all_s:.0f} s of the first question (p95 per question "
                f"{p95:.0f} s, fastest {seconds[0] if seconds else float('nan'):.0f} s); the 12-PDF upload: "
                f"{ok_lines} `ok` lines, `Done` after {upload_s:.0f} s; errors/tracebacks on the pages: {sum(errors)}; "
                f"app server peak RSS {served.rss_mb:,.0f} MB; load avg {load} at the start / {load_avg()} at the "
                f"end")
    passed = len(seconds) == 8 and not sum(errors) and ok_lines == len(pdfs) and "Traceback" not in "".join(app.err)
    return Outcome(observed, passed, [], served.rss_mb)
