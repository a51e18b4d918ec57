"""Does the answer come from the document the question asks about? A multi-document check (issue 33).

    nice -n 10 .venv/bin/python scripts/multidoc_check.py --data-dir /tmp/issue33-store --out runs/multidoc.json

Ingests the filings of ``pdf_docugami_sec10q`` (12 SEC 10-Qs: 3 companies x 4 quarters, near-identical
layouts) through :class:`ingest.pipeline.Ingestor`, as ``rerank-rag ingest`` does, and asks every question
through :meth:`rag.pipeline.RagPipeline.ask` with the defaults, first stage alone and reranked. Per question:
is the top chunk from an asked filing (the qrels' filings), what share of the top 5 is, and the page-level
MRR@5 where the page is known: a page of an asked filing that holds a figure (a number with a thousands
separator or decimals) the reviewed answer quotes. ``--anonymous`` ingests the files as ``doc-01.pdf`` ...,
so that the file name cannot tell the filings apart: what the documents themselves identify; ``--only`` keeps
some filings (one: a one-document collection, its questions, where only the page-level MRR tells). Prints a
Markdown table; ingest seconds and the store's size on disk are printed too.

``--statements`` also asks, of every filing, nine questions of FinanceBench's kind ("What were Apple's total
assets at the end of Q3 2023? Base the answer on the balance sheet."): a figure that a financial statement
holds, whose page is exact (the page the statement's title opens), unlike the figures' pages above.
``--unnamed`` asks them again without the words that name the statement ("What were Apple's total assets at the
end of Q3 2023?"). Reranked, each of those is answered too (the extractive answer, or the LLM's where one is
configured): the share whose answer leads with a figure of the statement's page. ``--no-ingest`` asks over a
store ingested before (query-time changes).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.datasets import load_answers, load_dataset  # noqa: E402
from ingest.loaders import read_document  # noqa: E402
from ingest.pipeline import Ingestor, SourceFile  # noqa: E402
from rag.pipeline import RagPipeline  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.statements import named_statements  # noqa: E402

_FIGURE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+")


def figures(text: str) -> set[str]:
    return set(_FIGURE.findall(text))


def store_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def score(pipeline: RagPipeline, dataset, answers: dict, pages: dict[str, list], names: dict[str, str],
          queries: list) -> dict:
    """Per run (first stage, reranked): top-1 from an asked filing, share of the top 5, page-level MRR@5."""
    # The pages that hold a figure each answer quotes, per filing (read as ingest reads them).
    page_texts = {names[doc_id]: [(p.number, p.text) for p in read] for doc_id, read in pages.items()}
    summary = {}
    for rerank in (False, True):
        top1 = share = mrr = 0.0
        paged = 0
        for query in queries:
            asked = {names[d] for d in dataset.relevant(query.id) if d in names}
            quoted = set().union(*(figures(a) for a in answers.get(query.id, [])))
            pages = {(name, number) for name in asked for number, text in page_texts[name]
                     if quoted & figures(text)}
            result = pipeline.ask(query.text, rerank=rerank, generate=False)
            top = result.chunks[:5]
            top1 += bool(top) and top[0].source in asked
            share += sum(c.source in asked for c in top) / 5
            if pages:
                paged += 1
                mrr += next((1 / rank for rank, c in enumerate(top, 1) if (c.source, c.page) in pages), 0.0)
        name = "reranked" if rerank else "first stage"
        summary[name] = {"top1_asked": round(top1 / len(queries), 3), "top5_share": round(share / len(queries), 3),
                         "page_mrr5": round(mrr / max(paged, 1), 3), "paged_queries": paged}
    return summary


# A statement's title as its page's opening lines print it, and how a question names the statement.
_STATEMENT = re.compile(r"^\s*(?:condensed\s+)?consolidated\s+(?:statements?\s+of\s+(operations|income|cash\s+flows)|"
                        r"(balance\s+sheets?))", re.I)
_STATEMENT_KIND = {"operations": "income", "income": "income", "cash flows": "cash", "balance sheet": "balance",
                   "balance sheets": "balance"}
# FinanceBench's kind of question (a figure, a period, the statement to read it from), three per statement.
STATEMENT_QUESTIONS = {
    "income": ["What was {co}'s net income for {period}? Use the income statement.",
               "What were {co}'s total operating expenses in {period}, as shown in its income statement?",
               "What was {co}'s diluted earnings per share for {period} according to the income statement?"],
    "balance": ["What were {co}'s total assets at the end of {period}? Base the answer on the balance sheet.",
                "How much cash and cash equivalents did {co} hold at the end of {period}, per its balance sheet?",
                "What were {co}'s total current liabilities at the end of {period} according to the balance sheet?"],
    "cash": ["How much cash did {co}'s operating activities generate in {period}? Answer from the cash flow statement.",
             "What did {co} spend on property and equipment in {period}, per the cash flow statement?",
             "What was {co}'s depreciation and amortization in {period}, as shown in the cash flow statement?"],
}
COMPANIES = {"AAPL": "Apple", "AMZN": "Amazon", "NVDA": "NVIDIA"}  # the dataset's file names' tickers
_NAMING = [(re.compile(r"\? (?:Use|Base the answer on|Answer from) the [a-z ]+\.$"), "?"),
           (re.compile(r",? (?:as shown in|according to|per) (?:the|its) [a-z ]+(?=\?$)"), "")]


def unnamed(question: str) -> str:
    """The question without the words that name its statement: "What were Apple's total assets at the end of
    Q3 2023?" (the kind of question that asks a statement's figure and leaves the statement to the reader)."""
    for pattern, replacement in _NAMING:
        question = pattern.sub(replacement, question)
    if named_statements(question):
        raise ValueError(f"still names a statement: {question}")
    return question


def statement_pages(pages) -> dict[str, int]:  # noqa: ANN001 - ingest's PageText list
    """The page each statement opens on: its title among the page's first lines (the first such page per kind)."""
    found: dict[str, int] = {}
    for page in pages:
        for line in [line for line in page.text.splitlines() if line.strip()][:6]:
            match = _STATEMENT.match(line)
            if match:
                kind = _STATEMENT_KIND[" ".join((match.group(1) or match.group(2)).lower().split())]
                found.setdefault(kind, page.number)
    return found


def statement_questions(pages: dict[str, list], names: dict[str, str]) -> list[tuple[str, str, int]]:
    """(question, filing, gold page): the dataset's file names ("2023 Q3 AAPL.pdf") give company and period."""
    out = []
    for doc_id, read in pages.items():
        year, quarter, ticker = Path(doc_id).stem.split()
        opens = statement_pages(read)
        for kind, templates in STATEMENT_QUESTIONS.items():
            out += [(t.format(co=COMPANIES[ticker], period=f"{quarter} {year}"), names[doc_id], opens[kind])
                    for t in templates if kind in opens]
    return out


def score_statements(pipeline: RagPipeline, questions: list[tuple[str, str, int]],
                     page_texts: dict[tuple[str, int], str], label: str = "statements") -> dict:
    """Per run: top-1 from the asked filing and the statement page's MRR@5 (its rank among the top-5 chunks);
    reranked, with the answer: the share whose lead (the text before its first citation) quotes a figure of the
    statement's page (a number with a thousands separator or decimals: "384" is not told)."""
    summary = {}
    for rerank in (False, True):
        top1 = mrr = quoted = 0.0
        for question, filing, page in questions:
            result = pipeline.ask(question, rerank=rerank, generate=rerank)
            top = result.chunks[:5]
            top1 += bool(top) and top[0].source == filing
            mrr += next((1 / rank for rank, c in enumerate(top, 1) if (c.source, c.page) == (filing, page)), 0.0)
            quoted += bool(figures(result.answer.split("[", 1)[0]) & figures(page_texts[filing, page]))
        summary[f"{label} " + ("reranked" if rerank else "first stage")] = {
            "top1_asked": round(top1 / len(questions), 3), "page_mrr5": round(mrr / len(questions), 3),
            "queries": len(questions)}
        if rerank:
            summary[f"{label} reranked"]["answer_lead_quotes_page"] = round(quoted / len(questions), 3)
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="a store of its own (RAG_DATA_DIR), never data/store")
    ap.add_argument("--dataset", default=None, help="default: <datasets_dir>/pdf_docugami_sec10q")
    ap.add_argument("--collection", default="multidoc")
    ap.add_argument("--queries", type=int, default=None)
    ap.add_argument("--anonymous", action="store_true", help="ingest the files as doc-01.pdf, doc-02.pdf, ...")
    ap.add_argument("--only", nargs="*", help="these filings alone (a one-document collection: its questions, its pages)")
    ap.add_argument("--statements", action="store_true",
                    help="also ask 9 questions per filing whose answer is on a financial statement's page")
    ap.add_argument("--unnamed", action="store_true",
                    help="with --statements: ask them again without the words that name the statement")
    ap.add_argument("--no-ingest", action="store_true", help="ask over the store as it is (ingested before)")
    ap.add_argument("--label", default="run")
    ap.add_argument("--out", default=None, help="a JSON file the figures are added to, under --label")
    args = ap.parse_args()
    settings = Settings(data_dir=Path(args.data_dir), collection=args.collection)
    folder = Path(args.dataset) if args.dataset else settings.datasets_dir / "pdf_docugami_sec10q"
    dataset = load_dataset(folder)
    answers = load_answers(folder / "answers.jsonl")
    docs = sorted((d for d in dataset.corpus.values() if not args.only or d.id in args.only), key=lambda d: d.id)
    names = {doc.id: (f"doc-{i:02d}.pdf" if args.anonymous else doc.id) for i, doc in enumerate(docs, 1)}
    started = time.perf_counter()
    results = [] if args.no_ingest else Ingestor(settings, args.collection).ingest(
        [SourceFile(names[doc.id], path=doc.path) for doc in docs])
    ingest_s = time.perf_counter() - started
    failed = [r.line() for r in results if r.status == "failed"]
    if failed:
        print("\n".join(failed), file=sys.stderr)
        return 1
    chunks = sum(r.chunks for r in results)
    size = store_bytes(settings.data_dir)
    queries = [q for q in dataset.queries_with_qrels() if dataset.relevant(q.id) & set(names)][: args.queries]
    summary = {"ingest_s": round(ingest_s, 1), "chunks": chunks, "store_mb": round(size / 1e6, 2),
               "queries": len(queries)}
    pages = {doc.id: read_document(doc.id, doc.path.read_bytes()).pages for doc in docs}  # read once, as ingest does
    summary |= score(RagPipeline(settings), dataset, answers, pages, names, queries)
    if args.statements:
        page_texts = {(names[doc_id], p.number): p.text for doc_id, read in pages.items() for p in read}
        asked = statement_questions(pages, names)
        summary |= score_statements(RagPipeline(settings), asked, page_texts)
        if args.unnamed:
            plain = [(unnamed(question), filing, page) for question, filing, page in asked]
            summary |= score_statements(RagPipeline(settings), plain, page_texts, "statements unnamed")
    print(f"ingest {summary['ingest_s']} s, {chunks} chunks, store {summary['store_mb']} MB, {len(queries)} questions")
    print("| run | top-1 from the asked filing | share of top-5 | page MRR@5 (questions) |\n|---|---|---|---|")
    for name in ("first stage", "reranked"):
        row = summary[name]
        print(f"| {args.label} {name} | {row['top1_asked']:.3f} | {row['top5_share']:.3f} | "
              f"{row['page_mrr5']:.3f} ({row['paged_queries']}) |")
    for name in [key for key in summary if key.startswith("statements ")]:
        row = summary[name]
        quoted = row.get("answer_lead_quotes_page")
        lead = "" if quoted is None else f"; answer's lead quotes the page {quoted:.3f}"
        print(f"| {args.label} {name} | {row['top1_asked']:.3f} | | {row['page_mrr5']:.3f} ({row['queries']}){lead} |")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        done = json.loads(out.read_text()) if out.is_file() else {}
        done[args.label] = summary
        out.write_text(json.dumps(done, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
