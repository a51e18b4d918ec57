"""The fault-and-load suite (issue 14): bad inputs, kills, a Chroma server that dies, LLM faults, load.

    .venv/bin/python scripts/reliability.py            # all cases, ~10-15 min on 2 cores; writes docs/reliability.md
    .venv/bin/python scripts/reliability.py -k bad,kill  # the cases whose name holds "bad" or "kill": their rows only
    .venv/bin/python scripts/reliability.py --heavy    # only the heavy cases (a 1,500-page PDF; 8 browsers during a
                                                       # 12-PDF upload), ~15-20 min; their own table in the doc

Every case runs the product as a user would (the ``rerank-rag`` CLI, or the library in a child process where
no command exists, e.g. an upload's name) on a store that already holds the sample documents. After each
case the documents it added are deleted and a snapshot is compared with the one taken before the first case:
the document list, every chunk count, no chunk outside a committed document, and the answer (text and chunk
ids) to a question over the sample documents. A case passes when the user saw what was expected and nothing
else in the store changed. Peak RSS is the largest of the case's child processes (os.wait4), not this
script's. Exits 1 when any case failed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import (
    SAMPLE,
    SEC_PDFS,
    ChromaServer,
    FakeOpenAI,
    free_port,
    openai_handler,
)

QUESTION = "How long does the battery take to charge?"
KEY = f"sk-reliability-{uuid.uuid4().hex}"  # the LLM key: must never appear in any output
DOC = REPO / "docs" / "reliability.md"


# ---- child processes, with their peak memory ----------------------------------------------------------
@dataclass
class Run:
    rc: int
    out: str
    err: str
    seconds: float
    rss_mb: float

    @property
    def lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.strip()]

    @property
    def clean(self) -> bool:
        """No traceback and no key in anything the user sees."""
        return "Traceback" not in self.out + self.err and KEY not in self.out + self.err


class Child:
    """A child process whose stdout can be read line by line while it runs, then reaped with its rusage."""

    def __init__(self, args: list[str], env: dict[str, str], stdin: bool = False) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen(args, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE,
                                        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
        # Both pipes drained all along: a child that fills one (a long --json) would block, and never exit.
        self.out: list[str] = []
        self.err: list[str] = []
        self.pending: queue.Queue[str | None] = queue.Queue()
        self.readers = [threading.Thread(target=self._pump, daemon=True),
                        threading.Thread(target=self._pump_err, daemon=True)]
        for reader in self.readers:
            reader.start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.out.append(line)
            self.pending.put(line)
        self.pending.put(None)

    def _pump_err(self) -> None:
        for line in self.process.stderr:  # line by line: a long ingest's progress is read while it runs
            self.err.append(line)

    def readline(self, timeout_s: float = 600) -> str:
        """The next line of stdout ("" at its end)."""
        return self.pending.get(timeout=timeout_s) or ""

    def send(self, text: str) -> None:
        self.process.stdin.write(text)
        self.process.stdin.flush()

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)

    def reap(self, timeout_s: float = 600) -> Run:
        if self.process.stdin:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        timer = threading.Timer(timeout_s, lambda: self.process.poll() is None and self.kill())
        timer.start()
        _, status, usage = os.wait4(self.process.pid, 0)
        timer.cancel()
        self.process.returncode = os.waitstatus_to_exitcode(status)
        for reader in self.readers:
            reader.join(10)
        return Run(self.process.returncode, "".join(self.out), "".join(self.err),
                   time.perf_counter() - self.started, usage.ru_maxrss / 1024)


def run(args: list[str], env: dict[str, str], timeout_s: float = 600, stdin: str | None = None) -> Run:
    child = Child(args, env, stdin=stdin is not None)
    if stdin is not None:
        child.send(stdin)
    return child.reap(timeout_s)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rag.cli", *args]


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAG_") and k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}}
    env.update(RAG_DATA_DIR=str(data_dir), RAG_SAMPLE_DIR="", TQDM_DISABLE="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


# ---- the store's state ---------------------------------------------------------------------------------
SNAPSHOT = """
import json, sys
from rag.pipeline import RagPipeline
from rag.settings import Settings
from rag.store import KnowledgeBase
remove = json.loads(sys.argv[1])
settings = Settings()
kb = KnowledgeBase(settings)
present = {r.source: r.chunks for r in kb.documents()}
for source in remove:
    record = kb.find(source)
    if record is not None:
        kb.delete_document(record.doc_id)
records = {r.doc_id: r for r in kb.documents()}
orphans = 0
for _, meta in kb._chunk_metadata():
    record = records.get(meta.get("doc_id"))
    orphans += record is None or record.content_sha256 != meta.get("content_sha256")
result = RagPipeline(settings).ask(sys.argv[2])
print(json.dumps({"present": present, "docs": {r.source: r.chunks for r in records.values()}, "count": kb.count(),
                  "orphans": orphans, "answer": result.answer, "top": [c.chunk_id for c in result.chunks],
                  "sources": sorted({c.source for c in result.candidates})}))
"""


def snapshot(env: dict[str, str], remove: list[str] = ()) -> dict:
    done = run(python(SNAPSHOT, json.dumps(list(remove)), QUESTION), env)
    if done.rc != 0:
        raise RuntimeError(f"snapshot failed: {done.err[-1500:]}")
    return json.loads(done.lines[-1])


def unchanged(before: dict, after: dict) -> str | None:
    """Why the store is not as it was (None when it is)."""
    for key in ("docs", "count", "answer", "top"):
        if before[key] != after[key]:
            return f"{key} changed: {str(before[key])[:80]} -> {str(after[key])[:80]}"
    if after["orphans"]:
        return f"{after['orphans']} chunks outside any committed document"
    return None


# ---- cases ---------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    observed: str
    passed: bool
    added: list[str] = field(default_factory=list)  # documents the case stored on purpose: removed after it
    rss_mb: float = 0.0


@dataclass
class Case:
    name: str
    expected: str
    body: Callable[[Path, dict[str, str]], Outcome]
    pytest: str = ""  # the test in `make test` that covers the same behaviour
    server: bool = False  # runs against the Chroma server store, not the embedded one
    heavy: bool = False  # only with --heavy (minutes each; not in `make test` nor a plain `make reliability`)


CASES: list[Case] = []


def case(name: str, expected: str, pytest: str = "", server: bool = False, heavy: bool = False):
    def register(body: Callable[[Path, dict[str, str]], Outcome]) -> Callable:
        CASES.append(Case(name, expected, body, pytest, server, heavy))
        return body
    return register


def ingest_one(name: str, data: bytes, expect: str, *, rc: int = 1, env_extra: dict | None = None,
               stored: bool = False, source: str | None = None) -> Callable[[Path, dict[str, str]], Outcome]:
    """A case body: ingest one file through the CLI and match its line against ``expect`` (a regex)."""
    def body(work: Path, env: dict[str, str]) -> Outcome:
        path = work / name
        path.write_bytes(data)
        done = run(cli("ingest", str(path)), {**env, **(env_extra or {})})
        line = " | ".join(done.lines) or done.err.strip()[-200:]
        passed = done.rc == rc and done.clean and len(done.lines) == 1 and re.search(expect, line) is not None
        return Outcome(line, passed, [source or path.name] if stored else [], done.rss_mb)
    return body


# -- bad inputs through the CLI
def _pdf(pages: int = 1, text: bool = True, password: str | None = None) -> bytes:
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, NameObject

    writer = PdfWriter()
    for _ in range(pages):
        page = writer.add_blank_page(width=595, height=842)
        if text:
            stream = DecodedStreamObject()
            stream.set_data(b"BT /F1 12 Tf 72 720 Td (A page of text about bicycles.) Tj ET")
            page[NameObject("/Contents")] = writer._add_object(stream)
    if password:
        writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _docx_bomb(inflated_gb: float = 1.2) -> bytes:
    """A DOCX whose word/document.xml inflates to ``inflated_gb`` GB of one-letter paragraphs (~1.2 MB zipped)."""
    paragraph = b"<w:p><w:r><w:t>a</w:t></w:r></w:p>"
    block = paragraph * (1_000_000 // len(paragraph))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.'
                         'org/package/2006/content-types"><Override PartName="/word/document.xml" ContentType='
                         '"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
        archive.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.'
                         'org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
                         'openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/'
                         'document.xml"/></Relationships>')
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            part.write(b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
                       b'wordprocessingml/2006/main"><w:body>')
            for _ in range(int(inflated_gb * 1000)):
                part.write(block)
            part.write(b"</w:body></w:document>")
    return out.getvalue()


BAD = [
    ("truncated PDF", "truncated.pdf", lambda: (SAMPLE / "returns-and-service.pdf").read_bytes()[:600],
     "failed: not a readable PDF", "tests/ingest/test_loaders.py::test_bad_files_fail_with_a_reason"),
    ("encrypted PDF", "locked.pdf", lambda: _pdf(password="user-secret"), "failed: encrypted PDF: it needs a password",
     "tests/ingest/test_loaders.py::test_encrypted_pdf_needs_its_password"),
    ("image-only PDF", "scan.pdf", lambda: _pdf(pages=2, text=False), "failed: no text layer in any of its 2 pages",
     "tests/ingest/test_loaders.py::test_image_only_pdf_has_no_text_layer"),
    ("0-byte file", "empty.txt", lambda: b"", "failed: empty file",
     "tests/ingest/test_ingest.py::test_bad_files_fail_alone_and_the_rest_lands"),
    ("binary named .txt", "photo.txt", lambda: bytes(range(256)) * 40, "failed: .*binary",
     "tests/ingest/test_loaders.py::test_bad_files_fail_with_a_reason"),
    ("not-a-zip .docx", "broken.docx", lambda: b"not a zip at all", "failed: not a readable DOCX",
     "tests/ingest/test_loader_limits.py::test_broken_docx_fail_with_a_reason"),
    ("unsupported extension", "sheet.xlsx", lambda: b"PK\x03\x04 a spreadsheet", "failed: unsupported file type '.xlsx'",
     "tests/ingest/test_loaders.py::test_bad_files_fail_with_a_reason"),
    ("DOCX zip bomb (1.2 GB inflated)", "bomb.docx", _docx_bomb, "failed: .*(inflate|bomb|limit)",
     "tests/ingest/test_loader_limits.py::test_a_zip_bomb_fails_by_its_declared_size"),
]
def _bad(name: str, make: Callable[[], bytes], expect: str) -> Callable[[Path, dict[str, str]], Outcome]:
    return lambda work, env: ingest_one(name, make(), expect)(work, env)  # the bytes made when the case runs


for _title, _name, _make, _expect, _test in BAD:
    case(f"bad input: {_title}", f"`{_name}: {_expect}`, exit 1, store unchanged", _test)(_bad(_name, _make, _expect))

case("bad input: over-size file (limit 1 MB)", "`failed: too large`, exit 1",
     "tests/ingest/test_ingest.py::test_bad_files_fail_alone_and_the_rest_lands")(
    lambda work, env: ingest_one("big.txt", b"word " * 400_000, r"failed: too large: 2\.0 MB, over the limit of 1 MB",
                                 env_extra={"RAG_MAX_FILE_MB": "1"})(work, env))
case("text: Latin-1", "`ok`, text decoded (é kept)", "tests/ingest/test_loaders.py::test_latin1_text_is_decoded")(
    lambda work, env: ingest_one("latin1.txt", "Caf\xe9 cr\xe8me: the d\xe9p\xf4t opens at n\xfcne.".encode("latin-1"),
                                 r"latin1\.txt: ok 1 chunks", rc=0, stored=True)(work, env))
case("text: UTF-16 without BOM", "`ok`", "tests/ingest/test_loader_limits.py::test_utf16_text_is_read")(
    lambda work, env: ingest_one("utf16.txt", "Die Lieferung dauert drei Tage. 送货需要三天。".encode("utf-16-le"),
                                 r"utf16\.txt: ok 1 chunks", rc=0, stored=True)(work, env))
case("HTML with <script> and onerror", "`ok`; stored text has no script, handler or markup",
     "tests/app/test_app_pages.py::test_document_text_is_rendered_as_text")(
    lambda work, env: _html_case(work, env))
case("5 MB single-line Markdown", "`ok` with its repeats left out; the other documents still lead the dense search",
     "tests/rag/test_store_faults.py::test_a_repetitive_file_is_stored_once_per_distinct_chunk_and_never_poisons_search")(
    lambda work, env: _repetitive_case(work, env))


HTML = (b"<html><body><h1>Bell care</h1><script>alert('pwned')</script><p>Oil the bell yearly."
        b"<img src=x onerror=\"alert('xss')\"></p><a href=\"javascript:alert(1)\">link</a></body></html>")

STORED_TEXT = """
import json, sys
from rag.settings import Settings
from rag.store import KnowledgeBase
kb = KnowledgeBase(Settings())
rows = kb.chunks.get(where={"source": sys.argv[1]}, include=["documents"])
print(json.dumps(rows["documents"]))
"""

DENSE_TOP = """
import json, sys
from rag.pipeline import RagPipeline
from rag.retrieve import retrieve
from rag.settings import Settings
pipeline = RagPipeline(Settings())
kb = pipeline.knowledge_base()
found = retrieve(sys.argv[1], kb, pipeline.embedder_for(kb), pipeline.settings, mode="dense", top_k=5)
print(json.dumps([c.chunk.source for c in found.candidates]))
"""


def _html_case(work: Path, env: dict[str, str]) -> Outcome:
    outcome = ingest_one("bell.html", HTML, r"bell\.html: ok 1 chunks", rc=0, stored=True)(work, env)
    stored = json.loads(run(python(STORED_TEXT, "bell.html"), env).lines[-1])
    inert = not any(marker in text for text in stored for marker in ("alert", "<", "onerror", "javascript"))
    return Outcome(f"{outcome.observed}; stored: {stored!r:.60}", outcome.passed and inert, outcome.added,
                   outcome.rss_mb)


def _repetitive_case(work: Path, env: dict[str, str]) -> Outcome:
    unit = b"lorem ipsum dolor sit amet "
    outcome = ingest_one("flood.md", unit * (5_000_000 // len(unit)), r"flood\.md: ok \d chunks \([\d,]+ repeated",
                         rc=0, stored=True)(work, env)
    top = json.loads(run(python(DENSE_TOP, QUESTION), env).lines[-1])
    return Outcome(f"{outcome.observed}; dense top-5 {top}", outcome.passed and "flood.md" not in top[:1]
                   and top.count("flood.md") <= 2, outcome.added, outcome.rss_mb)


@case("names: newline, emoji, '../' and absolute upload names",
      "one line per file, names cleaned (`week ly 📄.txt`, `evil.txt`, `etc/passwd.txt`)",
      "tests/ingest/test_loader_limits.py::test_safe_source_name")
def _names(work: Path, env: dict[str, str]) -> Outcome:
    (work / "week\nly 📄.txt").write_text("The weekly report lists 3 new dealers.")
    done = run(cli("ingest", str(work / "week\nly 📄.txt")), env)
    upload = run(python("""
import sys
from ingest.pipeline import Ingestor, SourceFile
from rag.settings import Settings
for result in Ingestor(Settings()).ingest([SourceFile("../../evil.txt", data=b"Evil says the shed key is blue."),
                                          SourceFile("/etc/passwd.txt", data=b"Root owns the passwd file.")]):
    print(result.line())
"""), env)
    lines = done.lines + upload.lines
    expected = ["week ly 📄.txt: ok 1 chunks", "evil.txt: ok 1 chunks", "etc/passwd.txt: ok 1 chunks"]
    return Outcome(" | ".join(lines), lines == expected and done.clean and upload.clean,
                   ["week ly 📄.txt", "evil.txt", "etc/passwd.txt"], max(done.rss_mb, upload.rss_mb))


@case("same file twice; one name in two folders", "`ok`, `skipped (same file given twice)`; `dirA/notes.txt` and "
      "`dirB/notes.txt` both stored", "tests/ingest/test_reliability.py::test_one_name_in_two_folders_is_two_documents")
def _twice(work: Path, env: dict[str, str]) -> Outcome:
    for folder, text in (("dirA", "Alpha: the red valve opens at noon."), ("dirB", "Beta: the blue pump stops at dusk.")):
        (work / folder).mkdir()
        (work / folder / "notes.txt").write_text(text)
    (work / "memo.txt").write_text("The memo says the canteen closes at three.")
    done = run(cli("ingest", str(work / "memo.txt"), str(work / "dirA"), str(work / "dirB"), str(work / "memo.txt")),
               env)
    expected = ["memo.txt: ok 1 chunks", "dirA/notes.txt: ok 1 chunks", "dirB/notes.txt: ok 1 chunks",
                "memo.txt: skipped (same file given twice)"]
    return Outcome(" | ".join(done.lines), done.lines == expected and done.rc == 0 and done.clean,
                   ["memo.txt", "dirA/notes.txt", "dirB/notes.txt"], done.rss_mb)


# -- kills
def _texts(work: Path, n: int = 3, sentences: int = 160) -> list[Path]:
    paths = []
    for i in range(n):
        path = work / f"part-{i}.txt"
        path.write_text(" ".join(f"Part {i} rule {j}: valve {j * 13 + i} closes after {j % 9 + 1} turns."
                                 for j in range(sentences)))
        paths.append(path)
    return paths


def _clean_counts(work: Path, paths: list[Path], env: dict[str, str]) -> dict[str, str]:
    clean = run(cli("ingest", *map(str, paths)), {**env, "RAG_DATA_DIR": str(work / "clean-store")})
    return {line.split(":")[0]: line for line in clean.lines}


@case("kill -9 during ingest", "no half document; the next ingest repairs; re-ingest = a clean ingest",
      "tests/ingest/test_ingest.py::test_a_real_sigkill_mid_batch_leaves_a_consistent_store")
def _kill_ingest(work: Path, env: dict[str, str]) -> Outcome:
    paths = _texts(work)
    child = Child(cli("ingest", *map(str, paths)), env)
    first = child.readline()
    time.sleep(0.7)  # the next file is being embedded or written
    child.kill()
    killed = child.reap()
    state = snapshot(env)
    half = {s: n for s, n in state["present"].items() if s.startswith("part-")}
    rerun = run(cli("ingest", *map(str, paths)), {**env, "RAG_ORPHAN_GRACE_S": "0"})
    clean = _clean_counts(work, paths, env)
    after = {line.split(":")[0]: line for line in rerun.lines}
    same = all(after[s] == clean[s] or after[s] == f"{s}: skipped (unchanged)" and clean[s].endswith(
        f"ok {half.get(s)} chunks") for s in clean)
    observed = (f"killed after `{first.strip()}` (rc {killed.rc}); committed then: {half}; "
                f"re-ingest: {' | '.join(rerun.lines)}")
    return Outcome(observed, killed.rc == -9 and same and rerun.rc == 0, [p.name for p in paths],
                   max(killed.rss_mb, rerun.rss_mb))


CRASH_DELETE = """
import os, sys
from rag.settings import Settings
from rag.store import KnowledgeBase
kb = KnowledgeBase(Settings())
record = kb.find(sys.argv[1])
def die(**_):
    os.kill(os.getpid(), 9)  # SIGKILL after the record went, before the chunks do
kb.chunks.delete = die
kb.delete_document(record.doc_id)
"""


@case("kill -9 during delete", "the document is gone from the list and from answers at once; the next ingest "
      "sweeps its chunks; re-ingest = a clean ingest", "")
def _kill_delete(work: Path, env: dict[str, str]) -> Outcome:
    (path,) = _texts(work, n=1)
    first = run(cli("ingest", str(path)), env)
    crashed = run(python(CRASH_DELETE, path.name), env)
    state = snapshot(env)
    gone = path.name not in state["present"] and state["orphans"] > 0
    answers_clean = path.name not in state["sources"]
    rerun = run(cli("ingest", str(path)), {**env, "RAG_ORPHAN_GRACE_S": "0"})
    observed = (f"delete killed (rc {crashed.rc}); listed after: {not gone}; orphans {state['orphans']}; "
                f"re-ingest `{' | '.join(rerun.lines)}` vs first `{' | '.join(first.lines)}`")
    return Outcome(observed, crashed.rc == -9 and gone and answers_clean and rerun.lines == first.lines,
                   [path.name], max(first.rss_mb, crashed.rss_mb, rerun.rss_mb))


CRASH_BM25 = """
import os
from pathlib import Path
import rag.lexical as lexical
from rag.settings import Settings
from rag.store import KnowledgeBase
def save_half(self, folder):  # the arrays are written, then SIGKILL: no chunk ids, no manifest, CURRENT untouched
    Path(folder).mkdir(parents=True)
    self.retriever.save(str(folder), show_progress=False)
    os.kill(os.getpid(), 9)
lexical.LexicalIndex.save = save_half
settings = Settings()
lexical.rebuild(KnowledgeBase(settings), settings.data_dir)
"""


@case("kill -9 during the BM25 rebuild", "the previous index stays in use; BM25 answers as before; the next "
      "build sweeps the half folder",
      "tests/rag/test_lexical.py::test_a_build_killed_midway_leaves_the_previous_index_in_use")
def _kill_bm25(work: Path, env: dict[str, str]) -> Outcome:
    ask = cli("ask", QUESTION, "--retrieval", "bm25", "--json", "--reranker", "none")
    before = json.loads(run(ask, env).out)
    crashed = run(python(CRASH_BM25), env)
    root = Path(env["RAG_DATA_DIR"]) / "bm25" / "default"
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    after = json.loads(run(ask, env).out)
    same = [c["chunk_id"] for c in after["chunks"]] == [c["chunk_id"] for c in before["chunks"]]
    (path,) = _texts(work, n=1, sentences=5)
    run(cli("ingest", str(path)), env)  # a commit: the next build
    left = sorted(p.name for p in root.iterdir() if p.is_dir())
    observed = f"build killed (rc {crashed.rc}); folders then {len(folders)}, after the next build {len(left)}; " \
               f"same BM25 answer: {same}"
    return Outcome(observed, crashed.rc == -9 and len(folders) == 2 and same and len(left) == 1, [path.name],
                   crashed.rss_mb)


# -- the Chroma server
@case("Chroma server killed mid-ingest, then restarted", "the files after the kill each `failed: cannot reach the "
      "Chroma server …`, exit 1, no traceback; after the restart a re-ingest completes",
      "tests/rag/test_store_faults.py::test_a_server_killed_mid_ingest_fails_each_remaining_file_alone", server=True)
def _server_ingest(work: Path, env: dict[str, str]) -> Outcome:
    paths = _texts(work)
    child = Child(cli("ingest", *map(str, paths)), env)
    first = child.readline()
    SERVER.kill()
    done = child.reap()
    failed = [line for line in done.lines[1:] if "failed: cannot reach the Chroma server at" in line]
    SERVER.start()
    rerun = run(cli("ingest", *map(str, paths)), env)
    observed = f"`{done.lines[-1][:160]}` (rc {done.rc}); after restart: {' | '.join(rerun.lines)}"
    passed = (": ok " in first and len(failed) == len(paths) - 1 and done.rc == 1 and done.clean
              and rerun.rc == 0 and len(rerun.lines) == len(paths))
    return Outcome(observed, passed, [p.name for p in paths], max(done.rss_mb, rerun.rss_mb))


@case("Chroma server killed mid-question (a chat), then restarted", "`error: cannot reach the Chroma server …`, "
      "exit 2, no traceback; after the restart the same question is answered",
      "tests/rag/test_store_faults.py::test_a_server_killed_mid_question_is_one_plain_error (CLI, app, API)",
      server=True)
def _server_question(work: Path, env: dict[str, str]) -> Outcome:
    chat = Child(cli("chat", "--reranker", "none"), env, stdin=True)
    chat.send(QUESTION + "\n")
    while chat.readline().strip():  # the answer, the searched query, the citations, then an empty line
        pass
    SERVER.kill()
    chat.send(QUESTION + "\n")
    done = chat.reap()
    SERVER.start()
    again = run(cli("ask", QUESTION, "--json"), env)
    error = done.err.strip().splitlines()[-1] if done.err.strip() else ""
    answered = again.rc == 0 and bool(json.loads(again.out)["chunks"])
    passed = done.rc == 2 and error.startswith("error: cannot reach the Chroma server at") and done.clean and answered
    return Outcome(f"`{error[:160]}` (rc {done.rc}); after restart answered: {answered}", passed, [],
                   max(done.rss_mb, again.rss_mb))


# -- LLM faults, 8 sessions at once
LLM_LOAD = """
import json, sys, threading, time
from rag.pipeline import RagPipeline
from rag.settings import Settings
pipeline = RagPipeline(Settings())
pipeline.ask(sys.argv[1], generate=False)  # models loaded before the clock starts
results, started = [None] * 8, time.perf_counter()
def ask(i):
    t = time.perf_counter()
    # streamed as the app and the CLI ask; whole (the HTTP API's /v1/ask) where the fault is in a whole reply
    r = pipeline.ask(sys.argv[1], on_token=(lambda piece: None) if sys.argv[2] == "stream" else None)
    results[i] = {"mode": r.answer_mode, "error": r.error, "chunks": len(r.chunks), "answer": r.answer,
                  "seconds": time.perf_counter() - t}
threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"results": results, "all_s": time.perf_counter() - started}))
"""

LLM_FAULTS = [("401 bad key", "fail-401"), ("429 rate limit", "fail-429"), ("500", "fail-500"),
              ("hang past the timeout (3 s)", "hang"), ("malformed JSON", "truncated-json"),
              ("stream cut midway", "broken-stream"),
              ("429 with Retry-After: 30 s (over the 8 s the client waits)", "fail-429-retry-after-30")]


def _llm_case(model: str) -> Callable[[Path, dict[str, str]], Outcome]:
    def body(work: Path, env: dict[str, str]) -> Outcome:
        llm = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": LLM.url, "RAG_LLM_MODEL": model, "RAG_LLM_TIMEOUT_S": "3"}
        done = run(python(LLM_LOAD, QUESTION, "stream" if "stream" in model else "whole"), {**env, **llm})
        if done.rc != 0:
            return Outcome(f"rc {done.rc}: {done.err.strip()[-150:]}", False, [], done.rss_mb)
        report = json.loads(done.lines[-1])
        results = report["results"]
        each = all(r["error"] and r["chunks"] and r["answer"] for r in results)
        slowest = max(r["seconds"] for r in results)
        modes = sorted({r["mode"] for r in results})
        observed = (f"{sum(bool(r['error'] and r['chunks'] and r['answer']) for r in results)}/8 with chunks, an "
                    f"answer ({'/'.join(modes)}) and the error `{(results[0]['error'] or 'none')[:110]}`; slowest "
                    f"{slowest:.1f} s")
        return Outcome(observed, each and done.clean and KEY not in done.out, [], done.rss_mb)
    return body


for _title, _model in LLM_FAULTS:
    case(f"LLM {_title}, 8 sessions at once", "each session: its chunks, an answer (extractive, or the LLM's text "
         "so far when cut) and the LLM's failure in plain words; the key in no output", "tests/rag/test_llm_faults.py, tests/rag/test_llm.py")(_llm_case(_model))


@case("LLM 429 with Retry-After: 2 s, 8 sessions at once", "each session waits the 2 s the server asks, then "
      "gets the LLM's answer (no error); 16 requests in all", "tests/rag/test_llm_faults.py::"
      "test_a_429_with_a_short_retry_after_is_waited_out")
def _retry_after(work: Path, env: dict[str, str]) -> Outcome:
    model = "fail-429-retry-after-2"
    llm = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": LLM.url, "RAG_LLM_MODEL": model, "RAG_LLM_TIMEOUT_S": "10"}
    done = run(python(LLM_LOAD, QUESTION, "stream"), {**env, **llm})
    if done.rc != 0:
        return Outcome(f"rc {done.rc}: {done.err.strip()[-150:]}", False, [], done.rss_mb)
    results = json.loads(done.lines[-1])["results"]
    answered = [r for r in results if r["mode"] == "llm" and not r["error"] and r["answer"] == LLM.answer]
    asked = sum(r.get("model") == model for r in LLM.requests)
    fastest, slowest = min(r["seconds"] for r in results), max(r["seconds"] for r in results)
    observed = (f"{len(answered)}/8 got the LLM's answer after the wait ({asked} requests to the LLM); fastest "
                f"{fastest:.1f} s, slowest {slowest:.1f} s; errors: {sorted({r['error'] for r in results if r['error']})}")
    return Outcome(observed, len(answered) == 8 and asked == 16 and fastest >= 2 and done.clean, [], done.rss_mb)


@case("8 CLI processes asking at once + an ingest, one embedded store",
      "all 9 exit 0, every ask has chunks; time until all answered, p95 per process", "")
def _load(work: Path, env: dict[str, str]) -> Outcome:
    paths = _texts(work, n=2, sentences=60)
    children = [Child(cli("ask", QUESTION, "--json"), env) for _ in range(8)]
    ingest = Child(cli("ingest", *map(str, paths)), env)
    started = time.perf_counter()
    asks = [child.reap() for child in children]
    all_s = time.perf_counter() - started
    ingested = ingest.reap()
    ok = [a.rc == 0 and json.loads(a.out)["chunks"] for a in asks]
    seconds = sorted(a.seconds for a in asks)
    p95 = statistics.quantiles(seconds, n=20)[-1]
    observed = (f"{sum(map(bool, ok))}/8 answered in {all_s:.0f} s (p95 per process {p95:.0f} s, incl. model load); "
                f"ingest: {' | '.join(ingested.lines)}")
    return Outcome(observed, all(ok) and ingested.rc == 0 and all(a.clean for a in asks), [p.name for p in paths],
                   max(a.rss_mb for a in [*asks, ingested]))


# -- heavy cases (--heavy): minutes each
HEAVY_PAGES = int(os.environ.get("RELIABILITY_PDF_PAGES", "1500"))  # smaller for a quick try
RSS_AIM_MB = 1536  # the aim for a 1,500-page PDF: under 1.5 GB


def _load_avg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


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
    load = _load_avg()
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
    (tiny,) = _texts(work, n=1, sentences=5)
    swept_run = run(cli("ingest", str(tiny)), {**env, "RAG_ORPHAN_GRACE_S": "0"})
    swept = snapshot(env, [tiny.name])
    line = " | ".join(done.lines)
    observed = (f"{pages:,} pages ({HEAVY_PDF} repeated), {size_mb:.0f} MB: `{line}` in {done.seconds:.0f} s, peak RSS {done.rss_mb:,.0f} MB "
                f"(aim {RSS_AIM_MB:,}), load avg {load} before / {_load_avg()} after; {len(read)} `pages read` lines "
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
                load = _load_avg()
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
                f"app server peak RSS {served.rss_mb:,.0f} MB; load avg {load} at the start / {_load_avg()} at the "
                f"end")
    passed = len(seconds) == 8 and not sum(errors) and ok_lines == len(pdfs) and "Traceback" not in "".join(app.err)
    return Outcome(observed, passed, [], served.rss_mb)


# ---- the run -------------------------------------------------------------------------------------------
# Set by run_cases: the Chroma server of the server-mode cases (started at the first), the local LLM server.
SERVER: ChromaServer = None  # type: ignore[assignment]
LLM: FakeOpenAI = None  # type: ignore[assignment]


@dataclass
class Row:
    case: Case
    observed: str
    passed: bool
    seconds: float
    rss_mb: float


def run_cases(cases: list[Case], root: Path) -> list[Row]:
    global LLM
    LLM = FakeOpenAI(url="")
    http = ThreadingHTTPServer(("127.0.0.1", 0), openai_handler(LLM))
    http.daemon_threads = True
    LLM.url = f"http://127.0.0.1:{http.server_address[1]}/v1"
    threading.Thread(target=http.serve_forever, daemon=True).start()

    stores: dict[bool, tuple[dict[str, str], dict]] = {}

    def store(server: bool) -> tuple[dict[str, str], dict]:
        global SERVER
        if server not in stores:
            extra = {}
            if server:
                SERVER = ChromaServer(root / "chroma-db").start()
                extra = {"RAG_CHROMA_HOST": SERVER.host, "RAG_CHROMA_PORT": str(SERVER.port)}
            env = base_env(root / ("server-local" if server else "store"), **extra)
            seeded = run(cli("ingest", str(SAMPLE)), env)
            if seeded.rc != 0:
                raise RuntimeError(f"could not ingest the sample documents: {seeded.err[-1500:]}")
            stores[server] = env, snapshot(env)
        return stores[server]

    rows = []
    try:
        for n, item in enumerate(cases, 1):
            env, baseline = store(item.server)
            work = root / f"case-{n}"
            work.mkdir()
            started = time.perf_counter()
            try:
                outcome = item.body(work, env)
            except Exception as error:  # noqa: BLE001 - a case that breaks is a failed case, and the run goes on
                outcome = Outcome(f"the case broke: {type(error).__name__}: {error}"[:300], False)
            seconds = time.perf_counter() - started
            if item.server and SERVER.process.poll() is not None:
                SERVER.start()
            why = unchanged(baseline, snapshot(env, outcome.added))
            observed = outcome.observed if why is None else f"{outcome.observed}; STORE CHANGED: {why}"
            row = Row(item, observed, outcome.passed and why is None, seconds, outcome.rss_mb)
            rows.append(row)
            print(f"{'PASS' if row.passed else 'FAIL'}  {item.name}  ({seconds:.1f} s, {row.rss_mb:.0f} MB)\n"
                  f"      {observed}", flush=True)
    finally:
        if SERVER is not None:
            SERVER.kill()
        http.shutdown()
    return rows


def table(rows: list[Row]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| case | expected | observed | result | time s | peak RSS MB | in `make test` |",
             "|---|---|---|---|---:|---:|---|"]
    for row in rows:
        lines.append(f"| {cell(row.case.name)} | {cell(row.case.expected)} | {cell(row.observed)} | "
                     f"{'pass' if row.passed else '**FAIL**'} | {row.seconds:.1f} | {row.rss_mb:.0f} | "
                     f"{cell(row.case.pytest) or '-'} |")
    return "\n".join(lines)


def write_doc(rows: list[Row], total_s: float, heavy: bool = False, load: str = "") -> None:
    text = DOC.read_text() if DOC.exists() else ""
    tag = "reliability heavy table" if heavy else "reliability table"
    begin, end = f"<!-- {tag}: begin -->", f"<!-- {tag}: end -->"
    lines = table(rows).splitlines()
    if begin in text and end in text and len(rows) < len([c for c in CASES if c.heavy == heavy]):
        # a partial run (-k): its rows replace their earlier ones, the other rows stay, in the cases' order
        old = [line for line in text[text.index(begin):text.index(end)].splitlines() if line.startswith("| ")]
        name = lambda line: line[2:].split(" | ")[0]
        merged = {name(line): line for line in old[1:]} | {name(line): line for line in lines[2:]}
        order = {table([Row(c, "", True, 0, 0)]).splitlines()[2][2:].split(" | ")[0]: i for i, c in enumerate(CASES)}
        lines = lines[:2] + sorted(merged.values(), key=lambda line: order.get(name(line), len(order)))
    passed = sum("| pass |" in line for line in lines[2:])
    scope = "" if len(lines) - 2 == len(rows) else f"; this run: {len(rows)} of them"
    block = (f"{begin}\n{passed} of {len(lines) - 2} cases passed{scope}, in {total_s / 60:.1f} min on "
             f"{os.cpu_count()} cores ({time.strftime('%Y-%m-%d')}"
             f"{f'; load average {load}' if load else ''}).\n\n" + "\n".join(lines) + f"\n{end}")
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = f"{text.rstrip()}\n\n{block}\n" if text else f"# Reliability\n\n{block}\n"
    DOC.write_text(text)


# -- the HTTP API's ways in (issue 22): each through real HTTP on 127.0.0.1, refused before a model loads
_API_PROBE = """
import sys, threading, time, httpx, uvicorn
from api.keys import KeyStore
from api.server import create_app
from rag.settings import Settings
from tests.helpers import free_port
settings = Settings()
if sys.argv[1] == "keyed":
    store = KeyStore(settings)
    store.revoke("probe-writer")  # one probe key per store, whichever case made it
    _, token = store.create("probe-writer", collection="*", scope="write")
port = free_port()
server = uvicorn.Server(uvicorn.Config(create_app(settings, warm=False), host="127.0.0.1", port=port,
                                       log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.05)
url, auth = f"http://127.0.0.1:{port}", ({"Authorization": f"Bearer {token}"} if sys.argv[1] == "keyed" else {})
for line in sys.stdin.read().split("\\n"):
    if line.strip():
        print(eval(line, {"httpx": httpx, "url": url, "auth": auth, "port": port}), flush=True)
server.should_exit = True
"""


def _api_probe(mode: str, probes: list[str], env: dict[str, str]) -> list[str]:
    done = run(python(_API_PROBE, mode), env, stdin="\n".join(probes))
    return done.lines or [done.err.strip()[-200:]]


@case("API: upload, delete, ask into the store's own collections (a write key)",
      "404 'reserved' for rerank-rag-keys, rerank-rag-registry, eval-*; every key still there",
      "tests/api/test_security.py::test_a_write_key_cannot_touch_the_stores_own_collections", server=True)
def _api_internal(work: Path, env: dict[str, str]) -> Outcome:
    probes = [f"httpx.post(url + '/v1/collections/{name}/documents', headers=auth, "
              "files={'files': ('a.txt', b'planted', 'text/plain')}).status_code"
              for name in ("rerank-rag-keys", "rerank-rag-registry", "eval-x-0123")]
    probes.append("httpx.delete(url + '/v1/collections/rerank-rag-keys/documents/x', headers=auth).status_code")
    lines = _api_probe("keyed", probes, env)
    keys = run(cli("keys", "list"), env)
    passed = lines == ["404"] * 4 and "probe-writer" in keys.out
    return Outcome(f"{' '.join(lines)}; keys list: {keys.out.strip()[:60]}", passed)


@case("API: a foreign Origin (multipart upload) and a foreign Host (DNS rebinding), keyless loopback server",
      "403 forbidden_origin, 403 forbidden_host; nothing planted",
      "tests/api/test_security.py::test_foreign_host_and_origin_are_refused", server=True)
def _api_origin(work: Path, env: dict[str, str]) -> Outcome:
    lines = _api_probe("keyless", [
        "httpx.post(url + '/v1/collections/default/documents', headers={'Origin': 'http://evil.example'}, "
        "files={'files': ('a.txt', b'planted', 'text/plain')}).status_code",
        "httpx.post(url + '/v1/ask', json={'question': 'q'}, headers={'Host': f'evil.example:{port}'}).status_code",
    ], env)
    return Outcome(" ".join(lines), lines == ["403", "403"])


@case("API: a 200,000-character chat question, a 12 MB JSON body with no key, a NUL question",
      "400 at once (RAG_MAX_QUESTION_CHARS), 413 before the key (RAG_MAX_REQUEST_MB), 400 'empty'",
      "tests/api/test_security.py::test_a_huge_body_is_refused_before_the_key_and_while_read", server=True)
def _api_bounds(work: Path, env: dict[str, str]) -> Outcome:
    lines = _api_probe("keyed", [
        "httpx.post(url + '/v1/chat/completions', headers=auth, json={'model': 'rerank-rag', 'messages': "
        "[{'role': 'user', 'content': 'x' * 200000}]}).status_code",
        "httpx.post(url + '/v1/ask', content=b'{\"question\": \"' + b'a' * 12000000 + b'\"}', "
        "headers={'Content-Type': 'application/json'}).status_code",
        "httpx.post(url + '/v1/ask', headers=auth, json={'question': '\\x00\\x00'}).status_code",
    ], env)
    return Outcome(" ".join(lines), lines == ["400", "413", "400"])


@case("two writers on one embedded store: an ingest while a server holds it",
      "the ingest is refused with one line naming Chroma's server mode; the server's store unchanged",
      "tests/rag/test_two_processes.py")
def _two_writers(work: Path, env: dict[str, str]) -> Outcome:
    holder = Child(python("from rag.settings import Settings\nfrom rag.store import hold_embedded\n"
                         "hold_embedded(Settings())\nprint('holding', flush=True)\nimport sys\nsys.stdin.readline()"),
                   env, stdin=True)
    try:
        assert holder.readline(120).strip() == "holding"
        (work / "late.txt").write_text("A late document about the shed key.")
        done = run(cli("ingest", str(work / "late.txt")), env)
    finally:
        holder.send("\n")
        holder.reap(30)
    line = (done.lines or [done.err.strip()])[-1][:160]
    return Outcome(line, done.rc != 0 and "chroma run --path" in done.out + done.err)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", dest="only", help="run only the cases whose name holds one of these comma-separated "
                        "texts (their rows replace their earlier ones in the doc)")
    parser.add_argument("--heavy", action="store_true", help="run only the heavy cases (a 1,500-page PDF, 8 "
                        "browser sessions during a 12-PDF upload: ~15-20 min on 2 cores); their table is a "
                        "separate one in the doc")
    args = parser.parse_args()
    wanted = [part.strip().lower() for part in (args.only or "").split(",") if part.strip()]
    cases = [c for c in CASES if c.heavy == args.heavy
             and (not wanted or any(part in c.name.lower() for part in wanted))]
    load = _load_avg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="reliability-") as root:
        rows = run_cases(cases, Path(root))
    total = time.perf_counter() - started
    print()
    print(table(rows))
    print(f"\n{sum(r.passed for r in rows)} of {len(rows)} cases passed in {total / 60:.1f} min")
    if rows:
        write_doc(rows, total, heavy=args.heavy, load=f"{load} at the start, {_load_avg()} at the end")
    return 0 if rows and all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
