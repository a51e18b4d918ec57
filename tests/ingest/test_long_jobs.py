"""Issue 36 §4-6 on ingest: a TIFF with a huge second frame fails alone in a real CLI batch; OCR is bounded per
file (pages, pixels, seconds); a real Ctrl-C stops a running `rerank-rag ingest` at its next page and leaves the
store as it was; a file keeps its bytes in originals/ only once its document is committed, and the sweep removes
what nothing vouches for."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ingest.loaders import Reading, read_document
from ingest.pipeline import CANCELLED, Ingestor, SourceFile
from rag.page_image import ORIGINALS, keep_original
from rag.settings import Settings
from rag.store import KnowledgeBase
from tests.helpers import REPO, SAMPLE, fax_with_a_huge_second_frame, scan_frames, text_image, tiff


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    return {**env, "RAG_DATA_DIR": str(data_dir), "RAG_SAMPLE_DIR": "", "PYTHONUNBUFFERED": "1", **extra}


def test_a_tiff_with_a_huge_frame_fails_alone_in_a_cli_batch_and_ocr_stops_at_its_page_limit(tmp_path: Path) -> None:
    """§4 and §5 in one real `rerank-rag ingest` of four files: the huge frame's TIFF fails with its reason, the
    files around it land, and a 4-frame TIFF over RAG_OCR_MAX_PAGES=2 keeps its first two frames and says why."""
    (tmp_path / "before.txt").write_text("The depot before the fax: bikes are serviced on Mondays.")
    (tmp_path / "fax.tif").write_bytes(fax_with_a_huge_second_frame())
    (tmp_path / "scans.tif").write_bytes(tiff(*scan_frames(4)))
    (tmp_path / "after.txt").write_text("The depot after the fax: tyres are fitted on Fridays.")
    done = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ingest", *(str(tmp_path / n) for n in
                                                      ("before.txt", "fax.tif", "scans.tif", "after.txt"))],
        cwd=REPO, env=cli_env(tmp_path / "store", RAG_OCR_MAX_PAGES="2"), capture_output=True, text=True,
        timeout=600)
    lines = done.stdout.splitlines()
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]
    assert lines[0] == "before.txt: ok 1 chunks" and lines[3] == "after.txt: ok 1 chunks", lines
    assert lines[1] == ("fax.tif: failed: frame 2 of 2 is an image of 15,000 x 15,000 pixels, over the 100,000,000 "
                        "a scanned page may have: refused as a likely decompression bomb")
    assert lines[2].startswith("scans.tif: ok ") and "2 pages read by OCR" in lines[2], lines[2]
    assert ("page 3 failed: not read, nor the 1 frames after it: OCR reads at most 2 pages of one file "
            "(RAG_OCR_MAX_PAGES)") in lines[2]
    stored = KnowledgeBase(Settings(data_dir=tmp_path / "store")).chunks.get(where={"source": "scans.tif"})
    text = " ".join(stored["documents"])
    assert "Scanned page 2" in text and "Scanned page 3" not in text


def test_ocr_is_bounded_by_pixels_and_seconds_per_file() -> None:
    frames = tiff(*scan_frames(3))
    by_pixels = read_document("scans.tif", frames, reading=Reading(ocr_max_megapixels=0.2))
    assert [page.number for page in by_pixels.pages] == [1]  # a 900 x 184 frame is 0.17 M pixels
    assert by_pixels.failed_pages == [(2, "not read, nor the 1 frames after it: OCR reads at most 0.2 million "
                                          "pixels of one file (RAG_OCR_MAX_MEGAPIXELS)")]
    by_time = read_document("scans.tif", frames, reading=Reading(ocr_max_seconds=1e-6))
    assert [page.number for page in by_time.pages] == [1]  # the first page is read; then the time is spent
    assert by_time.failed_pages[0][1].endswith("OCR spends at most 1e-06 s on one file (RAG_OCR_MAX_SECONDS)")


def test_a_scanned_pdf_over_its_page_limit_keeps_its_text_pages_and_says_which_scans_were_left() -> None:
    from tests.helpers import text_pdf

    scans = [text_image([f"Scanned notice {i}: the yard closes at {i + 4} pm."], width=900) for i in range(3)]
    buffer = io.BytesIO()
    scans[0].save(buffer, "PDF", resolution=150, save_all=True, append_images=scans[1:])
    read = read_document("notices.pdf", buffer.getvalue(), reading=Reading(ocr_max_pages=1))
    assert [page.number for page in read.pages] == [1] and read.pages[0].ocr
    assert read.failed_pages == [(2, "not read, nor the 1 scanned pages after it: OCR reads at most 1 pages of "
                                     "one file (RAG_OCR_MAX_PAGES)")]
    text = read_document("text.pdf", text_pdf([["A page with a text layer."]] * 3), reading=Reading(ocr_max_pages=1))
    assert len(text.pages) == 3 and not text.failed_pages  # text layers are not OCR: never bounded by it


def test_a_real_ctrl_c_stops_a_running_ingest_promptly_and_leaves_the_store_intact(tmp_path: Path) -> None:
    """§5: SIGINT to `rerank-rag ingest` while it reads a 40-frame TIFF by OCR: it exits 130 saying so, before
    the TIFF's last frame, without reading the file after it; the store holds what it held before."""
    store = tmp_path / "store"
    env = cli_env(store)
    seeded = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(SAMPLE / "returns-and-service.pdf")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert seeded.returncode == 0, seeded.stderr[-2000:]
    (tmp_path / "long.tif").write_bytes(tiff(*scan_frames(40)))
    (tmp_path / "next.txt").write_text("The file after the long scan.")
    process = subprocess.Popen([sys.executable, "-m", "rag.cli", "ingest", str(tmp_path / "long.tif"),
                                str(tmp_path / "next.txt")], cwd=REPO, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               # as a terminal starts it: a test run started in the background (`make test &`)
                               # passes SIGINT ignored on to its children, and Python then never raises on it
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    progress = []
    try:
        while True:  # progress on stderr every 2 s: "long.tif: 3 of 40 pages read by OCR"
            line = process.stderr.readline()
            assert line, f"the ingest ended before its OCR was under way: {process.stdout.read()}"
            if "pages read by OCR" in line:
                progress.append(line)
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)  # a guard against a hang, not a measure of speed
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err, err[-2000:]
    read = [int(line.split(":")[1].split()[0]) for line in (progress + err.splitlines()) if "pages read by OCR" in line]
    assert max(read) < 40  # stopped at a page, not after the whole file
    assert "next.txt" not in out  # the file after it was never ingested
    kb = KnowledgeBase(Settings(data_dir=store))
    assert [record.source for record in kb.documents()] == ["returns-and-service.pdf"]
    assert kb.repair() == 0  # no chunk outside a committed document
    assert [p.name.split("-")[0] for p in (store / ORIGINALS / "default").iterdir()] == \
        [kb.documents()[0].doc_id]  # the TIFF kept nothing


def test_cancel_stops_the_file_being_read_and_commits_nothing_more(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "store")
    cancel = threading.Event()
    seen: list[int] = []

    def progress(source: str, step: str, done: int, total: int) -> None:
        seen.append(done)
        if done == 2:
            cancel.set()  # an API client hung up while frame 2 was read

    results = Ingestor(settings).ingest([SourceFile("first.txt", data=b"The first file lands before the stop."),
                                         SourceFile("long.tif", data=tiff(*scan_frames(6))),
                                         SourceFile("last.txt", data=b"The last file comes after the stop.")],
                                        on_progress=progress, cancel=cancel)
    assert [(r.source, r.status) for r in results] == [("first.txt", "ok"), ("long.tif", "failed"),
                                                       ("last.txt", "failed")]
    assert results[1].reason == CANCELLED and results[2].reason == CANCELLED and max(seen) == 2
    assert [r.source for r in KnowledgeBase(settings).documents()] == ["first.txt"]


def test_a_file_keeps_its_bytes_only_once_committed_and_the_sweep_removes_orphans(tmp_path: Path) -> None:
    """§6: junk "PDFs" that fail keep nothing; a good one keeps its bytes; leftovers (an older release's failed
    uploads, a crash's half-written file) are removed by the sweep, the committed version's file stays."""
    settings = Settings(data_dir=tmp_path / "store")
    folder = tmp_path / "store" / ORIGINALS / "default"
    junk = [SourceFile(f"junk-{i}.pdf", data=os.urandom(200_000)) for i in range(5)]
    results = Ingestor(settings).ingest([*junk, SourceFile("returns.pdf", path=SAMPLE / "returns-and-service.pdf")])
    assert [r.status for r in results] == ["failed"] * 5 + ["ok"]
    [kept] = list(folder.iterdir())
    assert kept.name.startswith(results[-1].doc_id)
    assert kept.read_bytes() == (SAMPLE / "returns-and-service.pdf").read_bytes()

    orphan = keep_original(settings, "default", "junk-0.pdf", "0123456789abcdef", "f" * 64, b"%PDF- junk")
    half = folder / "tmpabc123.part"
    half.write_bytes(b"%PDF- half")
    kb = KnowledgeBase(settings)
    kb.repair(grace_s=3600)  # younger than the grace period: may be another process's, kept
    assert orphan.exists() and half.exists()
    old = time.time() - 7200
    for path in (orphan, half):
        os.utime(path, (old, old))
    kb.repair(grace_s=3600)
    assert sorted(folder.iterdir()) == [kept]


def test_a_cancelled_page_does_not_wait_for_another_ingests_ocr() -> None:
    """§5: while another upload's page holds the OCR engine, a cancelled ingest stops waiting for it."""
    from ingest.document import IngestCancelled
    from ingest.ocr import _engine_lock, read_image

    page = text_image(["A page that waits for the engine."], width=900)
    assert "waits" in read_image(page).text  # the engine loaded, and it reads
    cancel = threading.Event()

    def stop() -> None:
        if cancel.is_set():
            raise IngestCancelled(CANCELLED)

    with _engine_lock:  # another ingest's page is being read
        threading.Timer(0.5, cancel.set).start()
        with pytest.raises(IngestCancelled):
            read_image(page, stop)
    assert _engine_lock.acquire(timeout=1)  # and the lock was not left taken
    _engine_lock.release()

