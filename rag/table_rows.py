"""Table rows as sentences of their own, for the extractive answer (:mod:`rag.extract`): pypdf gives a PDF
table's row as one line of a label and its cells, which a sentence splitter would join to the lines around
it; cut out and given its column header, a row can be quoted and scored as the answer it is."""

from __future__ import annotations

import re

# A table row as pypdf gives it: a label, then two or more cells that are numbers, currency signs, dashes
# ("Total net sales $ 81,797 $ 82,959 $ 293,787 $ 304,182", "Mutual funds 366 15 (19) 362 — 362 —").
_CELL = re.compile(r"^[($€£¥]*[-+]?\d[\d,.]*%?\)?$")
_FILLER = frozenset({"$", "€", "£", "¥", "%", "—", "–", "-", "(", ")"})
TABLE_HEADER_LINES = 12  # at most this many short lines above a table's first row are its column header


def is_table_row(line: str) -> bool:
    """Whether a line is a table row: it ends in a run of at least two numeric cells (dashes and currency signs
    between them), after a label."""
    tokens = line.split()
    cells = run = 0
    for token in reversed(tokens):
        if _CELL.match(token):
            cells += 1
        elif token not in _FILLER:
            break
        run += 1
    return cells >= 2 and run < len(tokens)


def _column_header(lines: list[str], first_row: int) -> str:
    """The short lines right above a table's first row ("Three Months Ended", "July 1,", "2023", ...), joined:
    up to ``TABLE_HEADER_LINES``, stopping at a caption (a line ending in ':' or '.') or a long line; a short
    label right above the rows ("Revenue:", "Net sales:") groups them and is passed over."""
    header: list[str] = []
    for line in reversed(lines[max(0, first_row - TABLE_HEADER_LINES):first_row]):
        line = line.strip()
        if line.endswith(":") and len(line.split()) <= 3 and not header and not any(ch.isdigit() for ch in line):
            continue  # a group label over the rows ("Revenue:", "Net sales:"), not a caption
        if not line or len(line) > 80 or line.endswith((":", ".")) or is_table_row(line):
            break
        header.insert(0, line)
    return " ".join(" ".join(header).split())


def table_sentences(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """``spans`` with every table row a sentence of its own: a span holding several lines, some of them table
    rows (a row may look like a wrapped line to :func:`sentence_spans`), is cut at its line breaks; each row's
    text carries its column header when one stands above the table, so a row can be quoted and scored as the
    answer it is ("Total net sales $ 81,797 ... (Three Months Ended ... July 1, 2023 ...)"). (start, end, text)."""
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    headers: dict[int, str] = {}  # line index of a row -> its table's header
    header = ""
    for i, line in enumerate(lines):
        if is_table_row(line):
            if i == 0 or not is_table_row(lines[i - 1]) and (i < 2 or not is_table_row(lines[i - 2])):
                header = _column_header(lines, i)  # a new table (a label line between rows keeps the table)
            headers[i] = header
    if not headers:
        return [(start, end, " ".join(text[start:end].split())) for start, end in spans]
    out = []
    for start, end in spans:
        first = max(i for i, s in enumerate(starts) if s <= start)
        last = max(i for i, s in enumerate(starts) if s < end)
        if not any(i in headers for i in range(first, last + 1)):
            out.append((start, end, " ".join(text[start:end].split())))
            continue
        piece_start = start
        for i in range(first, last + 1):  # cut before and after each row
            line_end = min(end, starts[i] + len(lines[i]))
            if i in headers or i == last or (i + 1) in headers:
                piece = text[piece_start:line_end]
                if piece.strip():
                    lead = piece_start + len(piece) - len(piece.lstrip())
                    shown = " ".join(piece.split())
                    if i in headers and headers[i] and lead >= starts[i]:
                        shown = f"{shown} ({headers[i]})"
                    out.append((lead, lead + len(piece.strip()), shown))
                piece_start = starts[i + 1] if i + 1 < len(starts) else end
    return out
