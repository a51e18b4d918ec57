"""Marks people leave on answers and chunks, and the reranker each collection uses, kept in the store itself.

A mark says of one question either that a chunk answers it (``relevant``) or does not (``irrelevant``), or that
the answer was ``good`` or ``wrong``. Marks are records of the reserved collection ``rerank-rag-feedback``
(``rerank-rag-*`` is the store's own: never listed, never a target of an ingest, a question or an upload), so
they follow a Chroma server as the API keys do. Each carries its collection, the question, the chunk ids, the
label, when, who (app, or the API key's name) and the reranker that ranked the chunks. Marking the same chunk
(or answer) of the same question again replaces the earlier mark: the record id is a hash of what it is about.

The same collection holds one ``choice`` record per collection: the reranker it uses (a feedback fine-tune's
folder) and the one before, for one click back. :func:`collection_reranker` is what the pipeline asks.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from rag.chroma_client import StoreError, open_client, writing
from rag.chunk_context import CONTEXT, with_context
from rag.limits import clean_question
from rag.mark_memory import MarkMemory, remember_mark
from rag.settings import Settings
from rag.store_names import FEEDBACK_COLLECTION, check_user_collection  # noqa: F401 - re-exported
CHUNK_LABELS = ("relevant", "irrelevant")
ANSWER_LABELS = ("good", "wrong")
MAX_CHUNK_ID_CHARS = 200  # ingest's ids are ~40 characters; a longer one is no chunk of ours
MAX_ANSWER_CHUNKS = 50  # the chunks an answer mark may name (top_n is at most 50)
_PAGE = 1000


class FeedbackError(ValueError):
    """A mark that cannot be stored as given; the message says why."""


@dataclass(frozen=True)
class Mark:
    mark_id: str
    collection: str
    question: str
    kind: str  # "chunk" | "answer"
    label: str  # relevant | irrelevant (chunk), good | wrong (answer)
    chunk_ids: tuple[str, ...]  # the chunk marked; for an answer, the chunks it was given
    reranker: str  # what ranked them ("none": the first stage's order)
    created_at: str
    by: str  # "app", "cli", or the API key's name

    def public(self) -> dict:
        return {**asdict(self), "chunk_ids": list(self.chunk_ids)}


def mark_id(collection: str, question: str, kind: str, chunk_id: str = "") -> str:
    """The record id of a mark: one per (collection, question, chunk or answer), so a new mark replaces it."""
    return "mark:" + hashlib.sha1("\0".join((collection, question, kind, chunk_id)).encode()).hexdigest()


def _choice_id(collection: str) -> str:
    return "choice:" + hashlib.sha1(collection.encode()).hexdigest()


class FeedbackStore:
    """Add, list, delete and export the marks of a store (embedded or a Chroma server), and each collection's
    reranker. Writes take the embedded store's write claim (rag.chroma_client.writing), as ingest does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _records(self, create: bool):
        client = open_client(self.settings)
        try:
            if create:
                return client.get_or_create_collection(FEEDBACK_COLLECTION, embedding_function=None,
                                                       metadata={"purpose": "rerank-rag feedback marks"})
            return client.get_collection(FEEDBACK_COLLECTION, embedding_function=None)
        except StoreError:
            raise
        except Exception as error:  # noqa: BLE001 - chromadb's "not found" differs by version
            if not create and ("does not exist" in str(error) or type(error).__name__ == "NotFoundError"):
                return None
            raise StoreError(f"cannot read the feedback from the store ({type(error).__name__})") from error

    def _rows(self, where: dict) -> list[tuple[str, dict]]:
        records = self._records(create=False)
        if records is None:
            return []
        out, offset = [], 0
        while True:
            got = records.get(where=where, include=["metadatas"], limit=_PAGE, offset=offset)
            out += list(zip(got["ids"], got["metadatas"], strict=True))
            if len(got["ids"]) < _PAGE:
                return out
            offset += _PAGE

    # ---- marks -----------------------------------------------------------------------------------
    def add(self, collection: str, question: str, *, chunk_id: str | None = None, label: str | None = None,
            answer: str | None = None, chunk_ids: tuple[str, ...] | list[str] = (), reranker: str | None = None,
            by: str = "app", key_id: str = "") -> Mark:
        """Store one mark: a chunk's (``chunk_id`` + ``label``) or the answer's (``answer``, with the chunks it
        was given as ``chunk_ids``). Every bound is checked before anything is read: raises FeedbackError.
        ``key_id``: the API key it was made with (its marks stop counting when the key is revoked).
        A chunk mark's question is also remembered by meaning (:mod:`rag.mark_memory`)."""
        check_user_collection(collection)
        try:
            question = clean_question(question, self.settings.max_question_chars)
        except ValueError as error:
            raise FeedbackError(str(error)) from error
        if (chunk_id is None) == (answer is None):
            raise FeedbackError("mark either a chunk (chunk_id and label) or the answer (answer), not both")
        if answer is not None:
            if answer not in ANSWER_LABELS or label is not None:
                raise FeedbackError(f"an answer mark is one of {', '.join(ANSWER_LABELS)}")
            ids, kind, label = tuple(dict.fromkeys(chunk_ids)), "answer", answer
            if len(ids) > MAX_ANSWER_CHUNKS:
                raise FeedbackError(f"an answer mark names at most {MAX_ANSWER_CHUNKS} chunks")
        else:
            if label not in CHUNK_LABELS:
                raise FeedbackError(f"a chunk mark's label is one of {', '.join(CHUNK_LABELS)}")
            ids, kind = (chunk_id,), "chunk"
        if any(not isinstance(c, str) or not c or len(c) > MAX_CHUNK_ID_CHARS for c in ids):
            raise FeedbackError(f"a chunk id is 1-{MAX_CHUNK_ID_CHARS} characters")
        self._check_chunks(collection, ids)
        new_id = mark_id(collection, question, kind, ids[0] if kind == "chunk" else "")
        records = self._records(create=True)
        limit = self.settings.feedback_max_marks
        # records.count() (every collection's marks) is one cheap call; the per-collection count reads them all
        if (records.count() >= limit and not records.get(ids=[new_id], include=[])["ids"]
                and self.count(collection) >= limit):
            raise FeedbackError(f"the collection '{collection}' holds {limit:,} marks, the "
                                "limit (RAG_FEEDBACK_MAX_MARKS); delete some on the Feedback page first")
        mark = Mark(new_id, collection, question, kind, label, ids, reranker or "none",
                    datetime.now(UTC).isoformat(timespec="seconds"), by[:64])
        meta = {**asdict(mark), "chunk_ids": json.dumps(list(ids)), "record": "mark"}
        if kind == "chunk":  # the question's vector first: a mark without it would lend nothing
            remember_mark(self.settings, mark, key_id)
        with writing(self.settings):
            records.upsert(ids=[new_id], embeddings=[[1.0]], metadatas=[meta])  # a placeholder vector: read by id
        return mark

    def _check_chunks(self, collection: str, ids: tuple[str, ...]) -> None:
        """Every chunk id names a chunk of ``collection``: a mark about nothing would train on nothing."""
        if not ids:
            return
        try:
            chunks = open_client(self.settings).get_collection(collection, embedding_function=None)
        except StoreError:
            raise
        except Exception as error:  # noqa: BLE001 - not found, by version
            raise FeedbackError(f"no collection '{collection}'") from error
        found = set(chunks.get(ids=list(ids), include=[])["ids"])
        missing = [c for c in ids if c not in found]
        if missing:
            raise FeedbackError(f"no chunk '{missing[0]}' in the collection '{collection}'")

    def marks(self, collection: str) -> list[Mark]:
        """Every mark of a collection, newest first."""
        out = []
        for record_id, meta in self._rows({"$and": [{"record": "mark"}, {"collection": collection}]}):
            out.append(Mark(record_id, meta["collection"], meta["question"], meta["kind"], meta["label"],
                            tuple(json.loads(meta.get("chunk_ids") or "[]")), meta.get("reranker", "none"),
                            meta.get("created_at", ""), meta.get("by", "")))
        return sorted(out, key=lambda m: (m.created_at, m.mark_id), reverse=True)

    def count(self, collection: str) -> int:
        return len(self._rows({"$and": [{"record": "mark"}, {"collection": collection}]}))

    def delete(self, collection: str, mark_ids: list[str]) -> int:
        """Delete these marks of ``collection`` (ids of another collection's marks are left alone)."""
        mine = {m.mark_id for m in self.marks(collection)} & set(mark_ids)
        records = self._records(create=False)
        if records is not None and mine:
            with writing(self.settings):
                records.delete(ids=sorted(mine))
            MarkMemory(self.settings).forget(collection, sorted(mine))  # the mark's absence already stops it
        return len(mine)

    def judged_questions(self, collection: str) -> dict[str, dict[str, list[str]]]:
        """question -> {"relevant": chunk ids, "irrelevant": chunk ids} of its chunk marks, oldest question first."""
        out: dict[str, dict[str, list[str]]] = {}
        for mark in reversed(self.marks(collection)):
            if mark.kind == "chunk":
                out.setdefault(mark.question, {"relevant": [], "irrelevant": []})[mark.label].append(mark.chunk_ids[0])
        return out

    def trainable_questions(self, collection: str) -> dict[str, dict[str, list[str]]]:
        """The questions with at least one chunk marked as answering them: only those can be trained on and
        scored (MRR needs a relevant chunk)."""
        return {q: m for q, m in self.judged_questions(collection).items() if m["relevant"]}

    def questions_jsonl(self, collection: str) -> str:
        """The questions file ``rerank-rag eval --collection C --questions F`` reads: one
        ``{"question", "expected_chunk_id": [...]}`` per question with a chunk marked as answering it."""
        return "".join(json.dumps({"question": q, "expected_chunk_id": m["relevant"]}, ensure_ascii=False) + "\n"
                       for q, m in self.trainable_questions(collection).items())

    def pairs_jsonl(self, collection: str) -> str:
        """Training pairs as ``rerank-rag reranker train --dataset F.jsonl`` reads them: one
        ``{"query", "positive", "negatives"}`` per relevant chunk, its negatives the chunks marked as not
        answering the same question (training mines more when there are none)."""
        questions = self.trainable_questions(collection)
        texts = self.chunk_texts(collection, [c for m in questions.values() for c in m["relevant"] + m["irrelevant"]])
        lines = []
        for question, m in questions.items():
            negatives = [texts[c] for c in m["irrelevant"] if c in texts]
            for chunk in m["relevant"]:
                if chunk in texts:
                    lines.append(json.dumps({"query": question, "positive": texts[chunk], "negatives": negatives},
                                            ensure_ascii=False) + "\n")
        return "".join(lines)

    def chunk_texts(self, collection: str, ids: list[str]) -> dict[str, str]:
        """chunk id -> what the reranker reads of it (its context line, then its text: rag.chunk_context), for the
        ids still in the collection (a deleted document's chunks are gone): a fine-tune learns what it will read."""
        ids = sorted(set(ids))
        if not ids:
            return {}
        chunks = open_client(self.settings).get_collection(collection, embedding_function=None)
        out = {}
        for start in range(0, len(ids), _PAGE):
            got = chunks.get(ids=ids[start:start + _PAGE], include=["documents", "metadatas"])
            out.update((chunk_id, with_context((meta or {}).get(CONTEXT), text))
                       for chunk_id, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True))
        return out

    # ---- the reranker a collection uses ----------------------------------------------------------
    def choice(self, collection: str) -> dict | None:
        """{"reranker", "previous", "switched_at"} when the collection was switched to a reranker, else None."""
        records = self._records(create=False)
        if records is None:
            return None
        got = records.get(ids=[_choice_id(collection)], include=["metadatas"])
        if not got["ids"]:
            return None
        meta = got["metadatas"][0]
        return {"reranker": meta["reranker"], "previous": meta.get("previous") or None,
                "switched_at": meta.get("switched_at", "")}

    def switch(self, collection: str, reranker: str, previous: str | None) -> None:
        """The collection uses ``reranker`` from now on; ``previous`` is what one click back returns to."""
        check_user_collection(collection)
        meta = {"record": "choice", "collection": collection, "reranker": reranker, "previous": previous or "",
                "switched_at": datetime.now(UTC).isoformat(timespec="seconds")}
        with writing(self.settings):
            self._records(create=True).upsert(ids=[_choice_id(collection)], embeddings=[[1.0]], metadatas=[meta])
        _forget(self.settings, collection)

    def switch_back(self, collection: str) -> str | None:
        """Back to the reranker before the last switch (the configured one when there was none); returns it."""
        current = self.choice(collection)
        if current is None:
            return None
        records = self._records(create=False)
        if current["previous"]:
            self.switch(collection, current["previous"], None)
        elif records is not None:
            with writing(self.settings):
                records.delete(ids=[_choice_id(collection)])
            _forget(self.settings, collection)
        return current["previous"]


# ---- what the pipeline asks on every question --------------------------------------------------------
_CACHE: dict[tuple[str, str], tuple[float, str | None]] = {}
_CACHE_LOCK = threading.Lock()
CHOICE_TTL_S = 2.0  # another process's switch (the app, the API) is seen within this


def _cache_key(settings: Settings, collection: str) -> tuple[str, str]:
    where = f"{settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host else str(Path(settings.data_dir).resolve())
    return where, collection


def _forget(settings: Settings, collection: str) -> None:
    with _CACHE_LOCK:
        _CACHE.pop(_cache_key(settings, collection), None)


def collection_reranker(settings: Settings, collection: str) -> str | None:
    """The reranker the collection was switched to, when the settings do not name one explicitly.

    An explicit reranker wins: one passed in (``--reranker``, a Compare side, the Settings page) or set by
    ``RAG_RERANKER``; the collection's choice replaces only the default. A folder that has gone (its data dir
    cleaned) is ignored, so a question never fails on a stale choice."""
    if "reranker" in settings.model_fields_set:
        return None
    key = _cache_key(settings, collection)
    now = time.monotonic()
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None and now - cached[0] < CHOICE_TTL_S:
        return cached[1]
    try:
        choice = FeedbackStore(settings).choice(collection)
    except StoreError:
        return None  # the question's own store access says what is wrong
    name = choice["reranker"] if choice else None
    if name and Path(name).is_absolute() and not Path(name).exists():
        name = None
    with _CACHE_LOCK:
        _CACHE[key] = (now, name)
    return name
