"""The house rules of the layout: the read and write paths never depend on evaluation or training."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

# rag/cli.py wires every command together (eval, bench, reranker train), so it alone may import them.
WIRING = {REPO / "rag" / "cli.py"}
FORBIDDEN = ("evaluation", "training", "api")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_read_and_write_paths_never_import_evaluation_or_training() -> None:
    offenders = {
        f"{path.relative_to(REPO)} imports {module}"
        for package in ("rag", "ingest")
        for path in sorted((REPO / package).glob("**/*.py"))
        if path not in WIRING
        for module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN
    }
    assert not offenders, sorted(offenders)


def test_the_rule_sees_an_offending_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from evaluation.metrics import mrr\n    import training.train\n")
    assert {"evaluation.metrics", "training.train"} <= imported_modules(module)


def test_cli_strings_name_the_command_modules_that_exist() -> None:
    from rag.cli import COMMAND_MODULES

    for module in COMMAND_MODULES:
        assert (REPO / Path(*module.split("."))).with_suffix(".py").is_file(), module


MAX_MODULE_LINES = 450  # the developers' guide: a longer module is split by concern


def test_no_module_of_ingest_is_longer_than_the_guide_allows() -> None:
    long = {f"{path.relative_to(REPO)}: {n} lines" for path in sorted((REPO / "ingest").glob("*.py"))
            if (n := len(path.read_text(encoding="utf-8").splitlines())) >= MAX_MODULE_LINES}
    assert not long, sorted(long)
