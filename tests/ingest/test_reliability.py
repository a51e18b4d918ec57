"""Batches that a hostile or careless user gives: one name twice, one file twice, a long file. Real embedded
Chroma and the packaged embedder; what is checked is what the user sees (the lines) and what is stored."""

from __future__ import annotations

from pathlib import Path

from ingest.pipeline import Ingestor, SourceFile
from rag.settings import Settings
from tests.helpers import SAMPLE


def _texts(ingestor: Ingestor) -> dict[str, str]:
    rows = ingestor.kb.chunks.get(include=["documents", "metadatas"])
    return {meta["source"]: text for text, meta in zip(rows["documents"], rows["metadatas"], strict=True)}


def test_one_name_in_two_folders_is_two_documents(settings: Settings, tmp_path: Path) -> None:
    for folder, text in (("dirA", "Alpha: the red valve opens at noon."), ("dirB", "Beta: the blue pump stops at dusk.")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "notes.txt").write_text(text)
    (tmp_path / "dirB" / "other.txt").write_text("Only in B.")
    ingestor = Ingestor(settings)
    lines = [r.line() for r in ingestor.ingest_paths([tmp_path / "dirA", tmp_path / "dirB"])]
    assert lines == ["dirA/notes.txt: ok 1 chunks", "dirB/notes.txt: ok 1 chunks", "other.txt: ok 1 chunks"]
    assert _texts(ingestor) == {"dirA/notes.txt": "Alpha: the red valve opens at noon.",
                                "dirB/notes.txt": "Beta: the blue pump stops at dusk.", "other.txt": "Only in B."}
    # The same two folders again: both unchanged, neither replaced by the other.
    again = [r.line() for r in ingestor.ingest_paths([tmp_path / "dirA", tmp_path / "dirB"])]
    assert again == ["dirA/notes.txt: skipped (unchanged)", "dirB/notes.txt: skipped (unchanged)",
                     "other.txt: skipped (unchanged)"]


def test_the_same_file_twice_in_one_command_is_ingested_once(settings: Settings) -> None:
    faq = SAMPLE / "product-faq.txt"
    results = Ingestor(settings).ingest_paths([faq, SAMPLE, faq])
    lines = [r.line() for r in results if r.source == "product-faq.txt"]
    assert lines[0].startswith("product-faq.txt: ok ")
    assert lines[1:] == ["product-faq.txt: skipped (same file given twice)"] * 2
    assert sum(r.status == "ok" for r in results) == len(list(SAMPLE.iterdir()))


def test_two_uploads_of_one_name_never_replace_each_other_silently(settings: Settings) -> None:
    ingestor = Ingestor(settings)
    results = ingestor.ingest([SourceFile("notes.txt", data=b"First upload: the gate code is 1234."),
                               SourceFile("notes.txt", data=b"Second upload: the gate code is 9876.")])
    assert [r.status for r in results] == ["ok", "failed"]
    assert results[1].reason == ("another file of this batch is named 'notes.txt' too, and this one would replace "
                                 "it: rename one of them")
    assert _texts(ingestor) == {"notes.txt": "First upload: the gate code is 1234."}


def test_a_long_document_reports_its_progress(settings: Settings) -> None:
    seen: list[tuple[str, str, int, int]] = []
    small = {"chunk_size": 32, "chunk_overlap": 0, "embed_model": "all-MiniLM-L6-v2"}  # the faster embedder
    ingestor = Ingestor(settings.model_copy(update=small))
    long_text = " ".join(f"Sentence {n} says that part {n} weighs {n * 7} grams." for n in range(600)).encode()
    results = ingestor.ingest([SourceFile("returns-and-service.pdf", path=SAMPLE / "returns-and-service.pdf"),
                               SourceFile("long.txt", data=long_text)],
                              on_progress=lambda *step: seen.append(step))
    assert [r.status for r in results] == ["ok", "ok"] and results[1].chunks > 256
    assert [s for s in seen if s[0] == "returns-and-service.pdf"] == [
        ("returns-and-service.pdf", "pages read", 1, 2), ("returns-and-service.pdf", "pages read", 2, 2)]
    embedded = [s for s in seen if s[0] == "long.txt"]
    assert embedded[-1] == ("long.txt", "chunks embedded", results[1].chunks, results[1].chunks)
    assert [s[2] for s in embedded] == sorted(s[2] for s in embedded) and len(embedded) >= 2
