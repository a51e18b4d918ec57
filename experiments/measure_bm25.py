#!/usr/bin/env python
"""Measures the BM25 first stage (rag/lexical.py): which tokenizer, which parameters, how fast, how big.

  quality   BM25 (bm25s) over title + "\\n" + text of every corpus document, the first 300 queries
            that have qrels per set (all of them where a set has fewer); MRR@5 and recall@20 for
            stemming on/off x English stop words on/off (Chinese as CJK unigrams+bigrams), then
            unigrams+bigrams vs jieba (accurate mode, search mode, words + unigrams + bigrams) on the
            Chinese sets, then a k1/b grid on the chosen tokenizer. Prints Markdown tables.
  speed     tokenizer throughput (docs/s): jieba vs bigrams on the Chinese corpora, stemming on/off
            on the English ones.
  scale     rebuild time (wall and CPU) and peak RSS of tokenize + index + save at 2k/20k/100k
            ~100-word chunks cut from the dev sets (each size in its own process), bm25s's own
            BM25.index at 20k for comparison, and search latency at 20k and 100k.
  chroma    20k chunks in 2,000 documents written into an embedded Chroma (tiny random embeddings:
            only the read is timed), then fingerprint() at 200 and 2,000 documents,
            committed_chunks() in pages of 2000, a full rebuild through LexicalIndexes, the
            per-query freshness check, and get_chunks() of 20 hits.

  .venv/bin/python experiments/measure_bm25.py quality speed scale chroma

The results of the last run are in docs/bm25.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bm25s  # noqa: E402
import numpy as np  # noqa: E402

from evaluation.datasets import RetrievalDataset, load_dataset  # noqa: E402
from rag.lexical import (  # noqa: E402
    LexicalIndex,
    Tokenizer,
    TokenizerOptions,
    _count_terms,
    _score_matrix,
    tokenize,
)

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
ENGLISH = ["squad11_dev", "xquad/en", "cisi", "medline", "npl", "emanual_samsung/s10", "emanual_samsung/smarttv"]
CHINESE = ["cmrc2018", "xquad/zh", "dureader_robust_dev"]
QUERIES = 300


# ---- quality -------------------------------------------------------------------------------------
class Evaluator:
    """Caches datasets and tokenized corpora, so each tokenizer reads each corpus once."""

    def __init__(self, sets: Sequence[str]) -> None:
        self.sets = {name: load_dataset(DATASETS / name, name) for name in sets}
        self._tokens: dict[tuple[str, TokenizerOptions], tuple[list[list[str]], list[list[str]]]] = {}

    def tokens(self, name: str, options: TokenizerOptions) -> tuple[list[list[str]], list[list[str]]]:
        key = (name, options)
        if key not in self._tokens:
            ds = self.sets[name]
            tokenize = Tokenizer(options)
            corpus = [tokenize(f"{d.title}\n{d.text}") for d in ds.corpus.values()]
            queries = [tokenize(q.text) for q in ds.queries_with_qrels(QUERIES)]
            self._tokens[key] = corpus, queries
        return self._tokens[key]

    def score(self, name: str, options: TokenizerOptions, k1: float = 1.2, b: float = 0.75) -> tuple[float, float]:
        """(MRR@5, recall@20) of BM25 with this tokenizer on the first 300 queries with qrels."""
        ds: RetrievalDataset = self.sets[name]
        corpus, queries = self.tokens(name, options)
        doc_ids = list(ds.corpus)
        retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        retriever.index(corpus, show_progress=False)
        mrrs, recalls = [], []
        for query, tokens in zip(ds.queries_with_qrels(QUERIES), queries, strict=True):
            relevant = ds.relevant(query.id)
            ranked = _top(retriever, tokens, 20)
            found = [doc_ids[i] for i in ranked]
            first = next((rank for rank, d in enumerate(found[:5], 1) if d in relevant), None)
            mrrs.append(1 / first if first else 0.0)
            recalls.append(len(relevant & set(found)) / len(relevant))
        return statistics.fmean(mrrs), statistics.fmean(recalls)


def _top(retriever: bm25s.BM25, tokens: list[str], k: int) -> list[int]:
    ids = retriever.get_tokens_ids(tokens)
    if not ids:
        return []
    scores = retriever.get_scores_from_ids(ids)
    top = np.argsort(-scores, kind="stable")[:k]
    return [int(i) for i in top if scores[i] > 0]


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.3f} / {pair[1]:.3f}"


def quality() -> None:
    ev = Evaluator(ENGLISH + CHINESE)
    print("\n### Stemming and English stop words (Chinese: unigrams+bigrams); cells: MRR@5 / recall@20\n")
    variants = [TokenizerOptions(stem=s, stopwords=w) for s in (False, True) for w in (False, True)]
    rows, means = [], {v: [] for v in variants}
    for name in ENGLISH + CHINESE:
        n = len(ev.sets[name].queries_with_qrels(QUERIES))
        cells = []
        for v in variants:
            pair = ev.score(name, v)
            means[v].append(pair)
            cells.append(_cell(pair))
        rows.append([f"{name} ({n} q, {len(ev.sets[name].corpus)} docs)", *cells])
    rows.append(["**mean**", *(_cell(_mean(means[v])) for v in variants)])
    print(_table(["set", *(_short(v) for v in variants)], rows))

    print("\n### Chinese segmentation (English: stemmed, stop words dropped); cells: MRR@5 / recall@20\n")
    modes = [TokenizerOptions(chinese=m) for m in ("bigrams", "jieba", "jieba-search", "jieba+bigrams")]
    rows, means = [], {m: [] for m in modes}
    for name in CHINESE:
        cells = []
        for m in modes:
            pair = ev.score(name, m)
            means[m].append(pair)
            cells.append(_cell(pair))
        rows.append([name, *cells])
    rows.append(["**mean**", *(_cell(_mean(means[m])) for m in modes)])
    print(_table(["set", *(m.chinese for m in modes)], rows))

    print("\n### BM25 k1 / b with the default tokenizer; cells: mean MRR@5 / recall@20 over all sets\n")
    chosen = TokenizerOptions()
    k1s, bs = (0.9, 1.2, 1.5, 2.0), (0.4, 0.6, 0.75, 0.9)
    grid = {(k1, b): [ev.score(name, chosen, k1, b) for name in ENGLISH + CHINESE] for k1 in k1s for b in bs}
    rows = [[f"k1={k1}", *(_cell(_mean(grid[k1, b])) for b in bs)] for k1 in k1s]
    print(_table(["", *(f"b={b}" for b in bs)], rows))
    best = max(grid, key=lambda key: _mean(grid[key])[0])
    print(f"\nbest mean MRR@5: k1={best[0]} b={best[1]}; per set, default vs best:\n")
    rows = [[name, _cell(grid[1.2, 0.75][i]), _cell(grid[best][i])] for i, name in enumerate(ENGLISH + CHINESE)]
    print(_table(["set", "k1=1.2 b=0.75", f"k1={best[0]} b={best[1]}"], rows))


def _mean(pairs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    return statistics.fmean(p[0] for p in pairs), statistics.fmean(p[1] for p in pairs)


def _short(options: TokenizerOptions) -> str:
    return f"stem {'on' if options.stem else 'off'}, stop {'on' if options.stopwords else 'off'}"


# ---- tokenizer speed -----------------------------------------------------------------------------
def speed() -> None:
    print("\n### Tokenizer throughput (docs per CPU second; jieba's dictionary loaded beforehand)\n")
    rows = []
    for name, variants in (
        ("cmrc2018", [TokenizerOptions(chinese=m) for m in ("jieba", "jieba-search", "bigrams")]),
        ("dureader_robust_dev", [TokenizerOptions(chinese=m) for m in ("jieba", "jieba-search", "bigrams")]),
        ("squad11_dev", [TokenizerOptions(stem=False), TokenizerOptions(stem=True)]),
        ("npl", [TokenizerOptions(stem=False), TokenizerOptions(stem=True)]),
    ):
        ds = load_dataset(DATASETS / name, name)
        texts = [f"{d.title}\n{d.text}" for d in ds.corpus.values()]
        chars = sum(map(len, texts)) / len(texts)
        for options in variants:
            tokenize = Tokenizer(options)
            tokenize("预热 warm-up")
            rate, per = _throughput(tokenize, texts)
            rows.append([name, options.label(), f"{chars:.0f}", f"{rate:,.0f}", f"{per:.1f}"])
    print(_table(["corpus", "tokenizer", "chars/doc", "docs/s", "tokens/doc"], rows))


def _throughput(tokenize: Callable[[str], list[str]], texts: list[str]) -> tuple[float, float]:
    best, tokens = float("inf"), 0
    for _ in range(2):
        started = time.process_time()
        tokens = sum(len(tokenize(t)) for t in texts)
        best = min(best, time.process_time() - started)
    return len(texts) / best, tokens / len(texts)


# ---- scale ---------------------------------------------------------------------------------------
SCALE_SETS = ["npl", "squad11_dev", "cmrc2018", "cisi", "medline", "dureader_robust_dev", "xquad/en", "xquad/zh"]


def pieces(n: int) -> list[str]:
    """``n`` chunks of 100 words (150 characters of Chinese), cut from the dev corpora, shuffled.

    Each corpus is read as one stream of words and cut into windows, so short documents (npl)
    make full-size chunks too. The corpora give ~18k windows; more are cut at shifted offsets (by
    25, 50, 75 words) and, past that, repeated, so a 100k index has a realistic token count but a
    smaller vocabulary than 100k distinct chunks would have.
    """
    streams = []
    for name in SCALE_SETS:
        rows = [json.loads(line) for line in (DATASETS / name / "corpus.jsonl").open(encoding="utf-8")]
        text = "\n".join(f"{row.get('title') or ''}\n{row['text']}" for row in rows)
        streams.append(("zh", text) if name in CHINESE or name == "xquad/zh" else ("en", text.split()))
    out: list[str] = []
    for shift in (0, 50, 25, 75):
        cut = []
        for kind, stream in streams:
            if kind == "en":
                cut += [" ".join(stream[i : i + 100]) for i in range(shift, len(stream), 100)]
            else:
                step = int(shift * 1.5)
                cut += [stream[i : i + 150] for i in range(step, len(stream), 150)]
        random.Random(shift).shuffle(cut)
        out += cut
        if len(out) >= n:
            break
    while len(out) < n:
        out += out[: n - len(out)]
    return out[:n]


def scale_one(n: int, texts_file: str) -> dict:
    """Runs in its own process, reading only its ``n`` texts: the peak RSS is the build's."""
    with open(texts_file, encoding="utf-8") as lines:
        texts = [json.loads(line) for line, _ in zip(lines, range(n))]
    ids = [f"c{i:07d}" for i in range(n)]
    gc.collect()
    rss_before = _rss_mb()
    t, cpu = time.perf_counter(), time.process_time()
    index = LexicalIndex.build(ids, texts)
    build_s, build_cpu_s = time.perf_counter() - t, time.process_time() - cpu
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        index.save(Path(tmp) / "idx")
        save_s = time.perf_counter() - t
        size_mb = sum(p.stat().st_size for p in (Path(tmp) / "idx").iterdir()) / 1e6
        rss_build = _peak_rss_mb()
        t = time.perf_counter()
        loaded = LexicalIndex.load(Path(tmp) / "idx")
        load_s = time.perf_counter() - t
        latency = _latency(loaded) if n >= 20_000 else {}
    # Where the build's time goes (after the peak RSS was read): tokenizing, then the numpy matrix;
    # and, at 20k, what bm25s's own BM25.index takes on the same tokens.
    cpu = time.process_time()
    vocab, term_ids, lengths = _count_terms(texts)
    tokenize_s = time.process_time() - cpu
    cpu = time.process_time()
    _score_matrix(term_ids, lengths, len(vocab))
    matrix_s = time.process_time() - cpu
    native_s = None
    if n == 20_000:
        corpus = [tokenize(text) for text in texts]
        cpu = time.process_time()
        bm25s.BM25(k1=1.2, b=0.75, method="lucene").index(corpus, show_progress=False)
        native_s = time.process_time() - cpu
    return {
        "n": n, "build_s": build_s, "build_cpu_s": build_cpu_s, "tokenize_s": tokenize_s, "matrix_s": matrix_s, "bm25s_index_s": native_s,
        "save_s": save_s, "load_s": load_s, "size_mb": size_mb, "rss_texts_mb": rss_before, "rss_peak_mb": rss_build,
        "vocab": len(vocab), "tokens": len(term_ids), **latency,
    }


def _latency(index: LexicalIndex) -> dict:
    queries = []
    for name in ("squad11_dev", "cmrc2018"):
        ds = load_dataset(DATASETS / name, name)
        queries += [q.text for q in ds.queries_with_qrels(150)]
    for q in queries[:20]:
        index.search(q, 20)
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q, 20)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"search_p50_ms": times[len(times) // 2], "search_p95_ms": times[int(len(times) * 0.95)],
            "search_mean_ms": statistics.fmean(times)}


def _peak_rss_mb() -> float:
    """VmHWM, not ru_maxrss: a child inherits its parent's ru_maxrss across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def scale() -> None:
    print("\n### Full rebuild: tokenize + index, save, load (mmap); one process per size\n")
    print("Wall time depends on what else the machine runs; CPU time (process_time) much less.\n")
    rows = []
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8") as texts_file:
        texts_file.writelines(json.dumps(text) + "\n" for text in pieces(100_000))
        texts_file.flush()
        gc.collect()
        results = [
            json.loads(subprocess.run(
                [sys.executable, __file__, "--scale-one", str(n), "--texts", texts_file.name],
                capture_output=True, text=True, check=True,
            ).stdout.strip().splitlines()[-1])
            for n in (2_000, 20_000, 100_000)
        ]
    for n, r in zip((2_000, 20_000, 100_000), results, strict=True):
        rows.append([
            f"{n:,}", f"{r['tokens'] / 1e6:.1f}M", f"{r['build_s']:.1f}", f"{r['build_cpu_s']:.1f}",
            f"{r['tokenize_s']:.1f}", f"{r['matrix_s']:.1f}",
            f"{r['bm25s_index_s']:.1f}" if r["bm25s_index_s"] else "", f"{r['save_s']:.2f}", f"{r['load_s']:.2f}",
            f"{r['size_mb']:.0f}", f"{r['vocab']:,}", f"{r['rss_texts_mb']:.0f}", f"{r['rss_peak_mb']:.0f}",
            f"{r['search_p50_ms']:.1f} / {r['search_p95_ms']:.1f}" if "search_p50_ms" in r else "",
        ])
    print(_table(["chunks", "terms", "build s (wall)", "build s (CPU)", "CPU: tokenize s", "CPU: matrix s",
                  "CPU: bm25s.index s (same tokens)",
                  "save s", "load s", "MB on disk", "vocab", "RSS with texts MB", "peak RSS MB",
                  "search p50 / p95 ms (k=20)"], rows))


# ---- reading from Chroma -------------------------------------------------------------------------
def chroma(n: int = 20_000, per_doc: int = 10) -> None:
    """Chunks and registry records are upserted in large batches (the read path cannot tell), with
    tiny random embeddings: only reading back is timed."""
    from rag.lexical import LexicalIndexes
    from rag.settings import Settings
    from rag.store import DocumentRecord, KnowledgeBase

    texts = pieces(n)
    rng = random.Random(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "store")
        kb = KnowledgeBase(settings, "measure", embed_model="none")
        for first_doc, last_doc in ((0, 200), (200, n // per_doc)):
            _write_docs(kb, texts, range(first_doc, last_doc), per_doc, rng, DocumentRecord)
            fp = _best(kb.fingerprint, 5)
            rows.append([f"kb.fingerprint(), {last_doc:,} documents", f"{fp * 1000:.1f} ms"])
        read = _best(lambda: sum(1 for _ in kb.committed_chunks(page_size=2000)), 2)
        rows.append([f"kb.committed_chunks(page_size=2000): {n:,} chunks", f"{read:.2f} s"])
        indexes = LexicalIndexes()
        t, cpu = time.perf_counter(), time.process_time()
        index = indexes.rebuild(kb, settings.data_dir)
        rows.append(["LexicalIndexes.rebuild (read + tokenize + index + save + swap), wall / CPU",
                     f"{time.perf_counter() - t:.2f} s / {time.process_time() - cpu:.2f} s"])
        fresh = _best(lambda: indexes.get(kb, settings.data_dir), 5)
        rows.append(["LexicalIndexes.get, index fresh (the per-query check)", f"{fresh * 1000:.1f} ms"])
        lazy = LexicalIndexes(recheck_s=2.0)
        lazy.get(kb, settings.data_dir)
        held = _best(lambda: lazy.get(kb, settings.data_dir), 5)
        rows.append(["LexicalIndexes(recheck_s=2).get within the 2 s", f"{held * 1000:.3f} ms"])
        hits = index.search(texts[123][:80], 20)
        got = _best(lambda: kb.get_chunks([c for c, _ in hits]), 5)
        rows.append(["kb.get_chunks(20 hits)", f"{got * 1000:.1f} ms"])
    print(f"\n### Reading back from an embedded Chroma ({n:,} chunks, {per_doc} per document)\n")
    print(_table(["step", "time"], rows))


def _write_docs(kb, texts: list[str], docs: range, per_doc: int, rng: random.Random, record_type: type) -> None:
    ids, documents, embeddings, metadatas, records = [], [], [], [], []
    for d in docs:
        doc_id, sha = f"doc{d:05d}", f"{d:064x}"
        record = record_type(doc_id=doc_id, source=f"{doc_id}.txt", content_sha256=sha, pages=1, chunks=per_doc,
                             ingested_at="2025-01-01T00:00:00+00:00", size_bytes=1)
        records.append(record)
        for i in range(d * per_doc, (d + 1) * per_doc):
            ids.append(f"{doc_id}:{sha[:12]}:{i:05d}")
            documents.append(texts[i])
            embeddings.append([rng.random() for _ in range(8)])
            metadatas.append({"doc_id": doc_id, "source": record.source, "content_sha256": sha,
                              "ingested_at": record.ingested_at})
    batch = kb.client.get_max_batch_size()
    for start in range(0, len(ids), batch):
        end = start + batch
        kb.chunks.upsert(ids=ids[start:end], documents=documents[start:end], embeddings=embeddings[start:end],
                         metadatas=metadatas[start:end])
    kb.registry.upsert(ids=[kb._registry_id(r.doc_id) for r in records], embeddings=[[1.0]] * len(records),
                       metadatas=[r.as_metadata(kb.name) for r in records])


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", help="quality (default), speed, scale, chroma")
    parser.add_argument("--scale-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_one:
        print(json.dumps(scale_one(args.scale_one, args.texts)))
        return
    parts = {"quality": quality, "speed": speed, "scale": scale, "chroma": chroma}
    if unknown := set(args.parts) - set(parts):
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    for part in args.parts or ["quality"]:
        parts[part]()


if __name__ == "__main__":
    main()
