"""The reference pages that describe code, generated from that code: docs/settings.md from
``rag.settings.Settings`` (every field's environment variable, default, allowed values and description) and
docs/cli.md from the ``rerank-rag`` parsers (every command's ``--help``).

    .venv/bin/python -m rag.reference_docs           # rewrite the generated parts of both pages
    .venv/bin/python -m rag.reference_docs --check   # exit 1, naming the pages, when they differ from the code

Each page keeps hand-written prose around its generated part, which sits between two HTML comments
(``<!-- BEGIN GENERATED: settings -->`` ... ``<!-- END GENERATED: settings -->``), as cog does; a test
(tests/test_reference_docs.py) regenerates and compares, so a new setting or option fails it until the
command is rerun. Hand-written here rather than with cogapp: two blocks need a few lines, not a dependency.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, get_args, get_origin

import annotated_types
from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from rag.settings import REPO_ROOT, Settings

DOCS = REPO_ROOT / "docs"
HELP_COLUMNS = 100  # argparse wraps help to the terminal; a fixed width makes the page the same everywhere


def env_names(name: str, field: FieldInfo) -> list[str]:
    """The environment variables that set a field: its aliases where it has them, else ``RAG_<NAME>``."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        names = [choice.upper() for choice in alias.choices if isinstance(choice, str)]
        return list(dict.fromkeys(names))
    if isinstance(alias, str):
        return [alias.upper()]
    return [f"{Settings.model_config.get('env_prefix', '')}{name}".upper()]


def shown_default(value: object) -> str:
    """A default as a user would write it in the environment; a path under the checkout's parent folder is
    shown relative to the checkout, so the page reads the same on every machine."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Path) and value.is_absolute():
        try:
            return os.path.relpath(value, REPO_ROOT)
        except ValueError:
            return str(value)
    return "(empty)" if value == "" else str(value)


def number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def allowed_values(field: FieldInfo) -> str:
    """The choices of a Literal, or the bounds of a number, as the field declares them."""
    annotation = field.annotation
    if get_origin(annotation) is Literal:
        return " \\| ".join(f"`{choice}`" for choice in get_args(annotation))
    if annotation is bool:
        return "`true` \\| `false`"
    bounds = []
    for rule in field.metadata:
        for attribute, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(rule, getattr(annotated_types, attribute.capitalize())):
                bounds.append(f"{sign} {number(getattr(rule, attribute))}")
    return ", ".join(bounds)


def field_groups() -> dict[str, str]:
    """Field name -> the heading of its group: the first sentence of the comment block above the field in
    Settings' source (``# Retrieval.``); a field without one joins the group before it."""
    source = textwrap.dedent(inspect.getsource(Settings))  # a class defined in a function comes indented
    lines = source.splitlines()
    groups: dict[str, str] = {}
    current = "General"
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        comment: list[str] = []
        row = node.lineno - 2  # the line above the field (lineno counts from 1)
        while row >= 0 and lines[row].strip().startswith("#"):
            comment.insert(0, lines[row].strip().lstrip("#").strip())
            row -= 1
        if comment:
            first_sentence = re.split(r"(?<=[.:])\s", " ".join(comment), maxsplit=1)[0]
            current = re.sub(r"\s*\(.*", "", first_sentence).rstrip(".:")
        groups[node.target.id] = current
    return groups


def table_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def settings_reference() -> str:
    """The settings table, a section per group of fields in Settings' own order."""
    groups = field_groups()
    out: list[str] = []
    previous = None
    for name, field in Settings.model_fields.items():
        group = groups.get(name, previous or "General")
        if group != previous:
            previous = group
            out += ["", f"### {group}", "", "| environment variable | default | values | what it does |",
                    "|---|---|---|---|"]
        env = ", ".join(f"`{env}`" for env in env_names(name, field))
        default = f"`{shown_default(field.get_default(call_default_factory=True))}`"
        out.append(f"| {env} | {default} | {allowed_values(field)} | {table_cell(field.description or '')} |")
    return "\n".join(out).strip("\n")


def walk_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every subcommand's, depth first, in the order they were added."""
    yield parser
    for action in parser._actions:  # argparse keeps subcommands only here; no public accessor exists
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser once
                yield from walk_parsers(sub)


def cli_reference() -> str:
    """``--help`` of ``rerank-rag`` and of each of its subcommands, each under its own heading."""
    from rag.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_COLUMNS)
    try:
        out = []
        for parser in walk_parsers(build_parser()):
            help_text = "\n".join(line.rstrip() for line in parser.format_help().strip("\n").splitlines())
            out += [f"### `{parser.prog}`", "", "```text", help_text, "```", ""]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(out).strip("\n")


BLOCKS = {"settings": (DOCS / "settings.md", settings_reference),
          "cli": (DOCS / "cli.md", cli_reference)}


def markers(block: str, command: str = "python -m rag.reference_docs") -> tuple[str, str]:
    return (f"<!-- BEGIN GENERATED: {block} ({command}; do not edit by hand) -->",
            f"<!-- END GENERATED: {block} -->")


def with_block(page: str, block: str, body: str, command: str = "python -m rag.reference_docs") -> str:
    """The page with its generated block's body replaced (appended, with its markers, when it has none); the
    command that generates it is named in the opening marker. scripts/benchmarks.py writes its block of
    BENCHMARKS.md this way too, so that a run leaves the page's hand-written sections alone."""
    begin, end = markers(block, command)
    generated = f"{begin}\n{body}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(page):
        return pattern.sub(lambda _: generated, page, count=1)
    return page.rstrip("\n") + ("\n\n" if page.strip() else "") + generated + "\n"


def stale_pages(write: bool) -> list[Path]:
    """The pages whose generated block differs from the code (rewritten when ``write``)."""
    stale = []
    for block, (path, render) in BLOCKS.items():
        page = path.read_text(encoding="utf-8") if path.exists() else ""
        fresh = with_block(page, block, render())
        if fresh != page:
            stale.append(path)
            if write:
                path.write_text(fresh, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rag.reference_docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a page differs")
    args = parser.parse_args(argv)
    stale = stale_pages(write=not args.check)
    for path in stale:
        verb = "differs from the code" if args.check else "rewritten"
        print(f"{os.path.relpath(path, REPO_ROOT)}: {verb}")
    if args.check and stale:
        print("run: .venv/bin/python -m rag.reference_docs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
