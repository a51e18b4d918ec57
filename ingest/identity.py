"""What a document is, and where in it each chunk sits: the context retrieval and the reranker read (issue 33).

A page from the middle of a quarterly filing says "net sales" without saying whose: neither BM25, the
embedder nor the cross-encoder can then prefer Amazon's page when the question names Amazon. Anthropic's
Contextual Retrieval (2024) puts a short text situating each chunk in its document before the chunk when
it is embedded and indexed; this module writes that text without a model, from what the file says of itself:

* the document's identity (:func:`document_context`): a PDF's metadata title and subject, its first page's
  lines in the largest type (a cover: the company, the form) and the first page's first dated line (the
  period), its running header/footer lines (kept on ``PageText.running``, left out of the text), an HTML
  ``<title>``, a DOCX's core title, a Markdown file's first ``#`` heading, the file name's words;
* each chunk's section (:func:`chunk_sections`): the PDF outline, or lines numbered as parts, items, notes
  or sections; Markdown, HTML and DOCX headings.

:func:`context_line` joins them, bounded in length. It is stored on every chunk (metadata ``context``, with
``doc_title`` and ``section``) and never part of the chunk's text, so the answer quotes only the chunk.
Hand-written: llama-index's metadata extractors ask an LLM for titles, and no library we have reads a
cover's type sizes or numbered heading lines.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePath
from typing import TYPE_CHECKING

from ingest.document import PageText
from ingest.furniture import line_key
from rag.chunk_context import CONTEXT, DOC_TITLE, SECTION
from rag.statements import read_section, statement_titles

if TYPE_CHECKING:
    from rag.settings import Settings

SEPARATOR = " · "  # between the identity's parts
SECTION_SEPARATOR = " > "  # between the levels of a section path
MAX_PART_CHARS = 90  # one identity line: a cover line, a running line, a title
COVER_SHARE = 0.7  # a cover line is set in at least this share of the first page's largest type size
COVER_LINES = 4
BODY_RATIO = 1.15  # a cover line's type is larger than the page's body text by at least this
IDENTITY_SHARE = 0.6  # of a context line, what the document's identity keeps at least beside a long section
TOC_HEADINGS = 6  # a page with this many heading lines is a table of contents: its lines situate nothing
REPEATED_HEADING_PAGES = 3  # a bold line on this many pages is a table's furniture, not a heading
STATEMENT_LEVEL, STATEMENT_REACH = 9, 160  # a statement's title: under all headings; what a page prints above it

_MONTHS = ("jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|january|february|march|april|june|july|august|"
           "september|october|november|december")
# A date or a period: "September 30, 2023", "30 September 2023", "2023-09-30", "Q3 2023", "FY2023", "2023年".
_PERIOD = re.compile(rf"\b(?:(?:{_MONTHS})\.?\s+\d{{1,2}},?\s+(?:19|20)\d\d|\d{{1,2}}\s+(?:{_MONTHS})\.?\s+(?:19|20)\d\d"
                     rf"|(?:19|20)\d\d-\d\d-\d\d|Q[1-4]\s*(?:19|20)\d\d|(?:19|20)\d\d\s*Q[1-4]|FY\s?(?:19|20)\d\d)\b"
                     r"|(?:19|20)\d\d\s*年", re.IGNORECASE)
# Lines a document numbers as its structure: "PART I", "Item 2.", "Note 3 –", "Chapter 4", "Section 2.1",
# "Appendix B", "3.2 Installation". The level orders them: a part holds items, an item notes.
_NUMBERED = [
    (1, re.compile(r"^(?:PART|Part)\s+[IVX]+\b")),
    (2, re.compile(r"^(?:ITEM|Item|CHAPTER|Chapter|ARTICLE|Article)\s+\d+[A-Z]?\b")),
    (3, re.compile(r"^(?:NOTE|Note|SECTION|Section|APPENDIX|Appendix)\s+(?:\d+(?:\.\d+)*|[A-Z])\b")),
    (3, re.compile(r"^(?!(?:19|20)\d\d\b)\d+(?:\.\d+){0,3}\.?\s+[A-Z][A-Za-z]")),  # not a year: "2021 Change"
]
_MARKDOWN_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


@dataclass(frozen=True)
class Heading:
    page: int | None  # the page it stands on (None: a format without pages)
    offset: int  # where it starts in that page's text
    level: int  # 1 the outermost
    text: str


@dataclass(frozen=True)
class Identity:
    """What names a document among its neighbours: a title people read, and the lines that tell it apart."""

    title: str
    parts: tuple[str, ...]  # the title first, then the period, running lines, subject, file-name words, cover

    def line(self, limit: int) -> str:
        return _bounded(self.parts, SEPARATOR, limit)


def _clean(text: str) -> str:
    return " ".join(str(text).split())[:MAX_PART_CHARS * 2]


def _wordy(text: str) -> bool:
    """A line that names something: two letters at least, and no more than three digits to a letter (not an
    accession number such as "0001018724-23-000018", a page number or a rule of underscores; "2023 Q3 AMZN" is)."""
    letters = sum(ch.isalpha() for ch in text)
    return letters >= 2 and 3 * letters >= sum(ch.isdigit() for ch in text)


def _bounded(parts: tuple[str, ...] | list[str], separator: str, limit: int) -> str:
    """``parts`` joined while they fit in ``limit`` characters; a first part longer than that is cut at a word."""
    out = ""
    for part in parts:
        joined = f"{out}{separator}{part}" if out else part
        if len(joined) <= limit:
            out = joined
        elif not out:
            out = part[:limit].rsplit(" ", 1)[0] if " " in part[:limit] else part[:limit]
    return out


def _distinct(parts: list[str]) -> tuple[str, ...]:
    """``parts`` cleaned, each once: a part already contained in an earlier one (case folded) is left out."""
    kept: list[str] = []
    for part in parts:
        part = _clean(part)[:MAX_PART_CHARS].strip(" |·-–—:")
        folded = part.casefold()
        if part and _wordy(part) and not any(folded in other.casefold() for other in kept):
            kept.append(part)
    return tuple(kept)


def file_words(name: str) -> str:
    """The words of a file's name: "reports/2023 Q3 AMZN.pdf" → "2023 Q3 AMZN"."""
    return " ".join(re.sub(r"[_\-.]+", " ", PurePath(name).stem).split())


# ---- what each format says of itself -------------------------------------------------------------------
def _pdf_facts(data: bytes) -> tuple[list[str], tuple[list[str], list[str]], list[Heading]]:
    """(metadata title and subject, the first page's cover lines: those in its largest type and the other
    prominent ones, the outline's headings)."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            reader.decrypt("")
        meta = reader.metadata or {}
        described = [str(meta.get(key) or "") for key in ("/Title", "/Subject")]
    except Exception:  # noqa: BLE001 - a PDF the loader read may still have a broken info dictionary
        return ["", ""], ([], []), []
    cover: list[str] = []
    try:
        sized: list[tuple[float, int, str]] = []

        def visit(text, cm, tm, font, size):  # noqa: ANN001 - pypdf's visitor signature
            if text.strip() and size:
                sized.append((abs(size * tm[3] * cm[3]) or size, len(sized), _clean(text)))

        reader.pages[0].extract_text(visitor_text=visit)
        largest = max((size for size, _, text in sized if _wordy(text)), default=0.0)
        chars: Counter[float] = Counter()
        for size, _, text in sized:
            chars[round(size, 1)] += len(text)
        body = chars.most_common(1)[0][0] if chars else largest
        if largest < BODY_RATIO * body:  # all in one type: no line stands out as the cover's
            largest = float("inf")
        prominent = sorted((item for item in sized if item[0] >= COVER_SHARE * largest and _wordy(item[2])),
                           key=lambda item: (-round(item[0], 1), item[1]))[:COVER_LINES]
        # the lines in the largest type first ("NVIDIA CORPORATION" beside "FORM 10-Q"), then the others
        cover = ([text for size, _, text in prominent if round(size, 1) == round(largest, 1)],
                 [text for size, _, text in prominent if round(size, 1) != round(largest, 1)])
    except Exception:  # noqa: BLE001 - sizes are a help, never a reason to fail
        cover = ([], [])
    return described, cover, _pdf_outline(reader)


def _pdf_outline(reader) -> list[Heading]:  # noqa: ANN001 - a pypdf PdfReader
    headings: list[Heading] = []

    def walk(items, level: int) -> None:  # noqa: ANN001
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            try:
                page = reader.get_destination_page_number(item)
            except Exception:  # noqa: BLE001 - a bookmark to nowhere
                continue
            title = _clean(getattr(item, "title", "") or "")
            if title and page is not None and page >= 0 and len(headings) < 10_000:
                headings.append(Heading(page + 1, -1, level, title))

    try:
        walk(reader.outline or [], 1)
    except Exception:  # noqa: BLE001 - a broken outline is no outline
        return []
    return sorted(headings, key=lambda h: h.page or 0)


class _HtmlTitle(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self._inside = False
        self.done = False

    def handle_starttag(self, tag: str, attrs) -> None:  # noqa: ANN001
        self._inside = tag == "title" and not self.done

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._inside:
            self._inside, self.done = False, True

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.title.append(data)


def html_title(data: bytes) -> str:
    """An HTML file's ``<title>``, read from its first 256 KB (it sits in ``<head>``)."""
    from ingest.text_formats import decode_text

    parser = _HtmlTitle()
    try:
        parser.feed(decode_text(data[: 1 << 18]))
    except Exception:  # noqa: BLE001 - a title is a help; the loader judged the file already
        return ""
    return _clean("".join(parser.title))


def docx_title(data: bytes) -> str:
    """A DOCX's core title (docProps/core.xml ``dc:title``); "" when none. The part is small, and read only when
    it declares at most 1 MB."""
    from lxml import etree

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo("docProps/core.xml")
            if info.file_size > 1_000_000:
                return ""
            root = etree.fromstring(archive.read(info), etree.XMLParser(resolve_entities=False, no_network=True))
    except Exception:  # noqa: BLE001 - no core properties: no title from them
        return ""
    found = root.find("{http://purl.org/dc/elements/1.1/}title")
    return _clean(found.text or "") if found is not None else ""


def markdown_headings(page: PageText) -> list[Heading]:
    """A Markdown page's ``#`` headings, outside fenced code."""
    headings, fenced, offset = [], False, 0
    for line in page.text.splitlines(keepends=True):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (match := _MARKDOWN_HEADING.match(line.rstrip("\n"))):
            headings.append(Heading(page.number, offset, len(match.group(1)), _clean(match.group(2))))
        offset += len(line)
    return headings


def numbered_headings(page: PageText) -> list[Heading] | None:
    """A page's lines numbered as its structure (PART I, Item 2., Note 3, 3.2 Installation): short, no figures
    after the number. None on a page with ``TOC_HEADINGS`` of them or more: a table of contents, whose lines
    situate nothing."""
    headings, offset = [], 0
    for line in page.text.splitlines(keepends=True):
        text = line.strip()
        if 3 <= len(text) <= 100 and not text.endswith((",", ";")):
            for level, pattern in _NUMBERED:
                match = pattern.match(text)
                rest = text[match.end():] if match else ""
                if match and not re.search(r"\d", rest) and "$" not in text and "%" not in text:
                    headings.append(Heading(page.number, offset + len(line) - len(line.lstrip()), level, _clean(text)))
                    break
        offset += len(line)
    return None if len(headings) >= TOC_HEADINGS else headings


def pdf_headings(pages: list[PageText]) -> list[Heading]:
    """A PDF's headings without an outline: the lines it numbers as its structure where it numbers any, else its
    lines set in bold (marked by the loader) save those on ``REPEATED_HEADING_PAGES`` pages or more (a table's
    "Three Months Ended"). Not both: on the 10-Qs, bold subsections under the numbered Items and Notes lowered
    the page-level MRR@5 (docs/chunk-context.md)."""
    numbered = [numbered_headings(page) for page in pages]
    if any(numbered):
        return [heading for found in numbered if found for heading in found]
    pages_of: Counter[str] = Counter()
    for page in pages:
        pages_of.update({text for _, _, text in page.headings})
    return [Heading(page.number, offset, level, _clean(text)) for page, found in zip(pages, numbered, strict=True)
            if found is not None for offset, level, text in page.headings if pages_of[text] < REPEATED_HEADING_PAGES]


def _headings(suffix: str, pages: list[PageText], outline: list[Heading]) -> list[Heading]:
    """The document's headings, and under them each financial statement's title, its rows' section (rag.statements)."""
    found: list[Heading] = list(outline) if outline else pdf_headings(pages) if suffix == ".pdf" else []
    for page in pages if not outline and suffix != ".pdf" else ():
        if page.headings:  # set by the loader (HTML, DOCX)
            found.extend(Heading(page.number, offset, level, _clean(text)) for offset, level, text in page.headings)
        elif suffix in (".md", ".markdown"):
            found.extend(markdown_headings(page))
    known = {(h.page, h.text.casefold()) for h in found}  # a title the format marks as a heading already
    titles = [(p.number, at, title) for p in pages for at, title in statement_titles(p.text, p.number is not None)]
    found += [Heading(n, at, STATEMENT_LEVEL, t) for n, at, t in titles if (n, t.casefold()) not in known]
    return sorted(found, key=lambda h: (h.page or 0, h.offset))


# ---- the document ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DocumentContext:
    identity: Identity
    headings: tuple[Heading, ...]


def running_identity(pages: list[PageText]) -> list[str]:
    """The running lines that name something, most pages first, each once (its page number taken off)."""
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for page in pages:
        for line in page.running:
            key = line_key(line)
            if _wordy(line) and key not in counts:
                first[key] = re.sub(r"(?:^\s*\d+\s*[|·\-–—]?\s*|\s*[|·\-–—]?\s*\d+\s*$)", "", line)
            counts[key] += _wordy(line)
    return [first[key] for key, _ in counts.most_common() if key in first]


def first_dated_line(pages: list[PageText]) -> str:
    """The first page's first line that names a date or a period (a cover's "For the quarterly period ended ...")."""
    for line in (pages[0].text.splitlines() if pages else [])[:80]:
        if _PERIOD.search(line) and _wordy(line) and len(line.strip()) <= MAX_PART_CHARS * 2:
            return line.strip()
    return ""


def _title_candidates(suffix: str, pages: list[PageText], headings: list[Heading], named: str) -> list[str]:
    """What the file offers as its title, best first (besides a PDF's cover and metadata)."""
    top = [h.text for h in headings if h.level == min(x.level for x in headings)][:1] if headings else []
    if suffix in (".md", ".markdown", ".html", ".htm", ".docx"):
        return [named, *top]
    if suffix in (".txt", ".text") and pages:
        first = pages[0].text.strip().split("\n", 1)[0].strip()
        return [first] if len(first) <= MAX_PART_CHARS and not first.endswith((".", "?", "!", ":", "。")) else []
    return []


def document_context(name: str, data: bytes | None, pages: list[PageText]) -> DocumentContext:
    """The identity of the file ``name`` (its bytes ``data``, as read into ``pages``) and its headings.
    ``data`` None: what the pages alone say (a collection reindexed from its stored chunks)."""
    suffix = PurePath(name).suffix.lower()
    described: list[str] = ["", ""]
    cover: tuple[list[str], list[str]] = ([], [])
    outline: list[Heading] = []
    named = ""
    if data is not None and suffix == ".pdf":
        described, cover, outline = _pdf_facts(data)
    elif data is not None and suffix in (".html", ".htm"):
        named = html_title(data)
    elif data is not None and suffix == ".docx":
        named = docx_title(data)
    headings = _headings(suffix, pages, outline)
    words = file_words(name)
    # A cover's largest line names the document best (a company, a product); then the metadata's title (often
    # an id, dropped as not wordy), the format's own title; the file name's words last.
    largest, prominent = cover
    titles = [t for t in [*largest[:1], described[0], *_title_candidates(suffix, pages, headings, named)] if t]
    # What tells a document from its neighbours, most telling first (the line is cut at its length): the rest of
    # the cover's largest type, the period, the running lines ("Apple Inc. | Q3 2022 Form 10-Q"), the file name's
    # words, the metadata's subject, the cover's other prominent lines (often the form's boilerplate).
    details = [*largest[1:], first_dated_line(pages) if suffix == ".pdf" else "", *running_identity(pages)[:2],
               words, described[1], *prominent]
    title = next(iter(_distinct(titles)), "") or words or name
    return DocumentContext(Identity(title, _distinct([title, *titles, *details])), tuple(headings))


def section_at(headings: tuple[Heading, ...] | list[Heading], page: int | None, offset: int) -> str:
    """The section path in force at ``offset`` of ``page``: the headings before it, each level's last."""
    stack: list[Heading] = []
    for heading in headings:
        if (heading.page or 0, heading.offset) > (page or 0, offset):
            break
        stack = [h for h in stack if h.level < heading.level] + [heading]
    return SECTION_SEPARATOR.join(h.text for h in stack)


def chunk_offsets(pages: list[PageText], texts: list[str], page_numbers: list[int | None]) -> list[int]:
    """Where each chunk starts in its page's text, found in order (the splitter keeps the page's characters;
    a chunk not found, its whitespace changed, takes the place the previous one ended)."""
    by_page = {page.number: page.text for page in pages}
    offsets, cursor, current = [], 0, object()
    for text, number in zip(texts, page_numbers, strict=True):
        if number != current:
            cursor, current = 0, number
        page_text = by_page.get(number, "")
        probe = text.strip()[:60]
        found = page_text.find(probe, max(cursor - len(text), 0)) if probe else -1
        offsets.append(found if found >= 0 else cursor)
        cursor = (found if found >= 0 else cursor) + len(text)
    return offsets


def chunk_sections(context: DocumentContext, pages: list[PageText], texts: list[str],
                   page_numbers: list[int | None]) -> list[str]:
    """Each chunk's section path ("" where the document has none)."""
    if not context.headings:
        return [""] * len(texts)
    offsets = chunk_offsets(pages, texts, page_numbers)
    return [section_at(context.headings, number, _past_opening_headings(context.headings, number, offset, len(text)))
            for text, number, offset in zip(texts, page_numbers, offsets, strict=True)]


def _past_opening_headings(headings: tuple[Heading, ...], page: int | None, offset: int, length: int) -> int:
    """Where a chunk (``length`` characters) starts: past the heading lines it opens with ("PART I" then "Item 2.",
    or a statement's title it holds in its first ``STATEMENT_REACH``, under its company's name): its section."""
    for heading in headings:
        reach = min(STATEMENT_REACH, length - len(heading.text)) if heading.level == STATEMENT_LEVEL else 2
        if heading.page == page and offset <= heading.offset <= offset + reach:
            offset = heading.offset + len(heading.text)
    return offset


def context_line(parts: tuple[str, ...], section: str, limit: int) -> str:
    """What is read before a chunk: its document's identity ``parts`` (whole ones, most telling first), then its
    section, in at most ``limit`` characters. The identity keeps ``IDENTITY_SHARE`` of them at least; the section
    keeps its end when cut, its innermost heading being what situates the chunk."""
    if not section:
        return _bounded(parts, SEPARATOR, limit)
    identity = _bounded(parts, SEPARATOR, max(limit - len(section) - len(" — "), int(IDENTITY_SHARE * limit)))
    room = limit - len(identity) - len(" — ")
    if room < 10:
        return identity
    section = section if len(section) <= room else "…" + section[-(room - 1):]
    return f"{identity} — {section}" if identity else section[-limit:]


def chunk_metadata(context: DocumentContext, sections: list[str], limit: int) -> list[dict]:
    """What each chunk carries: ``doc_title``, ``section``, ``context`` (without a statement's title: read_section)."""
    title = context.identity.title.casefold()
    # a heading that is the title too (a Markdown file's "# Pump guide") says nothing twice
    sections = [SECTION_SEPARATOR.join(part for i, part in enumerate(section.split(SECTION_SEPARATOR))
                                       if i or part.casefold() != title) for section in sections]
    return [{DOC_TITLE: context.identity.title, **({SECTION: section} if section else {}),
             CONTEXT: context_line(context.identity.parts, read_section(section), limit)} for section in sections]


def situate_chunks(settings: Settings, name: str, data: bytes | None, pages: list[PageText], texts: list[str],
                   page_numbers: list[int | None]) -> list[dict] | None:
    """Each chunk's ``doc_title``, ``section`` and ``context`` as ``Settings.chunk_context`` says; None when off."""
    if settings.chunk_context == "off":
        return None
    context = document_context(name, data, pages)
    situated = chunk_metadata(context, chunk_sections(context, pages, texts, page_numbers),
                              settings.chunk_context_chars)
    if settings.chunk_context == "llm" and settings.llm_configured:
        from ingest.llm_context import llm_contexts

        for meta, sentence in zip(situated, llm_contexts(settings, pages, texts), strict=True):
            if sentence:
                meta[CONTEXT] = context_line((sentence,), "", settings.chunk_context_chars)
    return situated
