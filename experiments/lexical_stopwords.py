"""Does the extractive answer's lexical scorer read the question's function words? Measured with and without.

    RAG_DATA_DIR=<cache> .venv/bin/python experiments/lexical_stopwords.py --cache /tmp/answer-focus [--sets ...]

"What were NVIDIA's revenues in Q3 2023?" was answered by a sentence about a customer's share of revenue: the
lexical overlap (rag.extract.lexical_overlap) weighs each question term by its IDF over the ~20 candidate
sentences, where "were" and "what" are rare, so a sentence saying "were" outweighed the "Total revenue" row the
reranker preferred. This recomputes only the lexical scorer on the chunks and raw scores that
``scripts/answer_focus.py`` cached, with the question's English stop words left out (bm25s's STOPWORDS_EN_PLUS;
or only a question's wh-words and auxiliary verbs), and prints the answer-focus table for each.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import bm25s.stopwords  # noqa: E402
from answer_focus import collect, header, measure, parser, table_row  # noqa: E402

from rag import extract  # noqa: E402
from rag.lexical import tokenize  # noqa: E402
from rag.settings import Settings  # noqa: E402

STOPWORDS = {
    "plus": frozenset().union(*(tokenize(word) for word in bm25s.stopwords.STOPWORDS_EN_PLUS)),
    # a question's own words only: its wh-word and auxiliary verbs
    "question": frozenset().union(*(tokenize(word) for word in "what which who whom whose when where why how do does "
                                    "did was were is are be been has have had s".split())),
}


def content_words(question: str, stop: frozenset[str]) -> str:
    """The question without its stop words (the whole question where nothing is left)."""
    kept = " ".join(word for word in question.replace("'s", " ").split() if not set(tokenize(word)) <= stop)
    return kept or question


def relexed(row: dict, stop: frozenset[str]) -> dict:
    """The row with its lexical scores recomputed from the question's content words."""
    if not row.get("candidates") or row.get("raw") is None:
        return row
    texts, _ = extract._passages(row["sentences"], row["candidates"])
    raw = row["raw"]
    passages = dict(raw.passages)
    passages["lexical"] = extract.lexical_overlap(content_words(row["question"], stop), texts, len(row["candidates"]))
    return {**row, "raw": extract.RawScores(passages, raw.priors, raw.numeric)}


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    settings = Settings()
    print(header("set | lexical reads"))
    for name in args.sets:
        rows = collect(settings, name, Path(args.datasets_root), args.queries, Path(args.cache), False)
        variants = [("every word", rows)] + [(f"without {kind} stop words", [relexed(row, stop) for row in rows])
                                             for kind, stop in STOPWORDS.items()]
        for label, measured in variants:
            print(table_row(f"{name} | {label}", measure(measured)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
