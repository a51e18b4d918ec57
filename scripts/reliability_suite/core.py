"""What every case of the fault-and-load suite shares: child processes with their peak memory, the store's
snapshot, the case registry (see scripts/reliability.py)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.helpers import ChromaServer, FakeOpenAI  # noqa: E402

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


def texts(work: Path, n: int = 3, sentences: int = 160) -> list[Path]:
    """``n`` text files of ``sentences`` numbered rules each, written under ``work``."""
    paths = []
    for i in range(n):
        path = work / f"part-{i}.txt"
        path.write_text(" ".join(f"Part {i} rule {j}: valve {j * 13 + i} closes after {j % 9 + 1} turns."
                                 for j in range(sentences)))
        paths.append(path)
    return paths


class Services:
    """Set by the runner: the Chroma server of the server-mode cases (started at the first), the local LLM server."""

    chroma: ChromaServer | None = None
    llm: FakeOpenAI | None = None


SERVICES = Services()


def load_avg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())
