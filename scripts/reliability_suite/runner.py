"""Runs the cases (each on a store holding the sample documents, the store compared after each), prints the
table and writes it into docs/reliability.md."""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

from reliability_suite.core import (CASES, DOC, SERVICES, Case, Outcome, base_env, cli, load_avg, run, snapshot,
                                    unchanged)
from tests.helpers import SAMPLE, ChromaServer, FakeOpenAI, openai_handler

CASE_MODULES = ("inputs", "faults", "heavy", "api_cases", "long_jobs")  # each registers its cases, in the table's order
for _module in CASE_MODULES:
    importlib.import_module(f"reliability_suite.{_module}")


@dataclass
class Row:
    case: Case
    observed: str
    passed: bool
    seconds: float
    rss_mb: float


def run_cases(cases: list[Case], root: Path) -> list[Row]:
    SERVICES.llm = FakeOpenAI(url="")
    http = ThreadingHTTPServer(("127.0.0.1", 0), openai_handler(SERVICES.llm))
    http.daemon_threads = True
    SERVICES.llm.url = f"http://127.0.0.1:{http.server_address[1]}/v1"
    threading.Thread(target=http.serve_forever, daemon=True).start()

    stores: dict[bool, tuple[dict[str, str], dict]] = {}

    def store(server: bool) -> tuple[dict[str, str], dict]:
        if server not in stores:
            extra = {}
            if server:
                SERVICES.chroma = ChromaServer(root / "chroma-db").start()
                extra = {"RAG_CHROMA_HOST": SERVICES.chroma.host, "RAG_CHROMA_PORT": str(SERVICES.chroma.port)}
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
            if item.server and SERVICES.chroma.process.poll() is not None:
                SERVICES.chroma.start()
            why = unchanged(baseline, snapshot(env, outcome.added))
            observed = outcome.observed if why is None else f"{outcome.observed}; STORE CHANGED: {why}"
            row = Row(item, observed, outcome.passed and why is None, seconds, outcome.rss_mb)
            rows.append(row)
            print(f"{'PASS' if row.passed else 'FAIL'}  {item.name}  ({seconds:.1f} s, {row.rss_mb:.0f} MB)\n"
                  f"      {observed}", flush=True)
    finally:
        if SERVICES.chroma is not None:
            SERVICES.chroma.kill()
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


def main() -> int:
    parser = argparse.ArgumentParser(description="The fault-and-load suite: bad inputs, kills, a Chroma server "
                                     "that dies, LLM faults, load, long jobs (docs/reliability.md).")
    parser.add_argument("-k", dest="only", help="run only the cases whose name holds one of these comma-separated "
                        "texts (their rows replace their earlier ones in the doc)")
    parser.add_argument("--heavy", action="store_true", help="run only the heavy cases (a 1,500-page PDF, 8 "
                        "browser sessions during a 12-PDF upload: ~15-20 min on 2 cores); their table is a "
                        "separate one in the doc")
    args = parser.parse_args()
    wanted = [part.strip().lower() for part in (args.only or "").split(",") if part.strip()]
    cases = [c for c in CASES if c.heavy == args.heavy
             and (not wanted or any(part in c.name.lower() for part in wanted))]
    load = load_avg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="reliability-") as root:
        rows = run_cases(cases, Path(root))
    total = time.perf_counter() - started
    print()
    print(table(rows))
    print(f"\n{sum(r.passed for r in rows)} of {len(rows)} cases passed in {total / 60:.1f} min")
    if rows:
        write_doc(rows, total, heavy=args.heavy, load=f"{load} at the start, {load_avg()} at the end")
    return 0 if rows and all(row.passed for row in rows) else 1
