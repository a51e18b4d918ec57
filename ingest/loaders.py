"""Bytes of one file → its text, page by page, or an :class:`IngestError` with a reason a user can act on.

Loaders take bytes, not paths, so a browser upload and a file on disk take the same road.

>>> [page.number for page in load_document("report.pdf", pdf_bytes)]
[1, 2, 3]

Memory stays bounded for every format, whatever a hostile file holds: the input is at most
``max_bytes`` (RAG_MAX_FILE_MB); a DOCX (a zip) may inflate to at most :func:`inflate_limit` bytes,
checked on the sizes its parts declare and on the bytes actually inflated, and its XML is read as a
stream, never as a whole tree; HTML is read by an event parser (a tree of a small file full of tags
takes hundreds of times its size); PDF streams are bounded by pypdf's own limits (75 MB per stream,
2 M operations per content stream); and the text a DOCX or PDF yields is capped like a text file's.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePath

# A zip member may inflate to 20 times the largest file we accept: text XML deflates 5-15 fold, images
# barely, so no real document comes near it, while a zip bomb inflates a thousand fold. The fixed cap keeps
# the work bounded when RAG_MAX_FILE_MB is large (20 x 50 MB would be 1 GB of XML to parse).
INFLATE_RATIO = 20
MAX_INFLATED_BYTES = 200_000_000
MAX_ZIP_MEMBERS = 10_000  # a DOCX has tens of parts, one per image beyond that
DEFAULT_MAX_BYTES = 50_000_000  # the limits of a caller without max_bytes: RAG_MAX_FILE_MB's default


def inflate_limit(max_bytes: int | None) -> int:
    """How many bytes the XML of a zip-based document (DOCX) may inflate to, in all."""
    return min(MAX_INFLATED_BYTES, INFLATE_RATIO * (max_bytes or DEFAULT_MAX_BYTES))


def _text_limit(max_bytes: int | None) -> int:
    """The characters of text one document may yield: as many as a text file of the largest size."""
    return max_bytes or DEFAULT_MAX_BYTES


def _mb(n: int) -> str:
    return f"{n / 1e6:g} MB"


class IngestError(Exception):
    """This file cannot be ingested; ``str(error)`` is the reason shown to the user."""


@dataclass(frozen=True)
class PageText:
    number: int | None  # 1-based page of a PDF; None for formats without pages
    text: str


_MAX_NAME_CHARS = 255
_DRIVE = re.compile(r"^[A-Za-z]:$")
# Line and paragraph separators, and the bidirectional overrides that make "gpj.exe" read as "exe.jpg".
_UNSAFE_FORMAT = set("\u2028\u2029\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")


def safe_source_name(name: str) -> str:
    """A clean relative display name for an uploaded file's ``name``: no ``..``, no leading ``/``, no
    drive, no control characters (whitespace ones become a space, others ``_``), at most 255 characters.

    >>> safe_source_name("../../etc/evil.txt"), safe_source_name("C:\\\\Users\\\\me\\\\notes.md")
    ('etc/evil.txt', 'Users/me/notes.md')
    """
    cleaned = []
    for ch in str(name):
        if ch in "\t\n\r\v\f\u2028\u2029\x85":
            cleaned.append(" ")
        elif unicodedata.category(ch) == "Cc" or ch in _UNSAFE_FORMAT:
            cleaned.append("_")
        else:
            cleaned.append(ch)
    parts: list[str] = []
    for part in "".join(cleaned).replace("\\", "/").split("/"):
        part = " ".join(part.split())
        if part in {"", "."} or (not parts and _DRIVE.match(part)):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    safe = "/".join(parts)
    if len(safe) > _MAX_NAME_CHARS:  # keep the end: the file name and its suffix pick the loader
        safe = safe[-_MAX_NAME_CHARS:].lstrip("/ ")
    return safe or "unnamed"


def _content_streams(page) -> list:
    """The content streams of a PDF page (its /Contents: one stream or an array of them)."""
    from pypdf.generic import ArrayObject, StreamObject

    contents = page.get("/Contents")
    contents = None if contents is None else contents.get_object()
    parts = list(contents) if isinstance(contents, ArrayObject) else [contents]
    streams = [part.get_object() for part in parts if part is not None]
    return [stream for stream in streams if isinstance(stream, StreamObject)]


def _load_pdf(data: bytes, max_bytes: int | None = None,
              on_page: Callable[[int, int], None] | None = None) -> list[PageText]:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, LimitReachedError, PyPdfError

    # pypdf bounds each stream (75 MB) but keeps every stream it decoded: each page's content streams are let
    # go once read (memory), and all of them together may inflate to 20x the file size limit (work). No fixed
    # cap here, unlike DOCX: text PDFs' content inflates up to ~10 fold, and is never held all at once.
    text_limit = _text_limit(max_bytes)
    content_limit = INFLATE_RATIO * (max_bytes or DEFAULT_MAX_BYTES)

    def page_texts(pages) -> Iterator[PageText]:
        total = content = 0
        for number, page in enumerate(pages, 1):
            streams = _content_streams(page)
            content += sum(len(stream.get_data()) for stream in streams)
            if content > content_limit:
                raise IngestError(f"its pages' content inflates to more than {_mb(content_limit)} by page {number}: "
                                  f"refused as a likely decompression bomb (the limit is {INFLATE_RATIO}x "
                                  "RAG_MAX_FILE_MB)")
            text = (page.extract_text() or "").strip()
            for stream in streams:
                if getattr(stream, "decoded_self", None) is not None:
                    stream.decoded_self = None
            total += len(text)
            if on_page:
                on_page(number, len(pages))
            if total > text_limit:
                raise IngestError(f"its text runs over {text_limit:,} characters by page {number}, the most one "
                                  f"document may hold (as much as a text file of {_mb(text_limit)})")
            yield PageText(number, text)

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many PDFs carry only an owner password (print/copy limits) and open with an empty one.
            try:
                opened = reader.decrypt("")
            except Exception as error:  # noqa: BLE001 - unsupported algorithms raise various errors
                raise IngestError(f"encrypted PDF that cannot be opened ({error})") from error
            if not opened:
                raise IngestError("encrypted PDF: it needs a password; save an unprotected copy and ingest that")
        pages = list(page_texts(reader.pages))
    except IngestError:
        raise
    except FileNotDecryptedError as error:
        raise IngestError("encrypted PDF: it needs a password; save an unprotected copy and ingest that") from error
    except LimitReachedError as error:  # pypdf's guards against decompression bombs and runaway structures
        raise IngestError(f"the PDF goes past a safety limit of the PDF reader: {error}") from error
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError,
            RecursionError) as error:
        raise IngestError(f"not a readable PDF (corrupt or truncated): {error}") from error
    if not pages:
        raise IngestError("the PDF has no pages")
    texted = [page for page in pages if page.text]
    if not texted:
        raise IngestError(
            f"no text layer in any of its {len(pages)} pages (a scanned or image-only PDF?): run OCR on it first"
        )
    return texted


_BOMS = [  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"),
]


def _utf16_without_bom(sample: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' when NUL bytes sit in every other position, as in UTF-16 Western text."""
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even_nuls, odd_nuls = sample[0:2 * pairs:2].count(0), sample[1:2 * pairs:2].count(0)
    # ASCII-range characters are half of each pair; allow a few NULs on the other side (U+0100-U+01FF...).
    if odd_nuls >= pairs * 0.3 and even_nuls <= odd_nuls * 0.05:
        return "utf-16-le"
    if even_nuls >= pairs * 0.3 and odd_nuls <= even_nuls * 0.05:
        return "utf-16-be"
    return None


def _controls(text: str) -> int:
    return sum(1 for ch in text if ord(ch) < 32 and ch not in "\n\r\t\f")


def _decode_text(data: bytes) -> str:
    sample = data[:8192]
    bom, encoding = next(((bom, name) for bom, name in _BOMS if data.startswith(bom)), (b"", None))
    encoding = encoding or _utf16_without_bom(sample)
    if encoding:
        text = data[len(bom):].decode(encoding, errors="replace")
        # Any two bytes decode to some UTF-16 character: binary shows as undecodable, private or unassigned ones.
        odd = sum(1 for ch in text[:100_000] if ch == "\ufffd" or unicodedata.category(ch) in {"Cs", "Co", "Cn"})
        if odd + _controls(text[:100_000]) > max(8, min(len(text), 100_000) // 100):
            raise IngestError(f"binary data, not text (it starts like {encoding.upper()} text but is not)")
        return text
    if b"\x00" in sample:
        raise IngestError("binary data, not text (it contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Not UTF-8: the usual other encoding of Western text files is Windows-1252 / Latin-1.
        text = data.decode("cp1252", errors="replace")
    if _controls(text) > max(8, len(text) // 100):
        raise IngestError("binary data, not text (neither UTF-8, UTF-16 nor Latin-1)")
    return text


def _load_text(data: bytes, max_bytes: int | None = None) -> list[PageText]:
    return [PageText(None, _decode_text(data).strip())]


_HTML_BLOCKS = frozenset(["p", "div", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote",
                          "section", "article", "header", "footer", "dd", "dt", "title", "caption", "br", "hr",
                          "ul", "ol", "dl", "table", "main", "nav", "aside", "figure", "figcaption", "form",
                          "address", "details", "summary"])
_HTML_INVISIBLE = frozenset(["script", "style", "noscript", "template", "head", "svg"])


class _VisibleText(HTMLParser):
    """The visible text of an HTML page, a line per block, read as events: no tree, so its memory is the
    text's (a tree of a small file full of tags takes hundreds of times its size)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._hidden: list[str] = []  # the invisible elements we are inside, innermost last

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "body" and "head" in self._hidden:  # a <head> never closed ends where <body> starts
            del self._hidden[self._hidden.index("head"):]
        if tag in _HTML_INVISIBLE:
            self._hidden.append(tag)
        elif tag in _HTML_BLOCKS:  # line breaks at blocks only: inline markup (<b>, <a>) stays in its sentence
            self._break()

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in _HTML_BLOCKS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._hidden:
            del self._hidden[len(self._hidden) - 1 - self._hidden[::-1].index(tag):]
        elif tag in _HTML_BLOCKS:
            self._break()

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._line.append(data)

    def _break(self) -> None:
        line = " ".join("".join(self._line).split())
        self._line.clear()
        if line:
            self.lines.append(line)

    def close(self) -> None:
        super().close()
        self._break()


def _load_html(data: bytes, max_bytes: int | None = None) -> list[PageText]:
    text = _decode_text(data)
    parser = _VisibleText()
    for start in range(0, len(text), 1 << 16):
        parser.feed(text[start:start + (1 << 16)])
    parser.close()
    return [PageText(None, "\n".join(parser.lines))]


_NOT_DOCX = "not a readable DOCX (corrupt, or another format renamed)"


class _Inflated(io.RawIOBase):
    """A zip member read through a budget of inflated bytes: past it, an IngestError, whatever the
    member's header declares (zipfile stops at the declared size and checks the CRC; this does not rely on it)."""

    def __init__(self, member: io.BufferedIOBase, name: str, budget: list[int], limit: int) -> None:
        self._member, self._name, self._budget, self._limit = member, name, budget, limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = 1 << 16 if size is None or size < 0 else min(size, 1 << 16)
        data = self._member.read(size)
        self._budget[0] -= len(data)
        if self._budget[0] < 0:
            raise IngestError(f"{self._name} inflates to more than {_mb(self._limit)}: refused as a likely zip bomb "
                              f"(the limit is {INFLATE_RATIO}x RAG_MAX_FILE_MB, at most {_mb(MAX_INFLATED_BYTES)})")
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _zip_members(data: bytes) -> int | None:
    """The entry count the end record of a zip declares, read before zipfile builds an object per entry."""
    try:
        end = zipfile._EndRecData(io.BytesIO(data))  # private, but stable since Python 2; None if not a zip
    except (OSError, ValueError, IndexError):
        return None
    return None if not end else int(end[zipfile._ECD_ENTRIES_TOTAL])


def _docx_main_part(archive: zipfile.ZipFile, read) -> str:
    """The main document part named by _rels/.rels (word/document.xml in nearly every file)."""
    from lxml import etree

    names = set(archive.namelist())
    if "_rels/.rels" in names:
        try:
            rels = etree.fromstring(read("_rels/.rels"), etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError:
            rels = None
        for rel in [] if rels is None else rels:
            if str(rel.get("Type", "")).endswith("/officeDocument"):
                target = str(rel.get("Target", "")).lstrip("/")
                if target in names:
                    return target
    if "word/document.xml" in names:
        return "word/document.xml"
    raise IngestError(f"{_NOT_DOCX}: it has no word/document.xml")


_W_NAMESPACES = ("http://schemas.openxmlformats.org/wordprocessingml/2006/main",
                 "http://purl.oclc.org/ooxml/wordprocessingml/main")  # transitional and strict OOXML
_W = {f"{{{ns}}}{local}": local for ns in _W_NAMESPACES
      for local in ("p", "tbl", "tr", "tc", "r", "t", "tab", "ptab", "br", "cr", "noBreakHyphen")}
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_RUN_CHARS = {"tab": "\t", "ptab": "\t", "br": "\n", "cr": "\n", "noBreakHyphen": "-"}
_RUN_TEXT = frozenset({"t", *_RUN_CHARS})
_JOIN: dict[str, Callable[[list[str]], str]] = {
    "p": "".join,
    "tbl": "\n".join,  # its rows
    "tr": " | ".join,  # its cells
    "tc": lambda paragraphs: "\n".join(paragraphs).strip(),
}


def _docx_blocks(stream: io.RawIOBase, text_limit: int) -> list[str]:
    """Paragraphs and table rows ("cell | cell") of a WordprocessingML body, in document order, read as a
    stream of events: each element is dropped once read, so memory holds the text and one path of the tree."""
    from lxml import etree

    blocks: list[str] = []
    frames: list[tuple[str, list[str]]] = []  # open paragraphs, tables, rows and cells, innermost last
    fallback = 0  # inside mc:Fallback: a second copy (VML) of a text box already read from mc:Choice
    chars = 0
    events = etree.iterparse(stream, events=("start", "end"), resolve_entities=False, no_network=True,
                             load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True)
    for event, elem in events:
        kind = _W.get(elem.tag)
        if event == "start":
            if kind in _JOIN:
                frames.append((kind, []))
            elif elem.tag == _MC_FALLBACK:
                fallback += 1
            continue
        if elem.tag == _MC_FALLBACK:
            fallback -= 1
        elif kind in _JOIN:
            _, items = frames.pop()
            text = _JOIN[kind](items)
            if not frames:
                blocks.append(text)
            elif frames[-1][0] == "p":  # a text box's paragraph, or a table inside one
                if text.strip():
                    frames[-1][1].append(f"\n{text}\n")
            else:
                frames[-1][1].append(text)
        elif kind in _RUN_TEXT and not fallback and frames and frames[-1][0] == "p":
            parent = elem.getparent()
            if kind == "t" or (parent is not None and _W.get(parent.tag) == "r"):  # not a tab stop of w:pPr
                piece = (elem.text or "") if kind == "t" else _RUN_CHARS[kind]
                chars += len(piece)
                if chars > text_limit:
                    raise IngestError(f"its text runs over {text_limit:,} characters, the most one document "
                                      f"may hold (as much as a text file of {_mb(text_limit)})")
                frames[-1][1].append(piece)
        # Drop what has been read: the element's content and the siblings before it.
        elem.clear(keep_tail=False)
        parent = elem.getparent()
        if parent is not None:
            while elem.getprevious() is not None:
                del parent[0]
    return blocks


def _load_docx(data: bytes, max_bytes: int | None = None) -> list[PageText]:
    from lxml import etree

    limit = inflate_limit(max_bytes)
    members = _zip_members(data)
    if members is not None and members > MAX_ZIP_MEMBERS:
        raise IngestError(f"{_NOT_DOCX}: a zip of {members:,} parts (a document has far fewer)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise IngestError(f"{_NOT_DOCX}: {error}") from error
    # The sizes the XML parts declare, each and in all, before inflating anything. Media (images, embedded
    # files) are never inflated here, so their sizes cannot hurt; counting them would refuse documents full of
    # well-compressing images.
    xml_parts = [info for info in infos if info.filename.lower().endswith((".xml", ".rels"))]
    for info in xml_parts:
        if info.file_size > limit:
            raise IngestError(f"{info.filename} declares {info.file_size / 1e6:,.0f} MB uncompressed, over the "
                              f"limit of {_mb(limit)}: refused as a likely zip bomb")
    declared = sum(info.file_size for info in xml_parts)
    if declared > limit:
        raise IngestError(f"its XML parts declare {declared / 1e6:,.0f} MB uncompressed in all, over the limit of "
                          f"{_mb(limit)}: refused as a likely zip bomb")
    budget = [limit]  # the bytes actually inflated, over all parts read

    def open_member(name: str) -> io.BufferedReader:
        return io.BufferedReader(_Inflated(archive.open(name), name, budget, limit), buffer_size=1 << 16)

    def read(name: str) -> bytes:
        with open_member(name) as member:
            return member.read()

    try:
        main = _docx_main_part(archive, read)
        with open_member(main) as stream:
            blocks = _docx_blocks(stream, _text_limit(max_bytes))
    except IngestError:
        raise
    except etree.XMLSyntaxError as error:
        if "limit" in str(error).lower():  # libxml2's guards: a text node over 10 MB, nesting too deep
            raise IngestError(f"its XML goes past a safety limit of the XML reader ({error})") from error
        raise IngestError(f"{_NOT_DOCX}: its XML is malformed ({error})") from error
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, ValueError, EOFError) as error:
        raise IngestError(f"{_NOT_DOCX}: {error}") from error  # RuntimeError: an encrypted zip member
    return [PageText(None, "\n".join(block for block in blocks if block.strip()))]


# Each loader: (bytes, max_bytes) -> pages; max_bytes sizes the limits on what the bytes may expand to.
LOADERS: dict[str, Callable[[bytes, int | None], list[PageText]]] = {
    ".pdf": _load_pdf,
    ".txt": _load_text,
    ".text": _load_text,
    ".md": _load_text,
    ".markdown": _load_text,
    ".html": _load_html,
    ".htm": _load_html,
    ".docx": _load_docx,
}
SUPPORTED_SUFFIXES = tuple(sorted(LOADERS))


def load_document(name: str, data: bytes, *, max_bytes: int | None = None,
                  on_page: Callable[[int, int], None] | None = None) -> list[PageText]:
    """The non-empty pages of the file ``name`` whose content is ``data``; ``max_bytes`` (RAG_MAX_FILE_MB)
    bounds the file and what it may expand to (see :func:`inflate_limit`). ``on_page(done, total)`` follows
    a PDF's pages as they are read (a 1,500-page one takes minutes)."""
    suffix = PurePath(name).suffix.lower()
    loader = LOADERS.get(suffix)
    if loader is None:
        raise IngestError(
            f"unsupported file type '{suffix or '(none)'}': use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if max_bytes is not None and len(data) > max_bytes:
        raise IngestError(f"too large: {len(data) / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:g} MB")
    if not data.strip():
        raise IngestError("empty file")
    read = loader(data, max_bytes, on_page) if loader is _load_pdf and on_page else loader(data, max_bytes)
    pages = [page for page in read if page.text]
    if not pages:
        raise IngestError("no text found in the file")
    return pages
