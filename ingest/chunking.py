"""The one chunking recipe: llama-index's ``SentenceSplitter`` sized in the embedder's own tokens.

Ingest, the evaluation corpus index and the benchmarks' stock pipeline all split with this, so a
chunk means the same thing everywhere. Sizes count the embedder's tokens (never more than its
window), so no chunk is embedded truncated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from llama_index.core.node_parser import SentenceSplitter

    from ingest.document import PageText
    from rag.settings import Settings


# What the splitter cuts at when a "sentence" (a table, a long list) is longer than a chunk: llama-index's default
# ("[^,.;。？！]+[,.;。？！]?") also cuts inside numbers, so a chunk ended "Total net sales include $3." and the next
# began "3 billion"; here a '.' or ',' between digits stays inside its number.
SECONDARY_CHUNKING_REGEX = r"(?:[^,.;。？！]|[,.](?=\d))+[,.;。？！]?"
CHUNK_RECIPE = "2"  # bump when what the splitter cuts changes: cached evaluation indexes are rebuilt


class Tokenizing(Protocol):
    max_tokens: int

    def tokenize(self, text: str) -> list[int]: ...


def make_splitter(settings: Settings, embedder: Tokenizing) -> SentenceSplitter:
    from llama_index.core.node_parser import SentenceSplitter

    return SentenceSplitter(
        chunk_size=min(settings.chunk_size, embedder.max_tokens),
        chunk_overlap=settings.chunk_overlap,
        tokenizer=embedder.tokenize,
        # It ends sentences at 。？！ as well as . ? !, as the default does, so Chinese text splits at its
        # sentences before it is cut at an arbitrary token.
        secondary_chunking_regex=SECONDARY_CHUNKING_REGEX,
    )


def chunk_pages(pages: list[PageText], splitter: SentenceSplitter) -> tuple[list[str], list[int | None], int]:
    """A document's chunks and their pages, each distinct text once; and how many repeats were left out.

    Pages are split one by one, so every chunk has one page to cite. Repeats are dropped because thousands
    of identical vectors break Chroma's HNSW graph: a 5 MB file of one repeated line (4,744 identical
    chunks) filled every question's dense top-100, and once it was deleted the graph led searches only to
    deleted nodes, so they found nothing. One copy answers whatever the repeats would; its first page is kept.
    """
    from ingest.document import IngestError

    texts: list[str] = []
    page_numbers: list[int | None] = []
    seen: set[str] = set()
    repeated = 0
    for page in pages:
        for text in splitter.split_text(page.text):
            if not text.strip():
                continue
            if text in seen:
                repeated += 1
                continue
            seen.add(text)
            texts.append(text)
            page_numbers.append(page.number)
    if not texts:
        raise IngestError("no text found in the file")
    return texts, page_numbers, repeated
