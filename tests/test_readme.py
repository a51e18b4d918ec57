"""The README as a newcomer follows it: every `rerank-rag` line in it (and in docs/) is a command the CLI accepts,
the way it gives to reach the CLI after `make run` works, its command-line walk runs, and every relative link in
the pages leads to a file."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, SAMPLE

README = REPO / "README.md"
PAGES = [README, REPO / "BENCHMARKS.md", REPO / "scripts" / "README.md", REPO / "experiments" / "README.md",
         *sorted((REPO / "docs").glob("*.md"))]
VENV_CLI = REPO / ".venv" / "bin" / "rerank-rag"  # the path the README gives (make's default VENV)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
COMMAND = re.compile(r"(?:^|[\s(`])((?:\.venv/bin/)?rerank-rag(?:\s.*)?)$")
SHELL_ENDS = {"|", "||", "&&", ";", ")"}


def shell_blocks(page: Path) -> list[str]:
    """The code blocks of a page that hold shell lines (```bash, ```sh, or no language)."""
    return [body for language, body in FENCE.findall(page.read_text(encoding="utf-8"))
            if language in {"", "bash", "sh", "shell", "console"}]


def cli_lines(page: Path) -> list[list[str]]:
    """Each `rerank-rag ...` command of a page's shell blocks, as argv (comments and what follows a pipe cut)."""
    commands = []
    for block in shell_blocks(page):
        for line in block.splitlines():
            match = COMMAND.search(re.split(r"\s#\s", line.strip())[0])  # a comment may name a command too
            if not match:
                continue
            argv = []
            for token in shlex.split(match.group(1), comments=True):
                if token in SHELL_ENDS:
                    break
                argv.append(token.rstrip(")"))
            commands.append(argv)
    return commands


def test_the_readme_quotes_commands() -> None:
    assert len(cli_lines(README)) >= 3  # the way to the CLI and the walk's lines: the check below has work


def test_the_defaults_the_readme_names_are_the_codes() -> None:
    from rag.settings import Settings

    readme = " ".join(README.read_text(encoding="utf-8").split())
    defaults = Settings.model_fields
    assert f"finds {defaults['top_k'].default} candidate passages" in readme
    assert f"the top {defaults['top_n'].default} answer it" in readme
    assert f"reranker ({defaults['reranker'].default})" in readme


def refusal(argv: list[str]) -> str | None:
    """Why the CLI's parser refuses ``argv`` (its own message), or None when it accepts it."""
    from rag.cli import build_parser

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv[1:])
    except SystemExit as exit_:
        return None if exit_.code == 0 else errors.getvalue().strip().splitlines()[-1]
    return None


@pytest.mark.parametrize("page", [page for page in PAGES if page.exists() and cli_lines(page)],
                         ids=lambda page: str(page.relative_to(REPO)))
def test_every_cli_line_is_a_command_the_cli_accepts(page: Path) -> None:
    refused = {shlex.join(argv): why for argv in cli_lines(page) if (why := refusal(argv))}
    assert not refused, f"{page.relative_to(REPO)}: lines the CLI refuses: {refused}"


def test_a_line_the_cli_refuses_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```bash\nKEY=$(rerank-rag keys create --name n --collection c --scope read)  # once\n"
                    "rerank-rag docs [--json] | sort\n```\n", encoding="utf-8")
    keys, docs = cli_lines(page)
    assert keys == ["rerank-rag", "keys", "create", "--name", "n", "--collection", "c", "--scope", "read"]
    assert refusal(keys) is None
    assert docs == ["rerank-rag", "docs", "[--json]"] and "unrecognized arguments: [--json]" in refusal(docs)


def in_the_projects_venv() -> bool:
    return Path(sys.prefix).resolve() == (REPO / ".venv").resolve()


@pytest.mark.skipif(not in_the_projects_venv(), reason="the README's paths are those of make's .venv")
def test_the_readme_and_make_run_say_how_to_reach_the_cli_and_both_ways_work() -> None:
    readme = README.read_text(encoding="utf-8")
    assert ".venv/bin/rerank-rag" in readme and "source .venv/bin/activate" in readme
    by_path = subprocess.run([str(VENV_CLI), "--help"], capture_output=True, text=True, timeout=120)
    assert by_path.returncode == 0 and by_path.stdout.startswith("usage: rerank-rag"), by_path.stderr
    activated = subprocess.run(["bash", "-c", "source .venv/bin/activate && rerank-rag --help"], cwd=REPO,
                               env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
                               capture_output=True, text=True, timeout=120)
    assert activated.returncode == 0 and activated.stdout.startswith("usage: rerank-rag"), activated.stderr
    if shutil.which("make"):
        dry_run = subprocess.run(["make", "-n", "run"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert ".venv/bin/rerank-rag --help" in dry_run.stdout, dry_run.stdout  # printed before the app starts


@pytest.mark.skipif(not in_the_projects_venv(), reason="the README's paths are those of make's .venv")
def test_the_readmes_command_line_walk_runs(tmp_path: Path) -> None:
    """The README's `.venv/bin/rerank-rag` lines, in order, on a fresh store: its `my-docs/` is the samples."""
    walk = [argv for argv in cli_lines(README) if argv[0] == ".venv/bin/rerank-rag" and "--help" not in argv]
    assert any(argv[1] == "ingest" for argv in walk) and any(argv[1] == "ask" for argv in walk), walk
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "store")}
    for argv in walk:
        argv = [str(SAMPLE) if arg == "my-docs/" else arg for arg in argv]
        run = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, (argv, run.stdout[-2000:], run.stderr[-2000:])
        if argv[1] == "ask":
            assert "[1] returns-and-service.pdf" in run.stdout, run.stdout  # the refund question's source


@pytest.mark.parametrize("folder", ["scripts", "experiments"])
def test_every_script_is_in_its_folders_index(folder: str) -> None:
    """scripts/ holds what is run again and experiments/ what was run once; each README says what every file is."""
    index = (REPO / folder / "README.md").read_text(encoding="utf-8")
    unlisted = [path.name for path in sorted((REPO / folder).iterdir())
                if path.suffix in {".py", ".sh"} and f"`{path.name}`" not in index]
    assert not unlisted, f"{folder}/README.md does not say what these are for: {unlisted}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", [page for page in PAGES if page.exists()], ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file(page: Path) -> None:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = [target for target in LINK.findall(text)
              if not re.match(r"[a-z]+:|#", target) and not (page.parent / target.split("#")[0]).exists()]
    assert not broken, f"{page.relative_to(REPO)}: {broken}"
