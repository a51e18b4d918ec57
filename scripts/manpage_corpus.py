"""A retrieval set from this machine's manual pages: training text for a distilled reranker beyond SQuAD.

    .venv/bin/python scripts/manpage_corpus.py --pages 1000 --out runs/manpages

Distillation needs questions and passages, not gold answers: the teacher scores every candidate. The dev suite's
only training splits are SQuAD's Wikipedia paragraphs (and a few E-Manual questions), so a student learns
Wikipedia. Manual pages are technical prose in another register, on every Debian machine, never in the dev suite.
Each page's NAME line ("ls - list directory contents") is a question a user would ask; its DESCRIPTION's first
passage is the gold one; its other sections (NAME removed: it holds the question verbatim) are passages too.
Writes the dev suite's format (corpus.jsonl, queries.jsonl, qrels.tsv, SOURCE.md), so ``reranker mine`` reads it.
Rendering goes through man(1) itself: roff is a language, and man + groff are its interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

SECTION = re.compile(r"^[A-Z][A-Z0-9 ,/&'-]+$")  # a section heading: flush left, capitals
WORDS_PER_PASSAGE = 110
PASSAGES_PER_PAGE = 12  # the first ones: a long page (bash's) must not fill the corpus
PAGES_PER_FAMILY = 3  # gcloud's thousands of pages (gcloud_beta_..., gcloud_alpha_...) must not either


def render(page: Path) -> list[str]:
    env = {**os.environ, "MANWIDTH": "2000", "LC_ALL": "C.UTF-8"}  # one line per paragraph: no hard wraps
    out = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, env=env, timeout=30).stdout
    return subprocess.run(["col", "-bx"], input=out, capture_output=True, text=True, timeout=30).stdout.splitlines()


def sections(lines: list[str]) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) in page order, the running header and footer lines left out."""
    out: list[tuple[str, list[str]]] = []
    for line in lines[1:-1]:
        if SECTION.match(line):
            out.append((line.strip(), [""]))
        elif out:
            paras = out[-1][1]
            if line.strip():
                paras[-1] = f"{paras[-1]} {line.strip()}".strip()
            elif paras[-1]:
                paras.append("")
    return [(h, [p for p in paras if p]) for h, paras in out]


def passages(paras: list[str]) -> list[str]:
    out, cur = [], []
    for p in paras:
        cur.append(p)
        if sum(len(x.split()) for x in cur) >= WORDS_PER_PASSAGE:
            out.append(" ".join(cur))
            cur = []
    return out + ([" ".join(cur)] if cur else [])


def page_record(page: Path) -> tuple[str, list[str], list[str]] | None:
    """(question, DESCRIPTION's passages, the other sections' passages), or None for a page with no question."""
    secs = dict(sections(render(page)))
    name = " ".join(secs.get("NAME", []))
    question = name.split(" - ", 1)[1].strip() if " - " in name else ""
    if len(question.split()) < 3 or not secs.get("DESCRIPTION"):
        return None
    rest = [p for h, paras in secs.items() if h not in ("NAME", "DESCRIPTION") for p in passages(paras)]
    return question, passages(secs["DESCRIPTION"]), rest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--man-dir", nargs="+", default=["/usr/share/man/man1", "/usr/share/man/man5",
                                                      "/usr/share/man/man8"])
    ap.add_argument("--pages", type=int, default=1000, help="pages sampled (seeded)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    files = sorted(p for d in args.man_dir for p in Path(d).iterdir() if p.is_file() and not p.is_symlink())
    random.Random(args.seed).shuffle(files)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seen_questions: set[str] = set()
    families: dict[str, int] = {}
    with (out / "corpus.jsonl").open("w") as corpus, (out / "queries.jsonl").open("w") as queries, \
            (out / "qrels.tsv").open("w") as qrels:
        kept = 0
        for page in files:
            if kept == args.pages:
                break
            family = re.split(r"[_.-]", page.name)[0]
            if families.get(family, 0) == PAGES_PER_FAMILY:
                continue
            record = page_record(page)
            if record is None or record[0].lower() in seen_questions:  # aliases share one NAME line
                continue
            question, description, rest = record
            seen_questions.add(question.lower())
            families[family] = families.get(family, 0) + 1
            stem = page.name.removesuffix(".gz")
            for n, text in enumerate((description + rest)[:PASSAGES_PER_PAGE]):
                corpus.write(json.dumps({"id": f"{stem}#{n}", "title": stem, "text": text}) + "\n")
            queries.write(json.dumps({"id": stem, "text": question}) + "\n")
            qrels.write(f"{stem}\t{stem}#0\t1\n")
            kept += 1
    (out / "SOURCE.md").write_text(f"Manual pages of this machine ({', '.join(args.man_dir)}), {kept} pages sampled with seed "
                                   f"{args.seed}, rendered by man(1); each page under its own licence.\n")
    print(f"{kept} pages -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
