"""Chunk and sentence defects on the SEC 10-Q PDFs, as the code in this tree chunks and splits them (issue 37 §4).

    .venv/bin/python experiments/split_defects.py [--pdfs ../shared/datasets/pdf_docugami_sec10q/pdfs]

Counts, over every chunk of every page (the default chunking; no model but the embedder's tokenizer): chunks cut
inside a number (a chunk ends "…$3." and the page goes on with a digit), sentences ending at a decimal point, pieces
that are only a list marker or label ("5.", "Item 2."), and short heading lines glued to the paragraph under them.
Run it in the old tree and the new one to compare (BENCHMARKS.md, "Where the extractive answer's sentences end").
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.chunking import make_splitter  # noqa: E402
from ingest.loaders import load_document  # noqa: E402
from rag import extract  # noqa: E402
from rag.embedders.models import configured_embedder  # noqa: E402
from rag.settings import Settings  # noqa: E402

MARKER = re.compile(r"\(?(\d{1,3}|[a-zA-Z]|[ivx]{1,4})[.)]|(Item|Note|Part)\s+\w{1,4}\.")


def defects(page_text: str, chunk: str, counts: dict[str, int]) -> None:
    counts["chunks"] += 1
    end = chunk.rstrip()
    if re.search(r"\d[.,]$", end):
        at = page_text.find(end[-40:])
        counts["cut inside a number"] += at >= 0 and page_text[at + len(end[-40:]):][:1].isdigit()
    for start, stop in extract.sentence_spans(chunk):
        sentence = chunk[start:stop]
        counts["sentences"] += 1
        follows = chunk[stop:stop + 3].lstrip()[:1]
        counts["ends at a decimal point"] += bool(re.search(r"\d\.$", sentence)) and follows.isdigit()
        counts["only a list marker or label"] += MARKER.fullmatch(sentence.strip()) is not None
        first, _, rest = sentence.partition("\n")
        counts["heading glued to the next line"] += (bool(rest) and extract.is_heading(first) and len(rest) >= 60
                                                     and (start == 0 or chunk[start - 1] == "\n"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdfs", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"
                                              / "pdf_docugami_sec10q" / "pdfs"))
    args = parser.parse_args()
    settings = Settings()
    splitter = make_splitter(settings, configured_embedder(settings))
    counts = dict.fromkeys(["chunks", "cut inside a number", "sentences", "ends at a decimal point",
                            "only a list marker or label", "heading glued to the next line"], 0)
    for pdf in sorted(Path(args.pdfs).glob("*.pdf")):
        for page in load_document(pdf.name, pdf.read_bytes()):
            for chunk in splitter.split_text(page.text):
                defects(page.text, chunk, counts)
    print(counts)


if __name__ == "__main__":
    main()
