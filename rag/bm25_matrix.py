"""From chunk texts to the BM25 matrix that bm25s scores queries with: the build half of :mod:`rag.lexical`."""

from __future__ import annotations

import array
import collections
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.bm25_tokens import tokenize

if TYPE_CHECKING:
    import bm25s

K1 = 1.2
B = 0.75
METHOD = "lucene"


def _bm25(texts: Sequence[str]) -> bm25s.BM25 | None:
    """A bm25s retriever over ``texts`` (None when there is no term at all), its matrix built here.

    ``bm25s.BM25.index`` counts terms in pure Python: 5.2 s of CPU for 20k chunks where
    :func:`_score_matrix` takes 0.3 s (docs/bm25.md) for the same matrix (the tests compare them),
    leaving tokenizing as the main cost of a build. bm25s still scores queries, saves the matrix
    and memory-maps it.
    """
    import bm25s

    vocab, term_ids, lengths = _count_terms(texts)
    if not vocab:
        return None
    retriever = bm25s.BM25(k1=K1, b=B, method=METHOD)
    retriever.scores = _score_matrix(term_ids, lengths, len(vocab))
    retriever.vocab_dict = vocab
    retriever.unique_token_ids_set = set(range(len(vocab)))
    retriever.nonoccurrence_array = None
    return retriever


def _count_terms(texts: Sequence[str]) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Tokenize: (term → id, every chunk's term ids one after another, each chunk's length)."""
    vocab: dict[str, int] = collections.defaultdict(itertools.count().__next__)
    term_ids = array.array("i")
    lengths = np.zeros(len(texts), dtype=np.int64)
    for row, text in enumerate(texts):
        terms = tokenize(text)
        lengths[row] = len(terms)
        term_ids.extend([vocab[term] for term in terms])
    return dict(vocab), np.frombuffer(term_ids, dtype=np.intc), lengths


def _score_matrix(term_ids: np.ndarray, lengths: np.ndarray, n_terms: int) -> dict[str, Any]:
    """BM25 (Lucene variant, as bm25s's "lucene") scores of every (term, chunk) pair, in bm25s's
    CSC layout: one column per term, its rows the chunks that hold it, in chunk order."""
    n_docs = len(lengths)
    # A key per term occurrence, term-major: sorted, a run of equal keys is one term frequency.
    keys = np.multiply(term_ids, n_docs, dtype=np.int64)
    keys += np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    keys.sort()
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    tf = np.diff(starts, append=len(keys)).astype(np.float32)
    terms, rows = np.divmod(keys[starts], n_docs)
    del keys, starts
    df = np.bincount(terms, minlength=n_terms)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
    norm = (K1 * (1 - B + B * lengths / lengths.mean())).astype(np.float32)
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    rows = rows.astype(np.int32)
    return {"data": idf[terms] * tf / (tf + norm[rows]), "indices": rows, "indptr": indptr, "num_docs": n_docs}
