"""Marks as memory at query time (rag.mark_memory): a mark lifts its chunk for a question alike in meaning and
not for an unrelated one, and the guard rails hold. Real embedder (e5), real reranker, real embedded Chroma with
the sample documents, real API keys."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from api.keys import KeyStore
from api.server import create_app
from app_pages.rendering import chunk_frame
from ingest.pipeline import Ingestor
from rag.feedback import FeedbackStore
from rag.mark_memory import lend
from rag.pipeline import RagPipeline
from rag.rerank import blend
from rag.settings import Settings
from rag.store import KnowledgeBase, collection_names
from tests.feedback.conftest import QUESTIONS
from tests.helpers import SAMPLE

MARKED = QUESTIONS[0]  # "How long does the battery take to charge?"
PARAPHRASE = "How much time does it take to charge the battery?"
ALSO_NEAR = "How long until the battery is fully charged?"
UNRELATED = "How many days of paid holiday do employees get?"


def _hit(result, chunk_id: str):
    return next((c for c in result.candidates if c.chunk_id == chunk_id), None)


def _order(result) -> list[str]:
    return [c.chunk_id for c in result.chunks]


def test_a_mark_lifts_its_chunk_for_a_paraphrase_and_not_for_an_unrelated_question(store_copy: Path) -> None:
    settings = Settings(data_dir=store_copy)
    pipeline, store = RagPipeline(settings), FeedbackStore(settings)
    before, unrelated_before = pipeline.ask(PARAPHRASE, generate=False), pipeline.ask(UNRELATED, generate=False)
    # the fifth: a mark's lift is scaled by the reranker's belief that the chunk answers (rag.mark_memory.agreed);
    # the sample's third and fourth sit below gaps wider than the lift the reranker lets a mark give them
    fifth = before.chunks[4].chunk_id
    shown = {c.chunk_id for c in before.candidates}
    unseen = next(c for c in KnowledgeBase(settings).chunks.get(include=[])["ids"] if c not in shown)
    store.add("default", MARKED, chunk_id=fifth, label="relevant")
    store.add("default", MARKED, chunk_id=unseen, label="relevant")

    after = pipeline.ask(PARAPHRASE, generate=False)
    lifted = _hit(after, fifth)
    assert lifted.final_rank < 5 and lifted.marks_score > 0
    assert lifted.marked_question == MARKED and lifted.mark_note == "marked helpful for a similar question"
    joined = _hit(after, unseen)  # the first stage never found it: the mark brought it in and the blend lifted it
    assert joined is not None and joined.joined_by_marks and joined.found_by == "marks" and joined.marks_score > 0
    assert joined.rerank_score is not None and joined.final_rank <= settings.rerank_depth + 2

    unrelated_after = pipeline.ask(UNRELATED, generate=False)
    assert _order(unrelated_after) == _order(unrelated_before)
    assert all(c.marks_score is None and not c.joined_by_marks for c in unrelated_after.candidates)
    assert _hit(unrelated_after, unseen) is None or _hit(unrelated_before, unseen) is not None


def test_deleting_a_mark_removes_its_effect_at_once(store_copy: Path) -> None:
    settings = Settings(data_dir=store_copy)
    pipeline, store = RagPipeline(settings), FeedbackStore(settings)
    before = pipeline.ask(PARAPHRASE, generate=False)
    mark = store.add("default", MARKED, chunk_id=before.chunks[4].chunk_id, label="relevant")
    assert _order(pipeline.ask(PARAPHRASE, generate=False)) != _order(before)
    store.delete("default", [mark.mark_id])
    after = pipeline.ask(PARAPHRASE, generate=False)
    assert _order(after) == _order(before) and all(c.marks_score is None for c in after.candidates)


def test_marks_of_another_collection_never_count(store_copy: Path) -> None:
    settings = Settings(data_dir=store_copy, chunk_size=64, chunk_overlap=8)  # the sample store's chunking
    Ingestor(settings, "other").ingest_paths([SAMPLE])  # the same documents: the same chunk ids as "default"
    assert "other" in collection_names(settings)
    pipeline, store = RagPipeline(settings), FeedbackStore(settings)
    before = pipeline.ask(PARAPHRASE, generate=False)
    store.add("other", MARKED, chunk_id=before.chunks[3].chunk_id, label="relevant")
    after = pipeline.ask(PARAPHRASE, generate=False)
    assert _order(after) == _order(before) and all(c.marks_score is None for c in after.candidates)
    lifted = _hit(pipeline.ask(PARAPHRASE, collection="other", generate=False), before.chunks[3].chunk_id)
    assert lifted.marks_score > 0  # the mark works where it was made


def test_marks_made_with_a_revoked_key_stop_counting(store_copy: Path) -> None:
    settings = Settings(data_dir=store_copy)
    pipeline, store, keys = RagPipeline(settings), FeedbackStore(settings), KeyStore(settings)
    key, _ = keys.create("alice", collection="*", scope="write")
    before = pipeline.ask(PARAPHRASE, generate=False)
    target = before.chunks[3].chunk_id
    store.add("default", MARKED, chunk_id=target, label="relevant", by=key.name, key_id=key.key_id)
    assert _hit(pipeline.ask(PARAPHRASE, generate=False), target).marks_score > 0
    keys.revoke("alice")
    after = pipeline.ask(PARAPHRASE, generate=False)
    assert _order(after) == _order(before) and _hit(after, target).marks_score is None


def test_a_changed_document_loses_its_chunks_marks(store_copy: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=store_copy, chunk_size=64, chunk_overlap=8)
    pipeline, store = RagPipeline(settings), FeedbackStore(settings)
    before = pipeline.ask(PARAPHRASE, generate=False)
    target = next(c for c in before.chunks[1:] if c.source == "product-faq.txt")
    store.add("default", MARKED, chunk_id=target.chunk_id, label="relevant")
    assert _hit(pipeline.ask(PARAPHRASE, generate=False), target.chunk_id).marks_score > 0
    changed = tmp_path / "changed"
    changed.mkdir()
    shutil.copy(SAMPLE / "product-faq.txt", changed / "product-faq.txt")
    with (changed / "product-faq.txt").open("a", encoding="utf-8") as faq:
        faq.write("\nQ: Does the bike come in blue?\nA: Yes, in blue and in grey.\n")
    assert [r.status for r in Ingestor(settings).ingest_paths([changed])] == ["ok"]
    after = pipeline.ask(PARAPHRASE, generate=False)
    assert all(c.marks_score is None for c in after.candidates)  # the new version's chunks were never marked
    assert _hit(after, target.chunk_id) is None


def test_one_markers_lowering_counts_for_them_and_for_everyone_only_after_a_second_opinion(store_copy: Path) -> None:
    settings = Settings(data_dir=store_copy)
    pipeline, store, keys = RagPipeline(settings), FeedbackStore(settings), KeyStore(settings)
    alice, _ = keys.create("alice", collection="*", scope="write")
    bob, _ = keys.create("bob", collection="default", scope="write")
    carol = "key:" + keys.create("carol", collection="default", scope="read")[0].key_id
    before = pipeline.ask(PARAPHRASE, generate=False)
    top = before.chunks[0].chunk_id
    store.add("default", MARKED, chunk_id=top, label="irrelevant", by=alice.name, key_id=alice.key_id)
    for_carol = pipeline.ask(PARAPHRASE, generate=False, asker=carol)
    assert _order(for_carol) == _order(before) and _hit(for_carol, top).marks_score is None
    was = _hit(before, top).final_score
    for_alice = _hit(pipeline.ask(PARAPHRASE, generate=False, asker="key:" + alice.key_id), top)
    assert for_alice.marks_score < 0 and for_alice.final_score < was  # her own questions: lowered
    assert for_alice.mark_note == "marked as not answering a similar question"
    store.add("default", ALSO_NEAR, chunk_id=top, label="irrelevant", by=bob.name, key_id=bob.key_id)
    lowered = _hit(pipeline.ask(PARAPHRASE, generate=False, asker=carol), top)
    assert lowered.marks_score < 0 and lowered.final_score < was


def test_lend_weighs_by_similarity_and_the_blend_adds_it_on_its_own_scale() -> None:
    near = [{"chunk_id": "a", "label": "relevant", "similarity": 0.95, "question": "q1", "marker": "by:app"},
            {"chunk_id": "a", "label": "relevant", "similarity": 0.92, "question": "q2", "marker": "by:app"},
            {"chunk_id": "b", "label": "relevant", "similarity": 0.89, "question": "q3", "marker": "by:app"},
            {"chunk_id": "c", "label": "irrelevant", "similarity": 1.0, "question": "q4", "marker": "key:x"}]
    lent = lend(near, 0.9, asker=None)
    assert set(lent) == {"a"}  # b below the threshold; c lowered by one marker only, who is not asking
    assert abs(lent["a"].score - (0.5 + 0.2)) < 1e-6 and lent["a"].question == "q1"
    assert lend(near, 0.9, asker="key:x")["c"].score == -1.0
    plain = blend([2.0, 1.0, 0.0], [0.9, 0.5, 0.1], "linear", 0.7)
    lifted = blend([2.0, 1.0, 0.0], [0.9, 0.5, 0.1], "linear", 0.7, marks=[0.0, 0.0, 1.0], marks_weight=0.5)
    assert lifted[:2] == plain[:2] and abs(lifted[2] - plain[2] - 0.5) < 1e-9
    assert blend([2.0, 1.0], [0.9, 0.5], "linear", 1.0, marks=[0.0, 0.0], marks_weight=0.5) == [2.0, 1.0]


def test_through_the_api_a_keys_mark_moves_a_colleagues_question_until_the_key_is_revoked(store_copy: Path) -> None:
    settings = Settings(data_dir=store_copy)
    keys = KeyStore(settings)
    writer = keys.create("writer", collection="default", scope="write")[1]
    reader = keys.create("reader", collection="default", scope="read")[1]
    target = RagPipeline(settings).ask(PARAPHRASE, generate=False).chunks[4].chunk_id
    with TestClient(create_app(settings, warm=False), base_url="http://127.0.0.1") as http:
        made = http.post("/v1/feedback", headers={"Authorization": f"Bearer {writer}"},
                         json={"question": MARKED, "chunk_id": target, "label": "relevant"})
        assert made.status_code == 200, made.text

        def retrieved() -> dict:
            got = http.post("/v1/retrieve", headers={"Authorization": f"Bearer {reader}"},
                            json={"question": PARAPHRASE})
            assert got.status_code == 200, got.text
            return next(c for c in got.json()["candidates"] if c["chunk_id"] == target)

        lifted = retrieved()
        assert lifted["marks_score"] > 0 and lifted["marked_question"] == MARKED and lifted["rerank_rank"] < 5
        keys.revoke("writer")
        assert retrieved()["marks_score"] is None


def test_the_chunk_table_says_when_a_mark_moved_a_chunk(store_copy: Path) -> None:
    settings = Settings(data_dir=store_copy)
    pipeline = RagPipeline(settings)
    target = pipeline.ask(PARAPHRASE, generate=False).chunks[3].chunk_id
    FeedbackStore(settings).add("default", MARKED, chunk_id=target, label="relevant")
    result = pipeline.ask(PARAPHRASE, generate=False)
    notes = dict(zip((c.chunk_id for c in result.chunks), chunk_frame(result.chunks)["marks"], strict=True))
    assert notes[target] == "marked helpful for a similar question"
    assert {note for chunk, note in notes.items() if chunk != target} <= {""}
