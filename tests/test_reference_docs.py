"""The pages that describe code (docs/settings.md, docs/cli.md) are regenerated from it and compared, and every
setting says what it does in one sentence without measured figures (those live in BENCHMARKS.md)."""

from __future__ import annotations

import re

import pytest
from pydantic import Field

from rag import reference_docs
from rag.settings import Settings

# Measured figures: a share (60 %), a score or difference written from its point (.641, +.028), a speed-up
# (2.8x) or a time (265 ms). Plain values such as 256 tokens or 0.7 are what a knob is, not a measurement.
FIGURE = re.compile(r"\d\s*%|(?<![\w.])[+\-−]?\.\d+|\b\d+(\.\d+)?x\b|\b\d+\s*ms\b")


def test_the_generated_pages_match_the_code() -> None:
    stale = reference_docs.stale_pages(write=False)
    assert not stale, (f"{[str(path) for path in stale]} differ from the code: run "
                       ".venv/bin/python -m rag.reference_docs and commit the pages")


def test_the_check_sees_a_page_that_differs(tmp_path, monkeypatch) -> None:
    page = tmp_path / "settings.md"
    page.write_text("# Settings\n\nprose\n", encoding="utf-8")
    monkeypatch.setitem(reference_docs.BLOCKS, "settings", (page, reference_docs.settings_reference))
    monkeypatch.setitem(reference_docs.BLOCKS, "cli", (tmp_path / "cli.md", lambda: "help"))
    assert reference_docs.main(["--check"]) == 1
    assert reference_docs.main([]) == 0  # rewrites both, keeping the prose around the generated block
    assert page.read_text(encoding="utf-8").startswith("# Settings\n\nprose\n")
    assert reference_docs.main(["--check"]) == 0
    page.write_text(page.read_text(encoding="utf-8").replace("`RAG_TOP_K` | `20`", "`RAG_TOP_K` | `10`"))
    assert reference_docs.main(["--check"]) == 1


def test_the_settings_reference_names_each_variable_its_default_and_values() -> None:
    rows = {line.split(" | ")[0].lstrip("| "): line for line in reference_docs.settings_reference().splitlines()}
    assert "`20`" in rows["`RAG_TOP_K`"] and ">= 1" in rows["`RAG_TOP_K`"]
    assert "`hybrid` \\| `dense` \\| `bm25`" in rows["`RAG_RETRIEVAL`"]
    assert "`RAG_OPENAI_API_KEY`, `OPENAI_API_KEY`" in rows  # the conventional name, as the LLM client reads it
    assert "`../shared/datasets`" in rows["`RAG_DATASETS_DIR`"]  # relative: the page reads alike on every machine
    assert len([row for row in rows if row.startswith("`")]) == len(Settings.model_fields)


def test_a_new_setting_reaches_the_reference(monkeypatch) -> None:
    class Wider(Settings):
        # A group of its own.
        shiny_knob: int = Field(7, ge=1, description="A knob that a test adds.")

    monkeypatch.setattr(reference_docs, "Settings", Wider)
    text = reference_docs.settings_reference()
    assert "### A group of its own" in text
    assert "| `RAG_SHINY_KNOB` | `7` | >= 1 | A knob that a test adds. |" in text


def test_the_cli_reference_holds_every_subcommands_help() -> None:
    text = reference_docs.cli_reference()
    for command in ("rerank-rag", "rerank-rag ask", "rerank-rag eval", "rerank-rag reranker train",
                    "rerank-rag keys create"):
        assert f"### `{command}`\n\n```text\nusage: {command} " in text
    assert "--rerank-weight W" in text


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_each_setting_says_what_it_does_in_one_sentence_without_figures(name: str) -> None:
    description = Settings.model_fields[name].description or ""
    assert description, f"{name} has no description"
    assert not FIGURE.search(description), f"{name}: a measured figure belongs in BENCHMARKS.md: {description}"
    assert not re.search(r"[.!?]\s+[A-Z]", description), f"{name}: more than one sentence: {description}"


def test_a_block_is_replaced_in_place_leaving_the_page_around_it() -> None:
    """As scripts/benchmarks.py rewrites BENCHMARKS.md: the current state above and the history below stay."""
    page = reference_docs.with_block("# B\n\nabove\n", "benchmarks", "run 1", command="make benchmarks")
    page += "\n## History\n\nbelow\n"
    again = reference_docs.with_block(page, "benchmarks", "run 2", command="make benchmarks")
    assert again == page.replace("run 1", "run 2")
    assert again.startswith("# B\n\nabove\n\n<!-- BEGIN GENERATED: benchmarks (make benchmarks; do not edit by hand)")
