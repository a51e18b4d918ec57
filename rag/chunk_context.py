"""A chunk's context line (issue 33): what retrieval and the reranker read before the chunk, never what is quoted.

Ingest writes the line into each chunk's metadata (``context``, beside ``doc_title`` and ``section``;
:mod:`ingest.identity`); the embedder embeds and BM25 indexes :func:`with_context` of it and the chunk, and the
reranker reads the same beside the question (``Settings.rerank_reads_context``). The chunk's own text, which the
answer quotes and the page image marks, stays as the document has it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.types import ChunkHit

# The metadata keys a chunk's document identity is stored under (docs/chunk-context.md).
DOC_TITLE = "doc_title"
SECTION = "section"
CONTEXT = "context"


def with_context(context: str | None, text: str) -> str:
    """What retrieval embeds and indexes, and the reranker reads: the context line, then the chunk."""
    return f"{context}\n{text}" if context else text


def _identity_part(context: str | None, doc_title: str | None) -> str:
    """What names a chunk's document: its title and the context line before the section (" — ")."""
    return f"{doc_title or ''} {(context or '').split(' — ', 1)[0]}"


def asked_documents(question: str, chunks: Sequence[ChunkHit]) -> set[str] | None:
    """The documents among ``chunks`` that the question names by what tells them apart, or None when it names
    none that way: the doc ids whose identity (title, cover, period, running lines, file name) holds the most of
    the question's terms that the identities of the others lack ("Amazon", "2023", "Q3" among three companies'
    quarterly filings). Terms every document's identity holds tell nothing; one document tells nothing either."""
    from rag.bm25_tokens import tokenize

    identities: dict[str, set[str]] = {}
    for chunk in chunks:
        named = f"{_identity_part(chunk.context, chunk.doc_title)} {chunk.source.rsplit('.', 1)[0]}"
        identities.setdefault(chunk.doc_id, set()).update(tokenize(named))
    if len(identities) < 2:
        return None
    shared = set.intersection(*identities.values())
    asked = set(tokenize(question)) - shared
    named_by = {doc_id: len(asked & terms) for doc_id, terms in identities.items()}
    most = max(named_by.values())
    return {doc_id for doc_id, n in named_by.items() if n == most} if most else None
