"""A chunk's context line (issue 33): what retrieval and the reranker read before the chunk, never what is quoted.

Ingest writes the line into each chunk's metadata (``context``, beside ``doc_title`` and ``section``;
:mod:`ingest.identity`); the embedder embeds and BM25 indexes :func:`with_context` of it and the chunk, and the
reranker reads the same beside the question, and a feedback fine-tune trains on it. The chunk's own text, which the
answer quotes and the page image marks, stays as the document has it.
"""

from __future__ import annotations

# The metadata keys a chunk's document identity is stored under (docs/chunk-context.md).
DOC_TITLE = "doc_title"
SECTION = "section"
CONTEXT = "context"


def with_context(context: str | None, text: str) -> str:
    """What retrieval embeds and indexes, and the reranker reads: the context line, then the chunk."""
    return f"{context}\n{text}" if context else text


def document_identity(context: str | None, doc_title: str | None, source: str) -> str:
    """What names a chunk's document: its title, the context line before the section (" — ") and the file name's
    stem ("2023 Q3 AMZN")."""
    return f"{doc_title or ''} {(context or '').split(' — ', 1)[0]} {source.rsplit('.', 1)[0]}"
