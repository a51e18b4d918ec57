"""Running headers, footers and page numbers: the lines a PDF repeats at the top or bottom of most pages.

They are noise in every chunk they touch (in the embedding, in BM25, in the answer: a chunk made of the end of
a table and "Apple Inc. | Q3 2023 Form 10-Q | 10" was the first dense hit for an unrelated question), so they
are left out of the text before chunking and kept on the page (``PageText.running``).

A line is running when, with its digits and whitespace folded ("Page 3 of 40" and "Page 4 of 40" are one
line), it stands among the first (or last) ``EDGE_LINES`` lines (a third of a short page's) of at least ``MIN_SHARE`` of the pages with
text, and of ``MIN_PAGES`` at least: never in a document of one or two pages, never a line seen once. Only the
lines at the very edge of a page are left out (peeled off while they are running lines), so a repeated line
inside the body stays; a document whose every line would be running (pages of one line each, differing only
in numbers) keeps them all. Hand-written: pypdf gives text, not layout, and no library we have finds these.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import replace

from ingest.document import PageText

EDGE_LINES = 3  # a header may sit under a page number, a footer above one
MIN_SHARE = 0.5  # "most pages"
MIN_PAGES = 3
_DIGITS = re.compile(r"\d+")


def line_key(line: str) -> str:
    """A line with digit runs as '#', whitespace collapsed and case folded: the same running line on every page."""
    return _DIGITS.sub("#", " ".join(line.split())).casefold()


def _edge(lines: list) -> int:
    """How many lines at each edge of a page may be running: ``EDGE_LINES``, a third of a short page's."""
    return min(EDGE_LINES, max(1, len(lines) // 3))


def _edges(lines: list[str]) -> tuple[list[str], list[str]]:
    keys = [line_key(line) for line in lines]
    return keys[:_edge(keys)], keys[-_edge(keys):]


def running_keys(pages: list[PageText]) -> tuple[set[str], set[str]]:
    """The keys (see :func:`line_key`) of the running lines at the top and at the bottom of ``pages``."""
    texted = [page for page in pages if page.text.strip()]
    if len(texted) < MIN_PAGES:
        return set(), set()
    needed = max(MIN_PAGES, math.ceil(MIN_SHARE * len(texted)))
    top: Counter[str] = Counter()
    bottom: Counter[str] = Counter()
    for page in texted:
        head, foot = _edges([line for line in page.text.splitlines() if line.strip()])
        top.update(set(head))
        bottom.update(set(foot))
    return ({key for key, n in top.items() if n >= needed and key},
            {key for key, n in bottom.items() if n >= needed and key})


def strip_running_lines(pages: list[PageText]) -> tuple[list[PageText], int]:
    """``pages`` with their running lines left out (each page keeps its own in ``running``), and how many
    distinct running lines were left out."""
    top, bottom = running_keys(pages)
    if not top and not bottom:
        return pages, 0
    out, used = [], set()
    for page in pages:
        lines = page.text.splitlines()
        filled = [i for i, line in enumerate(lines) if line.strip()]  # blank lines stay where they are
        start, end = 0, len(filled)
        edge = _edge(filled)
        while start < min(end, edge) and line_key(lines[filled[start]]) in top:
            used.add(("top", line_key(lines[filled[start]])))
            start += 1
        while end > max(start, len(filled) - edge) and line_key(lines[filled[end - 1]]) in bottom:
            used.add(("bottom", line_key(lines[filled[end - 1]])))
            end -= 1
        if start == 0 and end == len(filled):
            out.append(page)
            continue
        body = lines[filled[start]:filled[end - 1] + 1] if start < end else []
        running = [lines[i] for i in filled[:start] + filled[end:]]
        out.append(replace(page, text="\n".join(body).strip(), running=tuple(running)))
    if not any(page.text for page in out):
        # Every line would go: the document is the repeated lines (one invoice line a page, "Invoice 1001 ...
        # total 20"), not furniture around a body. Leaving them out would leave no text at all.
        return pages, 0
    return out, len(used)
