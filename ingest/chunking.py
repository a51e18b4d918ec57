"""The one chunking recipe: llama-index's ``SentenceSplitter`` sized in the embedder's own tokens.

Ingest, the evaluation corpus index and the benchmarks' stock pipeline all split with this, so a
chunk means the same thing everywhere. Sizes count the embedder's tokens (never more than its
window), so no chunk is embedded truncated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from llama_index.core.node_parser import SentenceSplitter

    from rag.settings import Settings


class Tokenizing(Protocol):
    max_tokens: int

    def tokenize(self, text: str) -> list[int]: ...



def make_splitter(settings: Settings, embedder: Tokenizing) -> SentenceSplitter:
    from llama_index.core.node_parser import SentenceSplitter

    return SentenceSplitter(
        chunk_size=min(settings.chunk_size, embedder.max_tokens),
        chunk_overlap=settings.chunk_overlap,
        tokenizer=embedder.tokenize,
        # The default secondary regex already ends sentences at 。？！ as well as . ? !, so Chinese text
        # splits at its sentences before it is cut at an arbitrary token.
    )
