"""Running the app in-process with AppTest: start it on a page, ask, and read what the user reads."""

from __future__ import annotations

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 180  # models load on the first run of the test process; the machine may be busy


def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def raw(elements) -> list[str]:
    return [str(e.value) for e in elements]


def texts(elements) -> list[str]:
    """Element values with markdown's backslash escapes removed: what the user reads."""
    return [re.sub(r"\\(.)", r"\1", str(e.value)) for e in elements]


def number(at: AppTest, label_start: str):
    return next(n for n in at.number_input if n.label.startswith(label_start))


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert_clean(at)
    return at
