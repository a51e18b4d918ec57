"""OCR accuracy and speed (issue 23): character error rate of RapidOCR on rendered page images whose text is
known, and pages per second; plus the share of the SEC 10-Q PDFs' chunks that running lines touch.

English: pages of the SEC 10-Q PDFs rendered by pypdfium2 at each resolution, compared with their own text
layer (pypdf). Chinese: passages of CMRC 2018 drawn onto a page with WenQuanYi Zen Hei (Debian's
fonts-wqy-zenhei). CER = edit distance / reference length, whitespace left out of both (a text layer and OCR
space a table differently). ``python experiments/ocr_accuracy.py [--pages N] [--dpi 150 200]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
SEC = DATASETS / "pdf_docugami_sec10q" / "pdfs"
ZH_FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"


def edit_distance(a: str, b: str) -> int:
    import numpy as np

    # Hand-written (no edit-distance package in the project): one numpy row per character of a.
    previous = np.arange(len(b) + 1)
    codes = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    for i, ch in enumerate(a, 1):
        substitute = previous[:-1] + (codes != ord(ch))
        current = np.empty_like(previous)
        current[0] = i
        current[1:] = np.minimum(substitute, previous[1:] + 1)
        current = np.minimum.accumulate(current - np.arange(len(b) + 1)) + np.arange(len(b) + 1)
        previous = current
    return int(previous[-1])


def cer(reference: str, read: str) -> float:
    ref, got = "".join(reference.split()), "".join(read.split())
    return edit_distance(ref, got) / max(1, len(ref))


def english(pages: list[tuple[str, int]], dpi: int) -> dict:
    import pypdfium2 as pdfium
    from pypdf import PdfReader

    from ingest.ocr import read_image

    errors, seconds = [], 0.0
    for name, number in pages:
        reference = PdfReader(str(SEC / name)).pages[number - 1].extract_text()
        pdf = pdfium.PdfDocument(str(SEC / name))
        started = time.perf_counter()
        image = pdf[number - 1].render(scale=dpi / 72).to_pil()
        text = read_image(image).text
        seconds += time.perf_counter() - started
        errors.append(cer(reference, text))
    return {"pages": len(pages), "dpi": dpi, "cer": round(sum(errors) / len(errors), 4),
            "per_page": [round(e, 4) for e in errors], "pages_per_s": round(len(pages) / seconds, 3)}


def chinese(n: int) -> dict:
    from PIL import Image, ImageDraw, ImageFont

    from ingest.ocr import read_image

    rows = [json.loads(line) for line in (DATASETS / "cmrc2018" / "corpus.jsonl").open(encoding="utf-8")][:n]
    font = ImageFont.truetype(ZH_FONT, 32)
    errors, seconds = [], 0.0
    for row in rows:
        text = "".join(row["text"].split())[:600]
        lines = [text[i:i + 40] for i in range(0, len(text), 40)]  # 40 characters a line, as on an A4 page
        image = Image.new("RGB", (1500, 100 + 48 * len(lines)), "white")
        draw = ImageDraw.Draw(image)
        for i, line in enumerate(lines):
            draw.text((50, 50 + 48 * i), line, fill="black", font=font)
        started = time.perf_counter()
        read = read_image(image).text
        seconds += time.perf_counter() - started
        errors.append(cer(text, read))
    return {"pages": len(rows), "cer": round(sum(errors) / len(errors), 4), "per_page": [round(e, 4) for e in errors],
            "pages_per_s": round(len(rows) / seconds, 3)}


def running_lines_touch() -> dict:
    """The share of the SEC PDFs' chunks (default chunking) that hold a running line when none are left out."""
    from ingest.chunking import chunk_pages, make_splitter
    from ingest.loaders import Reading, read_document
    from rag.embedders.models import configured_embedder
    from rag.settings import Settings

    settings = Settings()
    splitter = make_splitter(settings, configured_embedder(settings))
    touched = total = after = 0
    for path in sorted(SEC.glob("*.pdf")):
        data = path.read_bytes()
        stripped = read_document(path.name, data)
        lines = {line.strip() for page in stripped.pages for line in page.running if line.strip()}
        kept = read_document(path.name, data, reading=Reading(running_lines=False))
        texts, _, _ = chunk_pages(kept.pages, splitter)
        total += len(texts)
        touched += sum(any(line in text.splitlines() or f"\n{line}" in text for line in lines) for text in texts)
        after += len(chunk_pages(stripped.pages, splitter)[0])
    return {"chunks_before": total, "chunks_touched": touched, "share": round(touched / total, 3), "chunks_after": after}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dpi", type=int, nargs="+", default=[150, 200])
    parser.add_argument("--zh", type=int, default=2)
    args = parser.parse_args()
    pages = [("2023 Q3 AAPL.pdf", 10), ("2023 Q2 NVDA.pdf", 10), ("2022 Q3 AMZN.pdf", 16)]
    out = {"running_lines": running_lines_touch()}
    print(json.dumps(out), flush=True)
    out["english"] = [english(pages, dpi) for dpi in args.dpi]
    print(json.dumps(out["english"]), flush=True)
    if Path(ZH_FONT).is_file():
        out["chinese"] = chinese(args.zh)
    print(json.dumps(out, indent=1))
