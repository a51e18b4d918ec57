"""One rule for a question from a person, wherever it comes in (CLI, API, app): control characters go
first, then it must be text (no lone UTF-16 surrogate), hold something visible, and not be longer than
``Settings.max_question_chars``."""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 control characters but tab and newline: a question of NUL bytes is empty, not a question.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Half of a UTF-16 pair alone (JSON's "\ud800"): not a character, and the tokenizers refuse it with a TypeError.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Whitespace, and the invisible format characters (zero-width space and joiners, BOM, soft hyphen): a text of
# these alone shows nothing. They stay inside a text, where joiners shape some scripts and emoji.
_INVISIBLE = frozenset({"Zs", "Zl", "Zp", "Cf"})


def strip_controls(text: str) -> str:
    return _CONTROL.sub("", text)


def check_text(text: str, what: str) -> str:
    """``text`` as it is; ValueError, in plain words, when it holds a lone surrogate, which is not text."""
    if match := _SURROGATE.search(text):
        raise ValueError(f"{what} holds a lone UTF-16 surrogate (U+{ord(match.group()):04X}) at character "
                         f"{match.start() + 1:,}, which is not text: send UTF-8, or both halves of an escaped pair")
    return text


def is_blank(text: str) -> bool:
    """Whether ``text`` shows nothing: empty, or whitespace and invisible format characters only."""
    return all(ch.isspace() or unicodedata.category(ch) in _INVISIBLE for ch in text)


def clean_question(text: str, max_chars: int, what: str = "the question") -> str:
    """``text`` without control characters and outer whitespace; ValueError, in plain words, when it is
    empty (or shows nothing), not text, or over ``max_chars``."""
    cleaned = check_text(strip_controls(text or ""), what).strip()
    if is_blank(cleaned):
        raise ValueError(f"{what} is empty" if not cleaned else f"{what} shows nothing: it is only invisible "
                         "characters (spaces, zero-width spaces)")
    if len(cleaned) > max_chars:
        raise ValueError(f"{what} is {len(cleaned):,} characters; the limit is {max_chars:,} (RAG_MAX_QUESTION_CHARS)")
    return cleaned
