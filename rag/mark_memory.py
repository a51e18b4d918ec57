"""Marks as memory, applied at query time: a new question borrows the marks of the marked questions nearest in
meaning, before (and without) any fine-tune.

When a chunk mark is stored (:meth:`rag.feedback.FeedbackStore.add`), its question is embedded once by the
collection's embedder and the vector kept beside the mark, under the mark's own id, in a store collection of its
own per user collection (``rerank-rag-memory-<hash>``: reserved like the feedback collection, and apart from it
because a Chroma collection holds vectors of one dimension, and the feedback records hold none). A question then
asks that collection for the marked questions nearest to it (cosine, Chroma's HNSW) and, from those at least
``feedback_memory_threshold`` alike, takes what :func:`lend` says: a chunk marked as answering a near question is
lifted (and joins the candidates when the first stage missed it), one marked as not answering is lowered, each in
proportion to how alike the questions are. The pipeline mixes that into the blend of first stage and reranker
(:func:`rag.rerank.blend`).

Guard rails, each checked on every question (so a change takes effect on the next one, in every process):

- the mark record must still exist with the same label: deleting a mark (Feedback page, ``DELETE
  /v1/feedback/...``, taking a mark back on the Ask page) removes its effect at once;
- only marks of the question's collection count (the memory is per collection; a key that opens a collection
  reads its marks, as ``GET /v1/feedback`` does);
- a mark made with an API key that has since been revoked never counts;
- a chunk whose document changed since the mark (its content sha256) has lost its marks;
- lowering needs a second opinion: one marker's "does not answer" lowers a chunk only for that marker's own
  questions; for everyone else it counts once a second marker has lowered the same chunk for a near question.
  A lift only reorders what a user sees, with the chunks that answer still shown beside it; a lowering hides a
  chunk, and a single wrong or spiteful mark would hide it from everyone.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

from rag.chroma_client import StoreError, open_client, writing
from rag.settings import Settings
from rag.store_names import FEEDBACK_COLLECTION, KEYS_COLLECTION

MEMORY_PREFIX = "rerank-rag-memory-"  # reserved by its prefix (rag.store_names.RESERVED_PREFIXES)
MAX_NEAR = 64  # nearest marks read per question: a few questions' worth of marks, read in one query


def memory_collection(collection: str) -> str:
    """The store collection that keeps the marked questions' vectors of ``collection``."""
    return MEMORY_PREFIX + hashlib.sha1(collection.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class Lent:
    """What the marks of near questions say of one chunk."""

    score: float  # in [-1, 1]: + lifted (marked as answering), - lowered; similarity-weighted
    question: str  # the marked question that weighed most
    similarity: float  # its cosine to the question asked


def marker(key_id: str, by: str) -> str:
    """Who made a mark, for the second-opinion rule: the API key's id, else who the surface says (app, cli)."""
    return f"key:{key_id}" if key_id else f"by:{by}"


def lend(near: list[dict], threshold: float, asker: str | None) -> dict[str, Lent]:
    """chunk id -> :class:`Lent`, from the near marks (each ``{"chunk_id", "label", "similarity", "question",
    "marker"}``) at least ``threshold`` alike. A mark weighs ``(similarity - threshold) / (1 - threshold)``: the
    same question fully, one at the threshold not at all. A chunk's score is its lifts minus its lowerings, cut to
    [-1, 1]; lowerings by one marker alone count only when that marker is the ``asker``."""
    lifts: dict[str, float] = defaultdict(float)
    lowerings: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    strongest: dict[str, tuple[float, str, float]] = {}
    for mark in near:
        similarity = float(mark["similarity"])
        if similarity < threshold:
            continue
        weight = 1.0 if threshold >= 1.0 else min(1.0, (similarity - threshold) / (1.0 - threshold))
        chunk = mark["chunk_id"]
        if mark["label"] == "relevant":
            lifts[chunk] += weight
        else:
            lowerings[chunk][mark["marker"]] += weight
        if weight > strongest.get(chunk, (-1.0, "", 0.0))[0]:
            strongest[chunk] = (weight, mark["question"], similarity)
    out = {}
    for chunk, (_, question, similarity) in strongest.items():
        by_marker = lowerings.get(chunk, {})
        lowered = (sum(by_marker.values()) if len(by_marker) >= 2
                   else sum(w for who, w in by_marker.items() if who == asker))
        score = max(-1.0, min(1.0, lifts.get(chunk, 0.0) - lowered))
        if score:
            out[chunk] = Lent(round(score, 6), question, round(similarity, 6))
    return out


def _made_by(records) -> str | None:
    """The embedder that made a memory's vectors."""
    return (records.metadata or {}).get("embed_model")


def agreed(lent: float, readable: float) -> float:
    """What a mark moves a chunk by once the reranker has read it: a lift times the reranker's probability that
    the chunk answers this question, a lowering times the probability that it does not. A mark speaks of another
    question; a question alike in words may ask something else, and there the reranker's doubt holds the mark
    back (an unrelated near question's chunk is rarely read as answering)."""
    return lent * (readable if lent > 0 else 1.0 - readable)


class MarkMemory:
    """The marked questions' vectors of a store: written with each chunk mark, read on each question."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _records(self, collection: str, embedder=None):
        """The memory of ``collection`` (None when there is none); with ``embedder``, made for it: created when
        missing, and rebuilt when another embedder made it (the collection was reindexed), its questions
        embedded again, since vectors of two embedders cannot be compared."""
        client = open_client(self.settings)
        name = memory_collection(collection)
        try:
            records = client.get_collection(name, embedding_function=None)
        except StoreError:
            raise
        except Exception:  # noqa: BLE001 - chromadb's "not found" differs by version
            records = None
        if embedder is None or (records is not None and _made_by(records) == embedder.name):
            return records
        rows = records.get(include=["metadatas"]) if records is not None else {"ids": [], "metadatas": []}
        if records is not None:
            client.delete_collection(name)
        records = client.get_or_create_collection(name, embedding_function=None, metadata={
            "hnsw:space": "cosine", "embed_model": embedder.name, "purpose": "rerank-rag marked questions"})
        if rows["ids"]:
            questions = sorted({meta["question"] for meta in rows["metadatas"]})
            vectors = dict(zip(questions, embedder.embed_queries(questions), strict=True))
            records.upsert(ids=rows["ids"], embeddings=[[float(x) for x in vectors[m["question"]]]
                                                        for m in rows["metadatas"]],
                           metadatas=[{**m, "embed_model": embedder.name} for m in rows["metadatas"]])
        return records

    def remember(self, mark, *, vector, embedder, content_sha256: str, key_id: str = "") -> None:
        """Keep a chunk mark's question vector under the mark's id (a new mark of the same chunk and question
        replaces it, as the mark itself is replaced)."""
        meta = {"collection": mark.collection, "question": mark.question, "chunk_id": mark.chunk_ids[0],
                "label": mark.label, "content_sha256": content_sha256, "key_id": key_id, "by": mark.by,
                "embed_model": embedder.name}
        with writing(self.settings):
            self._records(mark.collection, embedder).upsert(
                ids=[mark.mark_id], embeddings=[[float(x) for x in vector]], metadatas=[meta])

    def vector_of(self, collection: str, question: str, embed_model: str):
        """The stored vector of ``question`` when one of its marks has it (a question is embedded once)."""
        records = self._records(collection)
        if records is None or _made_by(records) != embed_model:
            return None
        got = records.get(where={"question": question}, limit=1, include=["embeddings"])
        return got["embeddings"][0] if len(got["ids"]) else None

    def forget(self, collection: str, mark_ids: list[str]) -> None:
        records = self._records(collection)
        if records is not None and mark_ids:
            with writing(self.settings):
                records.delete(ids=list(mark_ids))

    def has_marks(self, collection: str, embed_model: str) -> bool:
        records = self._records(collection)
        return records is not None and _made_by(records) == embed_model and records.count() > 0

    def near(self, collection: str, vector, embed_model: str, threshold: float) -> list[dict]:
        """The marks of the questions at least ``threshold`` alike to ``vector``, nearest first, each as
        :func:`lend` reads it, with ``content_sha256``; only marks that still exist with the same label and
        whose key (if any) is not revoked."""
        records = self._records(collection)
        if records is None or _made_by(records) != embed_model:
            return []
        count = records.count()
        if not count:
            return []
        found = records.query(query_embeddings=[[float(x) for x in vector]], n_results=min(MAX_NEAR, count),
                              include=["metadatas", "distances"])
        near = [{"mark_id": mark_id, **meta, "similarity": 1.0 - float(distance),
                 "marker": marker(str(meta.get("key_id", "")), str(meta.get("by", "")))}
                for mark_id, meta, distance in zip(found["ids"][0], found["metadatas"][0], found["distances"][0],
                                                   strict=True)
                if 1.0 - float(distance) >= threshold]
        if not near:
            return []
        labels = self._mark_labels([m["mark_id"] for m in near])
        near = [m for m in near if labels.get(m["mark_id"]) == m["label"]]
        keyed = {m["key_id"] for m in near if m.get("key_id")}
        if keyed:
            live = self._live_key_ids()
            near = [m for m in near if not m.get("key_id") or m["key_id"] in live]
        return near

    def _mark_labels(self, mark_ids: list[str]) -> dict[str, str]:
        """mark id -> its label now, for the marks that still exist (the marks are the truth; this is an index)."""
        try:
            records = open_client(self.settings).get_collection(FEEDBACK_COLLECTION, embedding_function=None)
        except StoreError:
            raise
        except Exception:  # noqa: BLE001 - no marks at all
            return {}
        got = records.get(ids=mark_ids, include=["metadatas"])
        return {mark_id: str(meta.get("label")) for mark_id, meta in zip(got["ids"], got["metadatas"], strict=True)}

    def _live_key_ids(self) -> set[str]:
        """The ids of the API keys that exist now (read from the store on each question that needs them, so a
        revoked key's marks stop counting at once). Read here, not through api.keys: rag/ never imports api/."""
        try:
            keys = open_client(self.settings).get_collection(KEYS_COLLECTION, embedding_function=None)
        except StoreError:
            raise
        except Exception:  # noqa: BLE001 - no keys: every key a mark names was revoked
            return set()
        return {str(meta.get("key_id", "")) for meta in keys.get(include=["metadatas"])["metadatas"]}


def remember_mark(settings: Settings, mark, key_id: str = "") -> None:
    """Embed a chunk mark's question (once: a question already remembered reuses its vector) with the
    collection's embedder and keep it with the mark, with the marked chunk's document version."""
    from rag.embedders.models import configured_embedder
    from rag.store_names import collection_embedder

    embed_model = collection_embedder(settings, mark.collection) or settings.embed_model
    embedder = configured_embedder(settings, embed_model)
    memory = MarkMemory(settings)
    vector = memory.vector_of(mark.collection, mark.question, embedder.name)
    if vector is None:
        vector = embedder.embed_queries([mark.question])[0]
    chunks = open_client(settings).get_collection(mark.collection, embedding_function=None)
    version = current_versions_of(chunks, [mark.chunk_ids[0]]).get(mark.chunk_ids[0], "")
    memory.remember(mark, vector=vector, embedder=embedder, content_sha256=version, key_id=key_id)


def current_versions_of(chunks, chunk_ids: list[str]) -> dict[str, str]:
    """chunk id -> the content sha256 of the document version it belongs to, for the chunks that exist."""
    if not chunk_ids:
        return {}
    got = chunks.get(ids=list(chunk_ids), include=["metadatas"])
    return {chunk_id: str((meta or {}).get("content_sha256", "")) for chunk_id, meta in
            zip(got["ids"], got["metadatas"], strict=True)}


def lent_for(settings: Settings, kb, embedder, question: str, asker: str | None) -> dict[str, Lent]:
    """What the marks of near questions lend the chunks of ``kb`` for ``question`` (empty when the collection
    has no marks, or none near). Chunks whose document changed since they were marked are left out."""
    memory = MarkMemory(settings)
    if not memory.has_marks(kb.name, embedder.name):
        return {}
    vector = embedder.embed_queries([question])[0]
    near = memory.near(kb.name, vector, embedder.name, settings.feedback_memory_threshold)
    versions = current_versions_of(kb.chunks, sorted({m["chunk_id"] for m in near}))
    near = [m for m in near if versions.get(m["chunk_id"]) == m.get("content_sha256")]
    return lend(near, settings.feedback_memory_threshold, asker)


def join_lifted(kb, found: list, lent: dict[str, Lent], depth: int | None) -> tuple[list, list[int]]:
    """(candidates, the indices the reranker scores): the first stage's candidates, then the chunks marks lift
    that it missed (committed versions only; their first-stage score the lowest of the scored ones, as a chunk
    it did not find); scored: the top ``depth`` and every lifted chunk below it, so a mark reaches the blend."""
    from dataclasses import replace

    from rag.retrieve import Candidate

    have = {c.chunk.chunk_id for c in found}
    missing = [chunk for chunk, why in lent.items() if why.score > 0 and chunk not in have]
    top = len(found) if not depth else min(depth, len(found))
    floor = min((c.score for c in found[:top]), default=0.0)
    joined = [Candidate(chunk=replace(chunk, score=floor), rank=len(found) + n, score=floor)
              for n, chunk in enumerate(kb.get_chunks(missing), 1)]
    candidates = [*found, *joined]
    # a lowered chunk below the top stays unscored: among the scored it would sit above the unscored
    scored = list(range(top)) + [i for i in range(top, len(candidates))
                                 if candidates[i].chunk.chunk_id in lent and lent[candidates[i].chunk.chunk_id].score > 0]
    return candidates, scored
