"""Plain text, Markdown and HTML: bytes decoded (BOMs, UTF-16 without one, UTF-8, else Windows-1252), binary
refused; HTML read by an event parser (a tree of a small file full of tags takes hundreds of times its size)."""

from __future__ import annotations

import unicodedata
from html.parser import HTMLParser

from ingest.document import IngestError, PageText

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


def decode_text(data: bytes) -> str:
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


def load_text(data: bytes, max_bytes: int | None = None) -> list[PageText]:
    return [PageText(None, decode_text(data).strip())]


_HTML_BLOCKS = frozenset(["p", "div", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote",
                          "section", "article", "header", "footer", "dd", "dt", "title", "caption", "br", "hr",
                          "ul", "ol", "dl", "table", "main", "nav", "aside", "figure", "figcaption", "form",
                          "address", "details", "summary"])
_HTML_INVISIBLE = frozenset(["script", "style", "noscript", "template", "head", "svg"])
_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}


class _VisibleText(HTMLParser):
    """The visible text of an HTML page, a line per block, read as events: no tree, so its memory is the
    text's (a tree of a small file full of tags takes hundreds of times its size)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._hidden: list[str] = []  # the invisible elements we are inside, innermost last
        self.heading_lines: dict[int, int] = {}  # index of a line in ``lines`` -> its heading level (<h1>: 1)
        self._heading = 0  # the level of the <hN> we are in, 0 outside one

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "body" and "head" in self._hidden:  # a <head> never closed ends where <body> starts
            del self._hidden[self._hidden.index("head"):]
        if tag in _HTML_INVISIBLE:
            self._hidden.append(tag)
        elif tag in _HTML_BLOCKS:  # line breaks at blocks only: inline markup (<b>, <a>) stays in its sentence
            self._break()
            if tag in _HTML_HEADINGS:
                self._heading = _HTML_HEADINGS[tag]

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in _HTML_BLOCKS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._hidden:
            del self._hidden[len(self._hidden) - 1 - self._hidden[::-1].index(tag):]
        elif tag in _HTML_BLOCKS:
            self._break()
            if tag in _HTML_HEADINGS:
                self._heading = 0

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._line.append(data)

    def _break(self) -> None:
        line = " ".join("".join(self._line).split())
        self._line.clear()
        if line:
            if self._heading:
                self.heading_lines[len(self.lines)] = self._heading
            self.lines.append(line)

    def close(self) -> None:
        super().close()
        self._break()


def load_html(data: bytes, max_bytes: int | None = None) -> list[PageText]:
    text = decode_text(data)
    parser = _VisibleText()
    for start in range(0, len(text), 1 << 16):
        parser.feed(text[start:start + (1 << 16)])
    parser.close()
    offsets, offset = [], 0
    for line in parser.lines:
        offsets.append(offset)
        offset += len(line) + 1
    headings = tuple((offsets[i], level, parser.lines[i]) for i, level in sorted(parser.heading_lines.items()))
    return [PageText(None, "\n".join(parser.lines), headings=headings)]
