"""Issue 36's cases: a TIFF with a huge frame between good files; OCR bounded per file; Ctrl-C during a long OCR;
a long upload beside a small one, a full upload queue and clients that hang up; failed files' bytes. (Item 7,
the rerank bound, is in api_cases.)"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

from reliability_suite.core import Child, Outcome, case, cli, python, run
from tests.helpers import fax_with_a_huge_second_frame, scan_frames, tiff

LONG_TESTS = "tests/ingest/test_long_jobs.py"


@case("bad input: a TIFF whose second frame is 15,000 px square, between two good files",
      "`fax.tif: failed: frame 2 of 2 is an image of 15,000 x 15,000 pixels … decompression bomb`; the files "
      "around it `ok`; exit 1", f"{LONG_TESTS}::test_a_tiff_with_a_huge_frame_fails_alone_in_a_cli_batch_and_ocr_"
      "stops_at_its_page_limit, tests/api/test_uploads.py::test_a_tiff_with_a_huge_frame_fails_alone_in_an_upload")
def _huge_frame(work: Path, env: dict[str, str]) -> Outcome:
    (work / "before.txt").write_text("Before the fax: the depot services bikes on Mondays.")
    (work / "fax.tif").write_bytes(fax_with_a_huge_second_frame())
    (work / "after.txt").write_text("After the fax: the depot fits tyres on Fridays.")
    done = run(cli("ingest", *(str(work / name) for name in ("before.txt", "fax.tif", "after.txt"))), env)
    passed = (done.rc == 1 and done.clean and len(done.lines) == 3 and done.lines[0] == "before.txt: ok 1 chunks"
              and done.lines[1].startswith("fax.tif: failed: frame 2 of 2 is an image of 15,000 x 15,000 pixels")
              and done.lines[2] == "after.txt: ok 1 chunks")
    return Outcome(" | ".join(done.lines) or done.err.strip()[-200:], passed, ["before.txt", "after.txt"],
                   done.rss_mb)


@case("long OCR: a 6-frame TIFF over RAG_OCR_MAX_PAGES=3", "`ok`, 3 pages read by OCR, `page 4 failed: not read, "
      "nor the 2 frames after it: OCR reads at most 3 pages of one file (RAG_OCR_MAX_PAGES)`",
      f"{LONG_TESTS}::test_ocr_is_bounded_by_pixels_and_seconds_per_file")
def _ocr_pages(work: Path, env: dict[str, str]) -> Outcome:
    (work / "scans.tif").write_bytes(tiff(*scan_frames(6)))
    done = run(cli("ingest", str(work / "scans.tif")), {**env, "RAG_OCR_MAX_PAGES": "3"})
    line = " | ".join(done.lines) or done.err.strip()[-200:]
    passed = (done.rc == 0 and done.clean and line.startswith("scans.tif: ok ") and "3 pages read by OCR" in line
              and "page 4 failed: not read, nor the 2 frames after it: OCR reads at most 3 pages of one file" in line)
    return Outcome(line, passed, ["scans.tif"], done.rss_mb)


@case("long OCR: Ctrl-C (SIGINT) to `rerank-rag ingest` while it reads a 60-frame TIFF, a file after it",
      "exit 130 `interrupted` within a page, before the last frame, no traceback; the file after it not ingested; "
      "store unchanged",
      f"{LONG_TESTS}::test_a_real_ctrl_c_stops_a_running_ingest_promptly_and_leaves_the_store_intact")
def _ctrl_c(work: Path, env: dict[str, str]) -> Outcome:
    (work / "long.tif").write_bytes(tiff(*scan_frames(60)))
    (work / "next.txt").write_text("The file after the long scan.")
    child = Child(cli("ingest", str(work / "long.tif"), str(work / "next.txt")), env)
    deadline = time.time() + 300
    while not any("pages read by OCR" in line for line in child.err):  # stderr's progress, every 2 s
        if child.process.poll() is not None or time.time() > deadline:
            break
        time.sleep(0.2)
    sent = time.perf_counter()
    child.process.send_signal(signal.SIGINT)
    done = child.reap(300)
    waited = time.perf_counter() - sent
    frames = [int(m.group(1)) for m in re.finditer(r"long\.tif: (\d+) of 60 pages read by OCR", done.err)]
    last = done.err.strip().splitlines()[-1] if done.err.strip() else ""
    passed = done.rc == 130 and last == "interrupted" and done.clean and frames and max(frames) < 60 and not done.lines
    return Outcome(f"exit {done.rc} `{last}` {waited:.1f} s after SIGINT; progress last said frame "
                   f"{max(frames, default=0)} of 60; stdout: {' | '.join(done.lines) or '(nothing)'}", bool(passed),
                   [], done.rss_mb)


UPLOAD_RACE = """
import json, socket, sys, threading, time, httpx, uvicorn
from api.keys import KeyStore
from api.server import create_app
from rag.settings import Settings
from tests.helpers import free_port, scan_frames, tiff
settings = Settings()
keys = KeyStore(settings)
keys.revoke("probe-writer")  # one probe key per store, whichever case made it
_, token = keys.create("probe-writer", collection="*", scope="write")
auth = {"Authorization": f"Bearer {token}"}
port = free_port()
server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.05)
url = f"http://127.0.0.1:{port}"
documents = url + "/v1/collections/default/documents"
def raw_upload(name, data):  # a client that sends its upload, waits, and may hang up
    request = httpx.Request("POST", documents, files=[("files", (name, data))])
    body = request.read()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"POST /v1/collections/default/documents HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\nContent-Type: "
                  f"{request.headers['content-type']}\\r\\nContent-Length: {len(body)}\\r\\n"
                  f"Authorization: Bearer {token}\\r\\n\\r\\n").encode() + body)
    return sock
def answered(sock):
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)
def active():
    return httpx.get(url + "/health", timeout=60).json()["pools"]["ingest"]["active"]
def wait(condition, what, timeout_s=240):
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:  # say how far it got, and stop
            out["never"] = what
            print(json.dumps(out))
            sys.exit(1)
        time.sleep(0.2)
    return True
scan = tiff(*scan_frames(60))
out = {}
first = raw_upload("long-a.tif", scan)
out["first_started"] = wait(lambda: active() == 1, "the first TIFF's ingest started")
small = httpx.post(documents, files=[("files", ("small.txt", b"A small upload: the shop sells bells."))],
                   headers=auth, timeout=300)
out["small"] = [small.status_code, small.json()["results"][0]["status"] if small.status_code == 200 else small.text]
out["first_running_then"] = not answered(first)
second = raw_upload("long-b.tif", scan)
out["second_started"] = wait(lambda: active() == 2, "the second TIFF's ingest started")
full = httpx.post(documents, files=[("files", ("late.txt", b"Too late."))], headers=auth, timeout=300)
out["full"] = [full.status_code, full.headers.get("retry-after")]
started = time.perf_counter()
second.close()
out["second_stopped"] = wait(lambda: active() == 1, "the hung-up ingest stopped")
out["second_stop_s"] = round(time.perf_counter() - started, 1)
out["first_still_running"] = not answered(first)
first.close()
out["first_stopped"] = wait(lambda: active() == 0, "the first ingest stopped once its client hung up")
out["stored"] = sorted(r["source"] for r in httpx.get(documents, headers=auth).json()["data"]
                      if r["source"].startswith(("long-", "small")))
print(json.dumps(out))
server.should_exit = True
"""


@case("API: a 60-frame TIFF upload, another client's small upload, a third while both upload workers are busy, "
      "then both TIFF clients hang up", "the small one `ok` while the TIFF is read; the third 503 with Retry-After; "
      "each hang-up stops its ingest at a page; neither TIFF stored",
      "tests/api/test_uploads.py::test_a_long_ocr_upload_never_starves_another_and_a_client_that_hangs_up_cancels_"
      "its_work", server=True)
def _upload_race(work: Path, env: dict[str, str]) -> Outcome:
    done = run(python(UPLOAD_RACE), {**env, "RAG_UPLOAD_WORKERS": "2", "RAG_UPLOAD_QUEUE": "0",
                                     "RAG_OCR_MAX_SECONDS": "3600"}, timeout_s=900)
    if done.rc != 0 or not done.lines:
        said = done.lines[-1] if done.lines else done.err.strip()[-200:]
        return Outcome(f"rc {done.rc}: {said}", False, ["small.txt"], done.rss_mb)
    out = json.loads(done.lines[-1])
    passed = (out["first_started"] and out["small"] == [200, "ok"] and out["first_running_then"]
              and out["second_started"] and out["full"][0] == 503 and (out["full"][1] or "").isdigit()
              and out["second_stopped"] and out["first_still_running"] and out["first_stopped"]
              and out["stored"] == ["small.txt"] and done.clean)
    observed = (f"small upload {out['small']} while the TIFF was read; third {out['full'][0]} (Retry-After "
                f"{out['full'][1]}); a hang-up's ingest stopped {out['second_stop_s']} s after it, the other still "
                f"running: {out['first_still_running']}; stored: {out['stored']}")
    return Outcome(observed, bool(passed), ["small.txt"], done.rss_mb)


@case("failed files keep no bytes: 20 junk 2 MB \"PDFs\" through the CLI; then a 2-hour-old orphan swept",
      "20 × `failed: not a readable PDF`, exit 1, nothing new in originals/; the next ingest's sweep removes the "
      "orphan, the committed PDFs' files stay",
      f"{LONG_TESTS}::test_a_file_keeps_its_bytes_only_once_committed_and_the_sweep_removes_orphans")
def _junk_bytes(work: Path, env: dict[str, str]) -> Outcome:
    kept = Path(env["RAG_DATA_DIR"]) / "originals" / "default"
    before = sorted(p.name for p in kept.iterdir())
    junk = []
    for i in range(20):
        path = work / f"junk-{i:02d}.pdf"
        path.write_bytes(b"%PDF-1.7\n" + os.urandom(2_000_000))
        junk.append(str(path))
    done = run(cli("ingest", *junk), env)
    after_junk = sorted(p.name for p in kept.iterdir())
    orphan = kept / "0123456789abcdef-0123456789abcdef.pdf"
    orphan.write_bytes(b"%PDF-1.7\n an older release's leftover")
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    (work / "note.txt").write_text("A note whose ingest runs the sweep.")
    swept = run(cli("ingest", str(work / "note.txt")), env)
    after_sweep = sorted(p.name for p in kept.iterdir())
    failed = sum(": failed: not a readable PDF" in line for line in done.lines)
    passed = (done.rc == 1 and failed == 20 and after_junk == before and swept.rc == 0 and after_sweep == before
              and bool(before) and done.clean)
    return Outcome(f"{failed}/20 failed (exit {done.rc}); originals/ {len(before)} files before, {len(after_junk)} "
                   f"after; orphan swept: {orphan.name not in after_sweep}, committed kept: {after_sweep == before}",
                   passed, ["note.txt"], max(done.rss_mb, swept.rss_mb))
