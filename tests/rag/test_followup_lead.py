"""Follow-ups without an LLM: the question being asked leads. A follow-up that stands alone is ranked and
answered by its own words; one that leaves out what the chat said leans on the previous question as well.
The mixed multi-turn set (tests/rag/data/followups_mixed.jsonl: both kinds) is measured by
scripts/followup_eval.py; here its figures are held as floors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.metrics import answer_contains, answer_lead
from rag import followup
from rag.pipeline import RagPipeline
from rag.settings import Settings
from tests.helpers import ingest_sample_in_small_chunks

MIXED = Path(__file__).parent / "data" / "followups_mixed.jsonl"  # 14 chats of 3 turns: first, new-topic, elliptical


@pytest.fixture(scope="module")
def small_chunks_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest_sample_in_small_chunks(tmp_path_factory.mktemp("followup-lead-store"))


@pytest.mark.parametrize("question", ["And how long is the warranty?", "Do you deliver outside the UK?",
                                      "Where are receipts submitted?", "保修期多长？", "battery charge time at 4 A"])
def test_a_whole_question_stands_alone(question: str) -> None:
    assert not followup.leans_on_context(question) and followup.context_share(question) == 0.0


@pytest.mark.parametrize("question", ["And the motor?", "How long does it take?", "What does a full one cost?",
                                      "Even with a pressure washer?", "What about accessories?", "Am I still paid?",
                                      "那电机呢？", "还有电池？"])
def test_a_follow_up_that_leaves_something_out_leans_on_the_chat(question: str) -> None:
    assert followup.leans_on_context(question) and followup.context_share(question) == followup.ELLIPTICAL_SHARE


def test_blend_moves_each_score_part_of_the_way() -> None:
    assert followup.blend([2.0, 0.0], [0.0, 4.0], 0.5) == [1.0, 2.0]
    assert followup.blend([2.0, 0.0], [0.0, 4.0], 0.0) == [2.0, 0.0]
    assert followup.fusion_weight(0.0) < 1.0 < followup.fusion_weight(0.5)


def test_an_elliptical_chain_reaches_back_to_the_question_that_stood_alone() -> None:
    history = ["How much does the Kestrel Cargo weigh?", "How far does it go on one charge?"]
    assert followup.context_query("Can I rent it out commercially?", history) == \
        "How much does the Kestrel Cargo weigh? How far does it go on one charge? Can I rent it out commercially?"
    history = ["How much does the Kestrel Cargo weigh?", "Do you deliver outside the UK?"]
    assert followup.context_query("How long does it take?", history) == \
        "Do you deliver outside the UK? How long does it take?"


def _lead_settings(store: Path) -> Settings:
    """What these tests measure is which passage leads the answer, so the abstention (rag.abstain) stays out: on
    these 64-token chunks it warns on some answered questions (tiny margins between overlapping chunks), which
    docs/abstention.md records as a known limit rather than a floor here."""
    return Settings(data_dir=store, chunk_size=64, chunk_overlap=8, abstain_threshold=1.0)


def test_a_new_topic_after_a_question_is_answered_about_itself(small_chunks_store: Path) -> None:
    """The issue's chat: the warranty follow-up led with the battery's charging time."""
    pipeline = RagPipeline(_lead_settings(small_chunks_store))
    first = pipeline.ask("How long does the battery take to charge?")
    second = pipeline.ask("And how long is the warranty?", history=[first])
    assert second.context_share == 0.0 and second.context_query  # the context still found candidates
    lead = answer_lead(second.answer)
    assert "warranty" in lead or "covered for two years" in lead, second.answer  # about the warranty...
    assert "charge" not in lead and "covered for two years" in second.answer  # ...not the charging time
    third = pipeline.ask("What if it loses capacity?", history=[first, second])
    assert third.context_share == followup.ELLIPTICAL_SHARE
    assert "replaced free of charge" in third.answer


def test_the_mixed_set_leads_with_the_follow_up(small_chunks_store: Path) -> None:
    pipeline = RagPipeline(_lead_settings(small_chunks_store))
    leads: dict[str, list[bool]] = {"new-topic": [], "elliptical": []}
    for line in MIXED.read_text().splitlines():
        history: list = []
        for turn in json.loads(line)["turns"]:
            result = pipeline.ask(turn["question"], history=history)
            if turn["kind"] in leads:
                leads[turn["kind"]].append(answer_contains([turn["expected_text"]], answer_lead(result.answer)))
            history.append(result)
    # measured (default models, scripts/followup_eval.py): new-topic 12-14/14, elliptical 12-13/14 (the
    # sentence scorers move under it); before this change (the better of the two queries' scores, fused 1:1)
    # 12/14 and 12/14 on the same tree
    assert sum(leads["new-topic"]) >= 12 and sum(leads["elliptical"]) >= 12, leads
