"""Would "the question names something the collection never holds" do as an abstention rule of its own?

    RAG_DATA_DIR=/tmp/devsuite/store .venv/bin/python experiments/unknown_names.py

Over each dev set's whole collection (every answerable question, its gold passage present), the share of
questions with a name (``rag.abstain.named_terms``: capitalised words past the first, quoted titles; numbers
left out) none of whose BM25 tokens the collection's vocabulary holds. Each such question would be warned by
the rule though the documents answer it. The dev suite's indexes are built where missing (``index_corpus``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from dev_suite import SETS  # noqa: E402

from evaluation.datasets import load_dataset  # noqa: E402
from evaluation.index import dataset_label, index_corpus  # noqa: E402
from rag.abstain import named_terms  # noqa: E402
from rag.bm25_tokens import tokenize  # noqa: E402
from rag.lexical import lexical_index  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.store import KnowledgeBase  # noqa: E402


def unknown_names(question: str, vocabulary: dict) -> list[str]:
    """The question's names (not numbers) whose BM25 tokens the collection never holds."""
    return [term for term in named_terms(question) if any(ch.isalpha() for ch in term)
            and (tokens := tokenize(term)) and not any(token in vocabulary for token in tokens)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=4)
    args = ap.parse_args()
    settings = Settings()
    for label, folder, held_out in SETS:
        path = settings.datasets_dir / folder
        dataset = load_dataset(path, name=dataset_label(path))
        info = index_corpus(settings, path, dataset)
        vocabulary = lexical_index(KnowledgeBase(settings, info.collection), settings.data_dir).retriever.vocab_dict
        questions = dataset.queries_with_qrels(None, relevant_docs=held_out)
        flagged = [(q.text, names) for q in questions if (names := unknown_names(q.text, vocabulary))]
        share = 100 * len(flagged) / max(len(questions), 1)
        print(f"{label}: {len(flagged)} of {len(questions)} answerable questions ({share:.1f} %) name something the "
              f"collection never holds; e.g. {[names for _, names in flagged[:args.examples]]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
