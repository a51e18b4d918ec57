"""The read path over a real store: ranks and scores of both stages, timings, the extractive answer."""

from __future__ import annotations

import re
import math
from pathlib import Path

import pytest

from rag.pipeline import RagPipeline
from rag.settings import Settings
from tests.helpers import ingest_sample_in_small_chunks


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest_sample_in_small_chunks(tmp_path_factory.mktemp("sample-store"))


def test_without_rerank_the_first_retrieval_order_is_kept(sample_store: Path) -> None:
    result = RagPipeline(Settings(data_dir=sample_store, reranker="none")).ask(
        "How long does the battery take to charge?", top_k=8, top_n=3)
    assert result.reranked is False and result.reranker is None
    assert len(result.candidates) == 8 and len(result.chunks) == 3
    assert [c.retrieval_rank for c in result.candidates] == list(range(1, 9))
    scores = [c.retrieval_score for c in result.candidates]
    # hybrid, relative fusion: each side's scores scaled to [0, 1] over its own list, then added
    assert scores == sorted(scores, reverse=True) and 0 <= scores[-1] <= scores[0] <= 2
    assert all(c.rerank_rank is None and c.rerank_score is None for c in result.candidates)
    assert result.chunks == result.candidates[:3]
    assert any("4.5 hours" in c.text for c in result.chunks)
    assert result.timings_ms.rerank == 0


def test_rerank_orders_by_its_scores_and_keeps_both_ranks(sample_store: Path, plumbing_reranker: str) -> None:
    # rerank_weight 1: the rerank score alone orders (the default blends in the first stage); depth 10: all of
    # the top 10 reranked (the default cascade reranks fewer: tests/rag/test_speed_levers.py)
    pipeline = RagPipeline(Settings(data_dir=sample_store, reranker=plumbing_reranker, rerank_weight=1.0,
                                    rerank_depth=10))
    result = pipeline.ask("Can I return a bike?", top_k=10, top_n=4, generate=False)
    assert result.reranked and result.reranker == plumbing_reranker
    candidates = result.candidates
    assert [c.retrieval_rank for c in candidates] == list(range(1, 11))
    assert sorted(c.rerank_rank for c in candidates) == list(range(1, 11))
    by_rerank = sorted(candidates, key=lambda c: c.rerank_rank)
    assert [c.rerank_score for c in by_rerank] == sorted((c.rerank_score for c in candidates), reverse=True)
    assert result.chunks == by_rerank[:4]
    assert all(c.rank_change == c.retrieval_rank - c.rerank_rank for c in candidates)
    # the same chunk keeps its retrieval score whatever the reranker says
    plain = pipeline.ask("Can I return a bike?", top_k=10, top_n=4, rerank=False, generate=False)
    assert {c.chunk_id: c.retrieval_score for c in plain.candidates} == {c.chunk_id: c.retrieval_score for c in candidates}
    t = result.timings_ms
    assert t.rerank > 0 and t.generate == 0
    assert t.total >= t.embed + t.search + t.rerank


def test_rerank_weight_blends_both_stages_into_the_final_order(sample_store: Path, plumbing_reranker: str) -> None:
    def ask(weight: float):
        settings = Settings(data_dir=sample_store, reranker=plumbing_reranker, rerank_weight=weight, rerank_depth=10,
                            rerank_blend="linear")
        return RagPipeline(settings).ask("Can I return a bike?", top_k=10, top_n=4, generate=False)

    alone, blended, retrieval_only = ask(1.0), ask(0.5), ask(0.0)
    assert not alone.blended and alone.rerank_weight == 1.0
    assert all(c.final_score == c.rerank_score for c in alone.candidates)
    # weight 0: the first stage's order comes back, though the reranker ran
    assert [c.rerank_rank for c in retrieval_only.candidates] == list(range(1, 11))
    assert retrieval_only.candidates[0].final_score == 1.0 and retrieval_only.candidates[-1].final_score == 0.0
    # weight 0.5: the mean of the min-max normalised rerank logits and first-stage scores orders the chunks
    # (this reranker is not in the catalog: its readable score is the plain sigmoid of its logit)
    def norm(xs):
        return [(x - min(xs)) / (max(xs) - min(xs)) for x in xs]

    cands = blended.candidates
    logits = [math.log(c.rerank_score / (1 - c.rerank_score)) for c in cands]
    expected = [(a + b) / 2 for a, b in zip(norm(logits), norm([c.retrieval_score for c in cands]))]
    assert [c.final_score for c in cands] == pytest.approx(expected, abs=1e-3)  # inputs are rounded
    assert blended.blended and [c.chunk_id for c in blended.chunks] == [
        c.chunk_id for c in sorted(cands, key=lambda c: -c.final_score)[:4]]
    with pytest.raises(ValueError, match="rerank_weight"):
        Settings(rerank_weight=1.5)


def test_a_question_in_a_language_the_reranker_does_not_read_keeps_the_first_stage_order(sample_store: Path) -> None:
    settings = Settings(data_dir=sample_store)  # the shipped reranker: English, says the catalog
    chinese = RagPipeline(settings).ask("电池充满电需要多长时间？", top_k=8, top_n=3, generate=False)
    assert not chinese.reranked and chinese.reranker is None and chinese.timings_ms.rerank == 0
    assert "does not read Chinese" in chinese.rerank_skipped
    assert [c.final_rank for c in chinese.candidates] == list(range(1, 9))  # the first stage's order
    assert chinese.public_json()["rerank_skipped"] == chinese.rerank_skipped
    english = RagPipeline(settings).ask("How long does the battery take to charge?", top_k=8, generate=False)
    assert english.reranked and english.rerank_skipped is None
    forced = RagPipeline(Settings(data_dir=sample_store, rerank_every_language=True)).ask(
        "电池充满电需要多长时间？", top_k=8, generate=False)
    assert forced.reranked and forced.rerank_skipped is None


def test_extractive_answer_cites_its_chunks(sample_store: Path) -> None:
    result = RagPipeline(Settings(data_dir=sample_store)).ask("How many days of paid holiday do employees get?")
    assert result.answer_mode == "extractive" and result.error is None
    assert "28 days of paid holiday" in result.answer
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", result.answer)}
    assert cited and cited <= set(range(1, len(result.chunks) + 1))
    assert any("28 days" in result.chunks[n - 1].text for n in cited)
    assert result.timings_ms.generate > 0


def test_top_n_never_exceeds_top_k_and_empty_collections_answer_plainly(sample_store: Path, settings: Settings) -> None:
    result = RagPipeline(Settings(data_dir=sample_store)).ask("warranty", top_k=2, top_n=5)
    assert len(result.chunks) == len(result.candidates) == 2
    empty = RagPipeline(settings).ask("Anything there?")
    assert empty.chunks == [] and empty.candidates == []
    assert "nothing" in empty.answer.lower()
    with pytest.raises(ValueError, match="empty"):
        RagPipeline(settings).ask("   ")


def test_low_confidence_follows_the_abstention_threshold(sample_store: Path, plumbing_reranker: str) -> None:
    base = Settings(data_dir=sample_store, reranker=plumbing_reranker)
    result = RagPipeline(base).ask("warranty claim", generate=False)
    p = result.abstention.probability
    assert result.abstention.family == "reranked" and result.abstention.model == "reranked"  # no sentence read
    assert RagPipeline(base.model_copy(update={"abstain_threshold": max(p - 0.01, 0.0)})).ask(
        "warranty claim", generate=False).low_confidence
    assert not RagPipeline(base.model_copy(update={"abstain_threshold": min(p + 0.01, 1.0)})).ask(
        "warranty claim", generate=False).low_confidence


def test_when_the_decision_fires_the_answer_says_so_and_shows_the_closest_passages(sample_store: Path) -> None:
    from rag.abstain import CLOSEST, UNANSWERED

    fired = RagPipeline(Settings(data_dir=sample_store, abstain_threshold=0.0)).ask("How long is the refund window?")
    assert fired.low_confidence and fired.low_confidence_reason
    assert fired.answer.startswith(UNANSWERED) and CLOSEST in fired.answer
    assert f"[1] {fired.chunks[0].citation}:" in fired.answer and not fired.answer_spans  # no quote to box
    assert fired.abstention.model == "reranked+sentence"  # the extractive answer's sentence counted
    quiet = RagPipeline(Settings(data_dir=sample_store, abstain_threshold=1.0)).ask("How long is the refund window?")
    assert not quiet.low_confidence and not quiet.answer.startswith(UNANSWERED) and quiet.answer_spans


def test_the_fitted_decision_tells_an_unrelated_question_from_an_answered_one(sample_store: Path) -> None:
    pipeline = RagPipeline(Settings(data_dir=sample_store))
    answered = pipeline.ask("How long do I have to return a bike?")
    unrelated = pipeline.ask("What was Microsoft's revenue in Q3 2023?")
    assert answered.abstention.probability < unrelated.abstention.probability
    assert unrelated.low_confidence and unrelated.answer.startswith("The documents do not seem")
    assert not answered.low_confidence


def test_sentences_rejoin_wrapped_lines_and_keep_table_rows() -> None:
    from rag.answer import split_sentences

    text = ("Net sales of the 10-\ninch model fell sharply in the quarter. Services grew.\n"
            "Total net sales $ 82,959 $ 81,434\nOverview\nThe Company designs bicycles for cities.\n" + "x" * 500)
    assert split_sentences(text) == [
        "Net sales of the 10- inch model fell sharply in the quarter.",
        "Total net sales $ 82,959 $ 81,434",
        "The Company designs bicycles for cities.",
        "x" * 400 + " …",
    ]


def test_a_question_of_control_characters_is_empty_and_an_overlong_one_is_refused(sample_store: Path) -> None:
    pipeline = RagPipeline(Settings(data_dir=sample_store, reranker="none", max_question_chars=50))
    with pytest.raises(ValueError, match="the question is empty"):
        pipeline.ask("\x00\x00\x00 \x07", generate=False)
    with pytest.raises(ValueError, match="limit is 50"):
        pipeline.ask("why " * 20, generate=False)
    assert pipeline.ask("\x00warranty\x00 claim", generate=False).question == "warranty claim"
