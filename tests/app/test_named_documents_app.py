"""The Ask page says which documents a question named and the first stage searched first (issue 33)."""

from __future__ import annotations

from tests.app.apptest import ask, start, texts


def test_ask_shows_the_documents_the_question_named(reranked: str) -> None:
    at = start()
    ask(at, "How many days of paid holiday do employees get?")
    shown = [text for text in texts(at.caption) if "the question names" in text]
    assert shown and "employee-handbook.md" in shown[0] and "employees" in shown[0]
    ask(at, "How long does the battery take to charge?")  # names no document: no line of its own in the chat
    assert [text for text in texts(at.caption) if "the question names" in text] == shown
