"""The app behind the API's keys, and every user string on screen as text (issue 22), through AppTest against a
real temporary store, real keys (api.keys.KeyStore) and the real models.

The sign-in rule is the API's: open on loopback while no key exists; once one does (or on any other bind),
a key per browser session, that key's collections only, upload and delete only with write scope, and a
non-loopback bind with no key serves nothing but the command that creates one. The walk feeds every page
file names and document text that Markdown or HTML would turn into a link, an image, LaTeX, bold or a colour,
and asserts that each Markdown-rendering element shows them escaped (or that they sit in a text element).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from streamlit import config
from streamlit.testing.v1 import AppTest

from api.keys import KeyStore
from app_pages import state
from app_pages.rendering import escape_md
from rag.settings import Settings
from tests.helpers import free_port, run_app as run

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 180

HOSTILE = ["[click](http://x)", "<img src=x onerror=alert(1)>", "$x^2$", "**bold**", ":red[x]", "`tick`"]
# In a file name a slash separates folders (ingest/names.py), so the name's link has none
NAME_HOSTILE = ["[click](x.html)", *HOSTILE[1:]]
NAMES = [f"{h} doc{i}.txt" for i, h in enumerate(NAME_HOSTILE)] + ["two\nlines.txt"]
TEXT = ("The battery charges in four hours. " + " ".join(HOSTILE) + "\nA second line: [click](http://x) again, "
        "<img src=x onerror=alert(1)> and $x^2$ and **bold** and :red[x] and `tick`.")
# Elements whose strings Streamlit draws as Markdown (labels of every widget and block too)
MARKDOWN_TYPES = {"markdown", "caption", "title", "header", "subheader", "error", "warning", "info", "success",
                  "toast", "metric", "progress"}
# Where a string is drawn as it is: text, code, table cells, the options of a selectbox or multiselect
TEXT_TYPES = {"text", "code", "dataframe", "table", "selectbox", "multiselect", "chat_input", "text_input"}


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    store = tmp_path / "store"
    monkeypatch.setenv("RAG_DATA_DIR", str(store))
    monkeypatch.setenv("RAG_SAMPLE_DIR", "")  # no first-start samples: these tests bring their own documents
    monkeypatch.setenv("RAG_RERANKER", "none")
    return store


@pytest.fixture
def bind() -> Iterator:
    """Set Streamlit's server.address as `--server.address` would (its own config API), restored afterwards."""
    before = config.get_option("server.address")

    def set_address(address: str) -> None:
        config.set_option("server.address", address)

    set_address("127.0.0.1")
    yield set_address
    config.set_option("server.address", before)


def start(page: str | None = None) -> AppTest:
    at = run(AppTest.from_file(APP, default_timeout=TIMEOUT))
    if page:
        run(at.switch_page(f"app_pages/{page}.py"))
    return at


def plain(markdown: str) -> str:
    """What the reader sees of escaped Markdown: the backslash escapes gone."""
    return re.sub(r"\\(.)", r"\1", markdown)


def nodes(node) -> Iterator:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from nodes(child)


def screen(at: AppTest) -> tuple[list[str], list[str]]:
    """Every string on screen: (drawn as Markdown, drawn as text)."""
    markdown, text = [], []
    for node in nodes(at._tree):
        kind = getattr(node, "type", "")
        assert kind != "html", "no page draws HTML"
        assert not getattr(node, "allow_html", False), f"a {kind} element allows HTML"
        for attribute in ("label", "help", "placeholder"):
            value = getattr(node, attribute, None)
            if isinstance(value, str) and value:
                (text if attribute == "placeholder" else markdown).append(value)
        if kind == "radio":
            markdown += [str(option) for option in node.options]
        if kind in ("selectbox", "multiselect"):
            text += [str(option) for option in node.options]
        if kind in MARKDOWN_TYPES:
            markdown.append(str(node.text if kind == "progress" else node.value))
        elif kind == "dataframe":
            text += [str(cell) for cell in node.value.to_numpy().ravel()]
        elif kind in ("text", "code"):
            text.append(str(node.value))
    return markdown, text


_MD = MarkdownIt("commonmark")


def assert_literal(at: AppTest, expect: list[str] | None = None) -> None:
    """No Markdown string holds a hostile string unescaped, none parses into a link, an image or HTML, and
    each string of ``expect`` was on screen (escaped in Markdown, or in a text element)."""
    markdown, text = screen(at)
    for value in markdown:
        for hostile in HOSTILE + NAME_HOSTILE[:1]:
            assert hostile not in value, f"{hostile!r} drawn as Markdown in {value!r}"
        tokens = [token for block in _MD.parse(value) for token in [block, *(block.children or [])]]
        assert not {token.type for token in tokens} & {"link_open", "image"}, f"a link or an image in {value!r}"
        assert not [t for t in tokens if t.type.startswith("html") and "<img" in t.content], value
        assert not re.search(r"(?<!\\)\$[^$\s]", value), f"unescaped LaTeX in {value!r}"
        assert not re.search(r"(?<!\\):[a-z]+\[", value), f"an unescaped colour or directive in {value!r}"
    shown = "\n".join(markdown + text)
    for hostile in expect or []:
        assert escape_md(hostile) in shown or hostile in "\n".join(text), f"{hostile!r} never reached the screen"


# ---- the gate ------------------------------------------------------------------------------------
def test_loopback_without_keys_stays_open(data_dir: Path, bind) -> None:
    at = start("library")
    assert not [t for t in at.text_input if t.label == "API key"]
    assert at.file_uploader and "Ask your documents" not in [t.value for t in at.title]


def test_a_non_loopback_bind_without_keys_serves_only_the_command_that_creates_one(data_dir: Path, bind) -> None:
    for address in ("0.0.0.0", ""):  # "" is Streamlit's own default: every interface
        bind(address)
        at = start()
        assert "rerank-rag keys create" in at.error[0].value
        assert not at.text_input and not at.chat_input and not at.file_uploader  # no page ran
    bind("127.0.0.1")
    assert start().chat_input  # loopback again: open


def test_keys_that_cannot_be_read_let_nobody_in(data_dir: Path, bind, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_CHROMA_HOST", "127.0.0.1")  # a Chroma server that is not there
    monkeypatch.setenv("RAG_CHROMA_PORT", str(free_port()))
    at = start()
    assert "nobody can sign in" in at.error[0].value and "cannot reach the Chroma server" in plain(at.error[0].value)
    assert not at.chat_input and not at.text_input


def keys(store: Path) -> tuple[str, str, str]:
    keystore = KeyStore(Settings(data_dir=store))
    _, reader = keystore.create("reader", collection="default", scope="read")
    _, writer = keystore.create("writer", collection="*", scope="write")
    _, other = keystore.create("other", collection="other", scope="write")
    return reader, writer, other


def sign_in(at: AppTest, token: str) -> AppTest:
    form = next(t for t in at.text_input if t.label == "API key")
    assert form.proto.type == form.proto.PASSWORD  # typed as dots, never shown
    form.set_value(token)
    return run(next(b for b in at.button if b.label == "Sign in").click())


def assert_never_shown(at: AppTest, *tokens: str) -> None:
    markdown, text = screen(at)
    for token in tokens:
        assert not any(token in value for value in markdown + text)
        assert token not in repr(at.session_state)  # the session keeps its hash only


def test_once_a_key_exists_each_session_signs_in_and_sees_only_its_keys_collections(data_dir: Path,
                                                                                    bind) -> None:
    reader, writer, other = keys(data_dir)
    for address in ("127.0.0.1", "0.0.0.0"):
        bind(address)
        at = start()
        assert [t.label for t in at.text_input] == ["API key"] and not at.chat_input
        sign_in(at, "rr_not-a-key")
        assert "not a valid key" in at.error[0].value and not at.chat_input
        sign_in(at, reader)
        assert at.chat_input  # the Ask page
        assert_never_shown(at, reader, "rr_not-a-key")
    run(at.switch_page("app_pages/library.py"))
    assert not at.file_uploader and not [b for b in at.button if b.label == "Delete"]
    assert any("read scope" in i.value for i in at.info)
    assert [s.options for s in at.selectbox if s.label == "Collection"] == [["default"]]
    assert not [t for t in at.text_input if t.label == "New collection"]  # creating one is a write
    assert any("'reader'" in c.value and "read access" in c.value for c in at.sidebar.caption)
    run(at.switch_page("app_pages/ask.py"))
    at.chat_input[0].set_value("How long does the battery take to charge?")
    run(at)
    assert len(at.session_state["chat"]) == 1
    run(next(b for b in at.sidebar.button if b.label == "Sign out").click())
    assert [t.label for t in at.text_input] == ["API key"]
    assert "chat" not in at.session_state  # the next key never sees what this one asked

    sign_in(at, other)  # a write key for one collection: that one only, never the default
    run(at.switch_page("app_pages/library.py"))
    assert [s.options for s in at.selectbox if s.label == "Collection"] == [["other"]]
    assert at.file_uploader and not [t for t in at.text_input if t.label == "New collection"]
    assert_never_shown(at, other)


MODEL_FIELDS = {"settings": ["Embedding model", "…or a local folder / hub id", "Base URL",
                               "API key for this base URL (optional)", "Model"],
                "compare": ["Left: or a reranker folder", "Right: or a reranker folder"]}


def test_folders_hub_ids_and_llm_servers_need_an_admin_key(data_dir: Path, bind) -> None:
    keystore = KeyStore(Settings(data_dir=data_dir))
    _, writer = keystore.create("writer", collection="*", scope="write")
    _, admin = keystore.create("admin", collection="*", scope="admin")
    for token, disabled in ((writer, True), (admin, False)):
        at = sign_in(start(), token)
        for page, labels in MODEL_FIELDS.items():
            run(at.switch_page(f"app_pages/{page}.py"))
            fields = {t.label: t.disabled for t in at.text_input}
            assert [fields[label] for label in labels] == [disabled] * len(labels), (page, fields)
        run(at.switch_page("app_pages/evaluate.py"))
        assert next(s for s in at.selectbox if s.label == "Dataset").proto.accept_new_options is not disabled


def test_without_an_admin_key_only_rerankers_the_server_runs_are_offered(data_dir: Path, bind) -> None:
    from rag import catalog

    keystore = KeyStore(Settings(data_dir=data_dir))
    _, writer = keystore.create("writer", collection="*", scope="write")
    _, admin = keystore.create("admin", collection="*", scope="admin")
    not_loaded = "BAAI/bge-reranker-v2-gemma"  # a catalog entry no test loads: picking it would fetch it
    assert catalog.lookup(not_loaded) is not None
    for token, is_admin in ((writer, False), (admin, True)):
        at = sign_in(start(), token)
        run(at.switch_page("app_pages/settings.py"))
        options = next(s for s in at.selectbox if s.label == "Reranker").options
        assert (not_loaded in options) is is_admin and ("none" in options), options
        assert any(o.startswith("another model") for o in options) is is_admin
        run(at.switch_page("app_pages/compare.py"))
        sides = [s.options for s in at.selectbox if s.label.endswith(": reranker")]
        # another test in this process may have loaded the shipped student already: then a writer may use it too
        offered = is_admin or catalog.SHIPPED_RERANKER in state.loaded_rerankers()
        assert len(sides) == 2 and all((catalog.SHIPPED_RERANKER in side) is offered for side in sides), sides
        run(at.switch_page("app_pages/evaluate.py"))
        grid = next(c for c in at.checkbox if c.label.startswith("Every reranker available here"))
        assert grid.disabled is not is_admin


def test_a_write_key_uploads_and_deletes_and_a_revoked_key_signs_out(data_dir: Path, bind) -> None:
    reader, writer, _ = keys(data_dir)
    at = start()
    sign_in(at, writer)
    run(at.switch_page("app_pages/library.py"))
    at.file_uploader[0].set_value(("notes.txt", b"The battery charges in four hours.", "text/plain"))
    run(at)
    run(next(b for b in at.button if b.label.startswith("Ingest")).click())
    assert any("ok" in s.value for s in at.success)
    assert [t for t in at.text_input if t.label == "New collection"]
    run(at)  # a rerun: the document list is drawn from the store
    target = next(s for s in at.selectbox if s.label == "Delete a document")
    run(target.set_value("notes.txt"))
    run(next(b for b in at.button if b.label == "Delete").click())
    assert any("Deleted notes.txt" in plain(s.value) for s in at.success)
    assert_never_shown(at, writer)

    KeyStore(Settings(data_dir=data_dir)).revoke("writer")
    time.sleep(2.1)  # the app's KeyStore re-reads the keys every 2 s
    run(at)
    assert any("revoked" in w.value for w in at.warning) and [t.label for t in at.text_input] == ["API key"]


# ---- hostile strings on every page --------------------------------------------------------------
def test_every_page_shows_hostile_file_names_and_text_as_text(data_dir: Path, bind, plumbing_reranker: str,
                                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAG_RERANKER", plumbing_reranker)  # reranked: badges, movements, the quoted spans
    at = start("library")
    at.file_uploader[0].set_value([(name, TEXT.encode(), "text/plain") for name in NAMES])
    run(at)
    run(next(b for b in at.button if b.label.startswith("Ingest")).click())
    assert len([s for s in at.success if "ok" in s.value]) == len(NAMES), [e.value for e in at.error]
    assert_literal(at, NAME_HOSTILE)  # the per-file lines and the progress line
    run(at)  # the documents table and the delete list, drawn from the store
    assert_literal(at, NAME_HOSTILE)

    run(at.switch_page("app_pages/ask.py"))
    assert_literal(at)
    at.chat_input[0].set_value("How long does the battery take to charge? [click](http://x) **bold**")
    run(at)
    assert_literal(at, HOSTILE)  # the answer quotes the text; sources, expanders, table cells name the files
    assert any("[click](http://x)" in t for t in screen(at)[1])  # the question itself, as text
    answer_mark = next(b for b in at.get("button_group") if b.label == "The answer")
    run(answer_mark.set_value(answer_mark.options[0]))  # a mark: the Feedback page lists its question
    run(at.switch_page("app_pages/feedback.py"))
    assert_literal(at, ["[click](http://x)"])

    run(at.switch_page("app_pages/compare.py"))
    at.text_input[0].set_value("How long does the battery take to charge? $x^2$")
    folder = tmp_path / "[click](x.html) **reranker**"  # a reranker folder's name heads its side
    folder.symlink_to(plumbing_reranker, target_is_directory=True)
    next(t for t in at.text_input if t.label == "Left: or a reranker folder").set_value(str(folder))
    run(next(b for b in at.button if b.label == "Compare").click())
    assert_literal(at, HOSTILE + ["[click](x.html) **reranker**"])

    run(at.switch_page("app_pages/settings.py"))
    next(s for s in at.selectbox if s.label == "Reranker").set_value("another model (folder or hub id)…")
    next(t for t in at.text_input if t.label.startswith("…or a local folder")).set_value("/nowhere/[click](http://x)")
    next(t for t in at.text_input if t.label == "Model").set_value("<img src=x onerror=alert(1)> :red[x]")
    run(next(b for b in at.button if b.label == "Apply").click())
    assert_literal(at, ["[click](http://x)"])  # the error names the folder that did not load
    run(next(b for b in at.button if b.label.startswith("Reset")).click())

    run(at.switch_page("app_pages/evaluate.py"))
    mode = next(r for r in at.radio if r.label == "Questions from")
    mode.set_value("This collection ('default') with a questions file")
    run(at)
    at.file_uploader[0].set_value(("[click](http:x) `q`.jsonl", b'{"question": "**bold** $x^2$ battery?", '
                                   b'"expected_source": "[click](x.html) doc0.txt"}\n', "application/json"))
    run(next(b for b in at.button if b.label == "Run the evaluation").click())
    assert [plain(h.value) for h in at.subheader] == ["collection:default ([click](http:x) `q`.jsonl, by source)"]
    assert_literal(at, ["`q`"])


@pytest.mark.parametrize("draw", ["st.success(TEXT)", "st.caption(TEXT)", "st.button(TEXT)",
                                  "st.expander(TEXT)", "st.radio('r', [TEXT])", "st.progress(0.5, text=TEXT)"])
def test_the_walk_sees_a_hostile_string_drawn_as_markdown(draw: str) -> None:
    at = AppTest.from_string(f"import streamlit as st\nTEXT = {HOSTILE[0]!r}\n{draw}\n").run()
    with pytest.raises(AssertionError, match="drawn as Markdown"):
        assert_literal(at)
    escaped = AppTest.from_string(f"import streamlit as st\nTEXT = {escape_md(HOSTILE[0])!r}\n{draw}\n").run()
    assert_literal(escaped, HOSTILE[:1])
