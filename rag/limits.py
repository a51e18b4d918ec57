"""One rule for a question from a person, wherever it comes in (CLI, API, app): control characters go
first, then it must not be empty and not be longer than ``Settings.max_question_chars``."""

from __future__ import annotations

import re

# C0 and C1 control characters but tab and newline: a question of NUL bytes is empty, not a question.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_controls(text: str) -> str:
    return _CONTROL.sub("", text)


def clean_question(text: str, max_chars: int, what: str = "the question") -> str:
    """``text`` without control characters and outer whitespace; ValueError, in plain words, when it is
    empty or over ``max_chars``."""
    cleaned = strip_controls(text or "").strip()
    if not cleaned:
        raise ValueError(f"{what} is empty")
    if len(cleaned) > max_chars:
        raise ValueError(f"{what} is {len(cleaned):,} characters; the limit is {max_chars:,} (RAG_MAX_QUESTION_CHARS)")
    return cleaned
