"""DOCX: paragraphs and table rows of the main document part, read as a stream within a budget of inflated bytes.

A DOCX (a zip) may inflate to at most :func:`ingest.document.inflate_limit` bytes, checked on the sizes its parts
declare and on the bytes actually inflated, and its XML is read as a stream, never as a whole tree.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable

from ingest.document import INFLATE_RATIO, MAX_INFLATED_BYTES, IngestError, PageText, inflate_limit, mb, text_limit

MAX_ZIP_MEMBERS = 10_000  # a DOCX has tens of parts, one per image beyond that

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
            raise IngestError(f"{self._name} inflates to more than {mb(self._limit)}: refused as a likely zip bomb "
                              f"(the limit is {INFLATE_RATIO}x RAG_MAX_FILE_MB, at most {mb(MAX_INFLATED_BYTES)})")
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
_P_STYLE = {f"{{{ns}}}pStyle": f"{{{ns}}}val" for ns in _W_NAMESPACES}  # a paragraph's style, and its name


def _heading_level(style: str) -> int | None:
    """The heading level of a paragraph style id: Title 0, Heading1 (or "heading 1") 1, ...; None for others."""
    if style.casefold() == "title":
        return 0
    match = re.fullmatch(r"(?i)heading\s*(\d)", style)
    return int(match.group(1)) if match else None
_RUN_CHARS = {"tab": "\t", "ptab": "\t", "br": "\n", "cr": "\n", "noBreakHyphen": "-"}
_RUN_TEXT = frozenset({"t", *_RUN_CHARS})
_JOIN: dict[str, Callable[[list[str]], str]] = {
    "p": "".join,
    "tbl": "\n".join,  # its rows
    "tr": " | ".join,  # its cells
    "tc": lambda paragraphs: "\n".join(paragraphs).strip(),
}


def _docx_blocks(stream: io.RawIOBase, max_chars: int, headings: dict[int, int] | None = None) -> list[str]:
    """Paragraphs and table rows ("cell | cell") of a WordprocessingML body, in document order, read as a
    stream of events: each element is dropped once read, so memory holds the text and one path of the tree.
    ``headings`` is filled with the index in the blocks of each paragraph styled Title (level 0) or HeadingN (N)."""
    from lxml import etree

    blocks: list[str] = []
    level: int | None = None  # the heading level of the body paragraph being read, None if it is none
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
                if level is not None and headings is not None and text.strip():
                    headings[len(blocks)] = level
                level = None
                blocks.append(text)
            elif frames[-1][0] == "p":  # a text box's paragraph, or a table inside one
                if text.strip():
                    frames[-1][1].append(f"\n{text}\n")
            else:
                frames[-1][1].append(text)
        elif elem.tag in _P_STYLE and len(frames) == 1 and frames[0][0] == "p":
            level = _heading_level(str(elem.get(_P_STYLE[elem.tag], "")))
        elif kind in _RUN_TEXT and not fallback and frames and frames[-1][0] == "p":
            parent = elem.getparent()
            if kind == "t" or (parent is not None and _W.get(parent.tag) == "r"):  # not a tab stop of w:pPr
                piece = (elem.text or "") if kind == "t" else _RUN_CHARS[kind]
                chars += len(piece)
                if chars > max_chars:
                    raise IngestError(f"its text runs over {max_chars:,} characters, the most one document "
                                      f"may hold (as much as a text file of {mb(max_chars)})")
                frames[-1][1].append(piece)
        # Drop what has been read: the element's content and the siblings before it.
        elem.clear(keep_tail=False)
        parent = elem.getparent()
        if parent is not None:
            while elem.getprevious() is not None:
                del parent[0]
    return blocks


def load_docx(data: bytes, max_bytes: int | None = None) -> list[PageText]:
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
                              f"limit of {mb(limit)}: refused as a likely zip bomb")
    declared = sum(info.file_size for info in xml_parts)
    if declared > limit:
        raise IngestError(f"its XML parts declare {declared / 1e6:,.0f} MB uncompressed in all, over the limit of "
                          f"{mb(limit)}: refused as a likely zip bomb")
    budget = [limit]  # the bytes actually inflated, over all parts read

    def open_member(name: str) -> io.BufferedReader:
        return io.BufferedReader(_Inflated(archive.open(name), name, budget, limit), buffer_size=1 << 16)

    def read(name: str) -> bytes:
        with open_member(name) as member:
            return member.read()

    try:
        main = _docx_main_part(archive, read)
        with open_member(main) as stream:
            blocks = _docx_blocks(stream, text_limit(max_bytes), heading_at := {})
    except IngestError:
        raise
    except etree.XMLSyntaxError as error:
        if "limit" in str(error).lower():  # libxml2's guards: a text node over 10 MB, nesting too deep
            raise IngestError(f"its XML goes past a safety limit of the XML reader ({error})") from error
        raise IngestError(f"{_NOT_DOCX}: its XML is malformed ({error})") from error
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, ValueError, EOFError) as error:
        raise IngestError(f"{_NOT_DOCX}: {error}") from error  # RuntimeError: an encrypted zip member
    kept = [(i, block) for i, block in enumerate(blocks) if block.strip()]
    headings, offset = [], 0
    for i, block in kept:
        if i in heading_at:
            headings.append((offset, heading_at[i], " ".join(block.split())))
        offset += len(block) + 1
    return [PageText(None, "\n".join(block for _, block in kept), headings=tuple(headings))]


# Each loader: (bytes, max_bytes) -> pages; max_bytes sizes the limits on what the bytes may expand to.
