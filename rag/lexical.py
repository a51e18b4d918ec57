"""The lexical first stage: BM25 over the committed chunks of a collection, kept beside the store.

Dense MiniLM retrieval misses exact names, numbers and rare terms that BM25 finds; this module is the
BM25 half. Chroma stays the single source of truth: an index is derived from the chunks that the
registry commits (see :mod:`rag.store`) and carries a manifest saying which committed versions it
was built from, so a process that finds the store moved on rebuilds instead of serving stale hits.

On disk, beside the embedded store, as every derived index is kept (:mod:`rag.derived_index`)::

    <data_dir>/bm25/<collection>/CURRENT, idx-<uuid>/ (bm25s arrays, memory-mapped on load; chunk_ids.json;
                                                      manifest.json last), .lock

The tokenizer is rag.bm25_tokens, the score matrix rag.bm25_matrix. Tokenizer choices (stemming, stop words, jieba
vs CJK bigrams) and BM25 parameters were measured
with ``experiments/measure_bm25.py``; the tables are in ``docs/bm25.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import bm25s

    from rag.store import DocumentRecord, KnowledgeBase, StoredChunk

# The recipe every derived index follows lives in rag.derived_index; its names stay importable from here.
from rag.derived_index import (  # noqa: E402,F401
    CURRENT, MANIFEST, DerivedIndexes, IndexUnusable, StoreState, finish_folder,
)
from rag.derived_index import index_root as _index_root  # noqa: E402

log = logging.getLogger(__name__)

# The tokenizer lives in rag.bm25_tokens; its names stay importable from here.
from rag.bm25_tokens import (  # noqa: E402,F401
    DEFAULT_TOKENIZER_OPTIONS, TOKENIZER_VERSION, ChineseMode, Tokenizer, TokenizerOptions, tokenize,
)
# So does the score matrix (rag.bm25_matrix), with its parameters.
from rag.bm25_matrix import B, K1, METHOD, _bm25, _count_terms, _score_matrix  # noqa: E402,F401
from rag.chunk_context import document_identity  # noqa: E402
from rag.doc_names import NAMES_VERSION, DocumentNames, NamedDocuments  # noqa: E402


# ---- the index -----------------------------------------------------------------------------------
KIND = "bm25"  # the folder under data_dir
CHUNK_IDS = "chunk_ids.json"


def scoring_label() -> str:
    return f"bm25s-{METHOD}:k1={K1}:b={B}"


class LexicalIndex:
    """BM25 over a fixed list of chunks. Build with :meth:`build`, or :meth:`load` a saved one."""

    def __init__(self, chunk_ids: list[str], retriever: bm25s.BM25 | None, manifest: dict[str, Any],
                 names: DocumentNames | None = None) -> None:
        self.chunk_ids = chunk_ids
        self.retriever = retriever  # None when no chunk has a single token
        self.manifest = manifest
        self.names = names  # each document's identity and its rows: which documents a question names
        self.folder: Path | None = None

    def __len__(self) -> int:
        return len(self.chunk_ids)

    @classmethod
    def build(
        cls,
        chunk_ids: Sequence[str],
        texts: Sequence[str],
        *,
        collection: str = "",
        fingerprint: str = "",
        store_chunks: int | None = None,
        generation: str | None = None,
        identities: Sequence[tuple[str, str, str]] | None = None,
    ) -> LexicalIndex:
        """Tokenize ``texts`` and index them; the manifest records what the index was built from.
        ``identities``: each row's (source, document identity, own text), for :meth:`named_documents`.

        ``store_chunks`` is the chunk count the store's registry declared when the chunks were read
        (defaults to ``len(chunk_ids)``): freshness compares it, so a store whose readable chunks
        fall short of its records gets a warning at build time, not a rebuild on every query.
        """
        if len(chunk_ids) != len(texts):
            raise ValueError(f"{len(chunk_ids)} chunk ids for {len(texts)} texts")
        retriever = _bm25(texts)
        manifest = {
            "collection": collection,
            "fingerprint": fingerprint,
            "chunks": len(chunk_ids),
            "store_chunks": len(chunk_ids) if store_chunks is None else store_chunks,
            "generation": generation,
            "tokenizer_version": TOKENIZER_VERSION,
            "scoring": scoring_label(),
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "bm25": retriever is not None,  # False: no chunk has a token, no bm25s files
            "doc_names": NAMES_VERSION if identities is not None else None,
        }
        names = DocumentNames.build(identities) if identities is not None else None
        return cls(list(chunk_ids), retriever, manifest, names)

    def search(self, query: str, k: int, sources: Collection[str] | None = None) -> list[tuple[str, float]]:
        """The ``k`` best (chunk id, BM25 score), best first; [] when no query term is in the index. ``sources``:
        of those documents only (:attr:`filters`)."""
        if sources is not None and not self.filters:
            raise ValueError("this index does not know its chunks' documents (built without identities)")
        if k < 1 or self.retriever is None:
            return []
        token_ids = self.retriever.get_tokens_ids(tokenize(query))
        if not token_ids:
            return []
        scores = self.retriever.get_scores_from_ids(token_ids)
        if sources is not None:
            wanted = [doc for doc, source in enumerate(self.names.sources) if source in sources]
            scores = np.where(np.isin(self.names.row_docs, wanted), scores, 0.0)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        # bm25s scores every chunk: those sharing no term with the query score 0, and are no hit.
        return [(self.chunk_ids[i], float(scores[i])) for i in top if scores[i] > 0]

    @property
    def filters(self) -> bool:
        """Whether :meth:`search` can keep to some documents itself: it knows each chunk's document."""
        return self.names is not None and len(self.names.row_docs) == len(self.chunk_ids)

    def coverage(self, query: str) -> float:
        """The share of ``query``'s distinct terms that occur in the index: about 1 when the question's words are
        the collection's, near 0 when they are not (a Chinese question over English text, whose only matches are
        numbers). A plain share, not IDF-weighted: one rare word a small collection lacks (a name) must not
        silence BM25. 1 for a query with no terms."""
        terms = set(tokenize(query))
        if not terms:
            return 1.0
        if self.retriever is None:
            return 0.0
        return sum(term in self.retriever.vocab_dict for term in terms) / len(terms)

    def named_documents(self, question: str, max_outside_share: float,
                        min_inside_share: float) -> NamedDocuments | None:
        """The documents ``question`` names by their identities (rag.doc_names), or None."""
        if self.names is None or max_outside_share <= 0:
            return None
        return self.names.named(question, max_outside_share, min_inside_share)

    def names_held(self, names: Sequence[str]) -> tuple[float, list[str]] | None:
        """(the share of ``names``, a question's names (rag.abstain.entity_names), whose BM25 terms the collection's
        text holds, every one of them; the names it does not); None for no names or no BM25 side."""
        if not names or self.retriever is None:
            return None
        missing = [name for name in names if not all(term in self.retriever.vocab_dict for term in tokenize(name))]
        return 1 - len(missing) / len(names), missing

    def quarters_held(self, question: str) -> tuple[float, list[str]] | None:
        """Which quarters ``question`` asks about the collection's documents are of (rag.doc_names), or None."""
        return self.names.quarters_held(question) if self.names is not None else None

    def save(self, folder: str | Path) -> None:
        """Write the index into a new folder, the manifest last: a folder with a manifest is whole."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=False)
        if self.retriever is not None:
            self.retriever.save(str(folder), show_progress=False)
        (folder / CHUNK_IDS).write_text(json.dumps(self.chunk_ids), encoding="utf-8")
        if self.names is not None:
            self.names.save(folder)
        finish_folder(folder, json.dumps(self.manifest, indent=1))
        self.folder = folder

    @classmethod
    def load(cls, folder: str | Path) -> LexicalIndex:
        """Load a saved index, its BM25 matrix memory-mapped; :class:`IndexUnusable` if not whole."""
        import bm25s

        folder = Path(folder)
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            chunk_ids = json.loads((folder / CHUNK_IDS).read_text(encoding="utf-8"))
            retriever = None
            if manifest.get("bm25"):
                retriever = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
            names = DocumentNames.load(folder) if manifest.get("doc_names") == NAMES_VERSION else None
        except (OSError, ValueError, KeyError) as error:
            raise IndexUnusable(f"{folder}: {type(error).__name__}: {error}") from error
        num_docs = retriever.scores["num_docs"] if retriever is not None else len(chunk_ids)
        if not (len(chunk_ids) == manifest.get("chunks") == num_docs):
            raise IndexUnusable(f"{folder}: {len(chunk_ids)} chunk ids, manifest says {manifest.get('chunks')}")
        index = cls(chunk_ids, retriever, manifest, names)
        index.folder = folder
        return index


# ---- derived from the store, kept beside it --------------------------------------------------------
def index_root(data_dir: str | Path, collection: str) -> Path:
    """``<data_dir>/bm25/<collection>``: beside the embedded store, or this machine's own copy when
    the chunks live on a Chroma server (each app process derives its index from the registry)."""
    return _index_root(data_dir, KIND, collection)


def _is_current(manifest: dict[str, Any]) -> bool:
    return (manifest.get("tokenizer_version") == TOKENIZER_VERSION and manifest.get("scoring") == scoring_label()
            and manifest.get("doc_names") == NAMES_VERSION)


def _build(kb: KnowledgeBase, state: StoreState, records: list[DocumentRecord], page_size: int = 2000) -> LexicalIndex:
    """Index the chunks of exactly the versions ``records`` commit."""
    chunk_ids, texts, identities = [], [], []
    for chunk in kb.committed_chunks(page_size, records=records):
        chunk_ids.append(chunk.chunk_id)
        texts.append(chunk.read_text)  # its context line too (rag.chunk_context): a page that never names its company
        identities.append((chunk.source, document_identity(chunk.context, chunk.doc_title, chunk.source), chunk.text))
    if len(chunk_ids) != state.chunks:
        log.warning("collection %s: the registry declares %d committed chunks, %d could be read",
                    kb.name, state.chunks, len(chunk_ids))
    return LexicalIndex.build(
        chunk_ids, texts, collection=kb.name, fingerprint=state.fingerprint, store_chunks=state.chunks,
        generation=state.generation, identities=identities,
    )


class LexicalIndexes(DerivedIndexes[LexicalIndex]):
    """The BM25 index of each (data_dir, collection), loaded once and kept in step with the registry
    (:class:`rag.derived_index.DerivedIndexes`)."""

    def __init__(self, page_size: int = 2000, recheck_s: float = 0.0) -> None:
        super().__init__(KIND, build=lambda kb, state, records: _build(kb, state, records, page_size),
                         load=LexicalIndex.load, is_current=_is_current, recheck_s=recheck_s)
        self.page_size = page_size


_INDEXES = LexicalIndexes()


def lexical_index(kb: KnowledgeBase, data_dir: str | Path) -> LexicalIndex:
    """The up-to-date BM25 index of ``kb`` (see :meth:`LexicalIndexes.get`); cheap when nothing changed."""
    return _INDEXES.get(kb, data_dir)


def rebuild(kb: KnowledgeBase, data_dir: str | Path) -> LexicalIndex:
    """Build ``kb``'s BM25 index now (after an ingest or delete batch), so no query waits for it."""
    return _INDEXES.rebuild(kb, data_dir)


FILTERED_DEPTH = 20  # a filtered BM25 search reads this many times k hits before it filters them


def lexical_search(kb: KnowledgeBase, data_dir: str | Path, query: str, k: int,
                   sources: Collection[str] | None = None) -> list[StoredChunk]:
    """The BM25 top-``k`` chunks of ``kb`` for ``query``, best first, ``score`` the BM25 score; with ``sources``,
    of those documents only (the same filter as the dense side's Chroma ``where``): the index's own filter where it
    knows each chunk's document, else BM25's best ``FILTERED_DEPTH`` x ``k`` hits are read and those of other
    documents dropped.

    A hit whose document was replaced or deleted after the freshness check is left out (see
    ``KnowledgeBase.get_chunks``), so this can return fewer than ``k``.
    """
    index = lexical_index(kb, data_dir)
    filtered = sources is not None and index.filters
    if filtered:
        hits = index.search(query, k, sources=set(sources))
    else:
        hits = index.search(query, k if sources is None else k * FILTERED_DEPTH)
    scores = dict(hits)
    chunks = [dataclasses.replace(chunk, score=scores[chunk.chunk_id]) for chunk in kb.get_chunks(list(scores))]
    if sources is not None and not filtered:
        wanted = set(sources)
        chunks = [chunk for chunk in chunks if chunk.source in wanted][:k]
    return chunks


def named_documents(kb: KnowledgeBase, data_dir: str | Path, question: str, max_outside_share: float,
                    min_inside_share: float) -> NamedDocuments | None:
    """The documents of ``kb`` that ``question`` names by their identities (rag.doc_names), or None."""
    return lexical_index(kb, data_dir).named_documents(question, max_outside_share, min_inside_share)


Held = tuple[float, list[str]] | None  # (the share held, what is not), or None: nothing to tell


def collection_holds(kb: KnowledgeBase, data_dir: str | Path, question: str, names: Sequence[str]) -> tuple[Held, Held]:
    """What the whole of ``kb`` holds of ``question``, the abstention's evidence (rag.abstain): the quarters it asks
    about (:meth:`rag.doc_names.DocumentNames.quarters_held`) and its ``names`` (:meth:`LexicalIndex.names_held`),
    from one look at the index."""
    index = lexical_index(kb, data_dir)
    return index.quarters_held(question), index.names_held(names)


def lexical_coverage(kb: KnowledgeBase, data_dir: str | Path, query: str) -> float:
    """How much of ``query`` the collection's words cover (:meth:`LexicalIndex.coverage`)."""
    return lexical_index(kb, data_dir).coverage(query)
