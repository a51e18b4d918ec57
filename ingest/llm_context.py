"""``RAG_CHUNK_CONTEXT=llm``: a situating sentence per chunk, written by the configured LLM as Anthropic's
Contextual Retrieval (2024) does: one call per chunk with the whole document (cut at
``Settings.chunk_context_llm_document_chars``) and the chunk, asking for a short context that situates it.

Bounded in cost: at most ``Settings.chunk_context_llm_calls`` calls per document (the chunks past it keep the
identity line of :mod:`ingest.identity`), and every answer cached by content hash (the model, the document's
text as sent, the chunk, the prompt's version) in ``<data dir>/chunk_context_llm/``, so the same document
ingested again, into another collection or under another name, asks nothing. A call that fails (the server
down, a timeout) leaves its chunk the identity line: ingest never fails for it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.document import PageText
    from rag.settings import Settings

PROMPT_VERSION = "1"
CACHE = "chunk_context_llm"
MAX_SENTENCE_CHARS = 600  # a reply longer than this is cut: a context, not a summary
PROMPT = """<document>
{document}
</document>
Here is the chunk we want to situate within the whole document
<chunk>
{chunk}
</chunk>
Please give a short succinct context to situate this chunk within the overall document for the purposes of \
improving search retrieval of the chunk. Answer only with the succinct context and nothing else."""


def _cache_path(settings: Settings, key: str) -> Path:
    return Path(settings.data_dir) / CACHE / key[:2] / f"{key}.txt"


def _cached(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _store(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except OSError:  # a full disk costs the cache, never the ingest
        return


def llm_contexts(settings: Settings, pages: list[PageText], texts: list[str]) -> list[str]:
    """A situating sentence per chunk of ``texts`` ("" where none was written: past the call budget, or a failed
    call); the document is ``pages``' text, cut at ``chunk_context_llm_document_chars``."""
    from rag.answer import LlmAnswerer, LlmError

    document = "\n\n".join(page.text for page in pages)[: settings.chunk_context_llm_document_chars]
    prefix = hashlib.sha256(f"{PROMPT_VERSION}\0{settings.llm_model}\0{document}".encode()).hexdigest()
    llm: LlmAnswerer | None = None
    sentences: list[str] = []
    calls = 0
    for text in texts:
        key = hashlib.sha256(f"{prefix}\0{text}".encode()).hexdigest()
        path = _cache_path(settings, key)
        cached = _cached(path)
        if cached is not None:
            sentences.append(cached)
            continue
        if calls >= settings.chunk_context_llm_calls:
            sentences.append("")
            continue
        calls += 1
        try:
            llm = llm or LlmAnswerer(settings)
            reply = " ".join(llm.complete(PROMPT.format(document=document, chunk=text)).split())
        except LlmError:
            sentences.append("")
            continue
        reply = reply[:MAX_SENTENCE_CHARS]
        _store(path, reply)
        sentences.append(reply)
    return sentences
