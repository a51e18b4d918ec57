"""A clean display name for an uploaded file: the document's identity, shown in every page and answer."""

from __future__ import annotations

import re
import unicodedata

_MAX_NAME_CHARS = 255
_DRIVE = re.compile(r"^[A-Za-z]:$")
# A backslash separates folders only in a Windows path: a drive (C:\), a share (\\server) or a ..\ climb.
# Anywhere else it is a character of the name ("$x^2$ \(latex\).txt" stays one file, not three folders).
_WINDOWS_PATH = re.compile(r"^([A-Za-z]:\\|\\\\|\.\.\\)")
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
    joined = "".join(cleaned)
    if _WINDOWS_PATH.match(joined):
        joined = joined.replace("\\", "/")
    for part in joined.split("/"):
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
