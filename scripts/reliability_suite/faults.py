"""Faults and load: kill -9 during an ingest, a delete and the BM25 rebuild; a Chroma server that dies; LLM
faults with 8 sessions at once; 8 CLI processes asking while an ingest runs."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from reliability_suite.core import KEY, QUESTION, SERVICES, Child, Outcome, case, cli, python, run, snapshot, texts

# -- kills
def _clean_counts(work: Path, paths: list[Path], env: dict[str, str]) -> dict[str, str]:
    clean = run(cli("ingest", *map(str, paths)), {**env, "RAG_DATA_DIR": str(work / "clean-store")})
    return {line.split(":")[0]: line for line in clean.lines}


@case("kill -9 during ingest", "no half document; the next ingest repairs; re-ingest = a clean ingest",
      "tests/ingest/test_ingest.py::test_a_real_sigkill_mid_batch_leaves_a_consistent_store")
def _kill_ingest(work: Path, env: dict[str, str]) -> Outcome:
    paths = texts(work)
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
    (path,) = texts(work, n=1)
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
    (path,) = texts(work, n=1, sentences=5)
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
    paths = texts(work)
    child = Child(cli("ingest", *map(str, paths)), env)
    first = child.readline()
    SERVICES.chroma.kill()
    done = child.reap()
    failed = [line for line in done.lines[1:] if "failed: cannot reach the Chroma server at" in line]
    SERVICES.chroma.start()
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
    SERVICES.chroma.kill()
    chat.send(QUESTION + "\n")
    done = chat.reap()
    SERVICES.chroma.start()
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
        llm = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": SERVICES.llm.url, "RAG_LLM_MODEL": model, "RAG_LLM_TIMEOUT_S": "3"}
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
    llm = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": SERVICES.llm.url, "RAG_LLM_MODEL": model, "RAG_LLM_TIMEOUT_S": "10"}
    done = run(python(LLM_LOAD, QUESTION, "stream"), {**env, **llm})
    if done.rc != 0:
        return Outcome(f"rc {done.rc}: {done.err.strip()[-150:]}", False, [], done.rss_mb)
    results = json.loads(done.lines[-1])["results"]
    answered = [r for r in results if r["mode"] == "llm" and not r["error"] and r["answer"] == SERVICES.llm.answer]
    asked = sum(r.get("model") == model for r in SERVICES.llm.requests)
    fastest, slowest = min(r["seconds"] for r in results), max(r["seconds"] for r in results)
    observed = (f"{len(answered)}/8 got the LLM's answer after the wait ({asked} requests to the LLM); fastest "
                f"{fastest:.1f} s, slowest {slowest:.1f} s; errors: {sorted({r['error'] for r in results if r['error']})}")
    return Outcome(observed, len(answered) == 8 and asked == 16 and fastest >= 2 and done.clean, [], done.rss_mb)


@case("8 CLI processes asking at once + an ingest, one embedded store",
      "all 9 exit 0, every ask has chunks; time until all answered, p95 per process", "")
def _load(work: Path, env: dict[str, str]) -> Outcome:
    paths = texts(work, n=2, sentences=60)
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
