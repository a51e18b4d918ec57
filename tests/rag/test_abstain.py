"""The abstention decision (rag/abstain.py): each piece of evidence, the fitted model's reading of it, the wording."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rag import abstain
from rag.types import ChunkHit


def hit(n: int, text: str, *, rerank: float | None = None, cosine: float | None = None, dense: int | None = None,
        bm25: int | None = None, source: str = "doc.txt", **extra) -> ChunkHit:
    return ChunkHit(chunk_id=f"c{n}", doc_id=f"d{n}", source=source, text=text, retrieval_rank=n,
                    retrieval_score=1.0 / n, rerank_score=rerank, dense_score=cosine, dense_rank=dense,
                    bm25_rank=bm25, **extra)


def test_named_terms_are_the_names_and_periods_past_the_first_word() -> None:
    assert abstain.named_terms("What was Microsoft's revenue in Q3 2023?") == ["microsoft", "q3", "2023"]
    assert abstain.named_terms("How much does the Kestrel Cargo cost?") == ["kestrel", "cargo"]
    assert abstain.named_terms("What is the refund window?") == []
    assert abstain.named_terms("《战国无双3》是由哪两个公司合作开发的？") == ["战国无双3"]
    # each sentence's first word is no name, nor is a filing's form (its "10" and "Qs" no passage prints)
    assert abstain.named_terms("What role have exchange rates played for NVIDIA? Please list them.") == ["nvidia"]
    assert abstain.named_terms("Did Amazon's liquidity change in these 10-Qs?") == ["amazon"]
    # the names looked up in the whole collection: things, not numbers or quarters (those are the periods')
    assert abstain.entity_names("What was Microsoft's revenue in Q3 2023?") == ["microsoft"]
    assert abstain.entity_names("《战国无双3》是由哪两个公司合作开发的？") == ["战国无双3"]


def test_name_coverage_finds_what_the_top_passages_never_mention() -> None:
    chunks = [hit(1, "Apple's net sales in Q3 2023 were $81.8 billion."), hit(2, "Revenue rose in 2023.")]
    share, missing = abstain.name_coverage("What was Microsoft's revenue in Q3 2023?", chunks)
    assert missing == ["microsoft"] and share == pytest.approx(2 / 3)
    assert abstain.name_coverage("What is the refund window?", chunks) == (1.0, [])


def test_name_coverage_reads_the_documents_identity_where_chunks_carry_it() -> None:
    plain = hit(1, "Revenue was $56.2 billion.", source="10q.pdf")
    assert abstain.name_coverage("What was Microsoft's revenue?", [plain])[1] == ["microsoft"]
    # a chunk that knows its document (the chunk-context issue's doc_title) carries the name without saying it
    try:
        titled = hit(1, "Revenue was $56.2 billion.", source="10q.pdf", doc_title="Microsoft Corp 10-Q")
    except Exception:  # noqa: BLE001 - ChunkHit has no doc_title yet: the source still counts
        titled = hit(1, "Revenue was $56.2 billion.", source="microsoft-10q.pdf")
    assert abstain.name_coverage("What was Microsoft's revenue?", [titled]) == (1.0, [])


def test_word_coverage_counts_bm25_tokens_and_chinese_bigrams() -> None:
    chunks = [hit(1, "大熊猫是中国特有的熊科动物。")]
    assert abstain.word_coverage("野生大熊猫有多少只？", chunks) < abstain.word_coverage("大熊猫是什么动物？", chunks)
    english = [hit(1, "The battery charges in two hours.")]
    assert abstain.word_coverage("How long does the battery take to charge?", english) > \
        abstain.word_coverage("What does the warranty cover?", english)


def test_agreement_is_the_share_of_the_dense_top5_bm25_ranks_top5_too() -> None:
    both = [hit(i, "x", dense=i, bm25=i) for i in range(1, 6)]
    assert abstain.agreement(both) == 1.0
    apart = [hit(i, "x", dense=i, bm25=6 - i if i <= 2 else 10 + i) for i in range(1, 6)]
    assert abstain.agreement(apart) == pytest.approx(2 / 5)
    assert abstain.agreement([hit(i, "x", dense=i) for i in range(1, 6)]) is None  # dense only: no judgement


def test_reranked_evidence_best_margin_and_how_many_clear_it() -> None:
    candidates = [hit(1, "a", rerank=0.9), hit(2, "b", rerank=0.6), hit(3, "c", rerank=0.1), hit(4, "d")]
    family, features = abstain.gather("Why?", candidates[:2], candidates, sentence_score=0.8)
    assert family == "reranked"
    assert features["best_logit"] == pytest.approx(math.log(0.9 / 0.1))
    assert features["margin"] == pytest.approx(0.3)
    assert features["relevant_count"] == 2
    assert features["sentence_logit"] == pytest.approx(math.log(0.8 / 0.2))
    assert features["names_held"] is None and features["quarter_coverage"] is None  # no collection evidence given
    held = abstain.gather("Why?", candidates[:2], candidates, names_held=(0.5, ["tesla"]), quarters=(1.0, []))[1]
    assert held["names_held"] == 0.5 and held["quarter_coverage"] == 1.0


def test_a_quarter_the_collection_holds_no_document_of_is_evidence_and_reason(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.json", {"quarter_coverage": -4.0}, mean={"quarter_coverage": 1.0}, threshold=0.6)
    question = "What were Apple's net sales in Q3 2023?"
    passages = [hit(1, "Net sales were $94.8 billion in the quarter.", rerank=0.8, source="2023 Q2 AAPL.pdf")]
    missing = abstain.decide(question, passages, passages, quarters=(0.0, ["Q3 2023"]), models_path=model)
    assert missing.fires and missing.features["quarter_coverage"] == 0.0
    assert "no document in the collection is of Q3 2023" in missing.reason
    held = abstain.decide(question, passages, passages, quarters=(1.0, []), models_path=model)
    assert not held.fires
    unasked = abstain.decide(question, passages, passages, quarters=None, models_path=model)
    assert unasked.features["quarter_coverage"] is None and not unasked.fires  # no evidence moves nothing
    # every asked quarter missing fires whatever the model says (a fact); one of two missing is the model's
    ignoring = write_model(tmp_path / "n.json", {"best_logit": -1.0}, mean={}, threshold=0.9)
    gated = abstain.decide(question, passages, passages, quarters=(0.0, ["Q3 2023"]), models_path=ignoring)
    assert gated.fires and gated.reason.startswith("no document in the collection is of Q3 2023")
    assert not abstain.decide(question, passages, passages, quarters=(0.5, ["Q3 2023"]), models_path=ignoring).fires
    assert not abstain.decide(question, passages, passages, quarters=(0.0, ["Q3 2023"]), models_path=ignoring,
                              threshold=1.0).fires  # the setting that never warns


def test_first_stage_evidence_when_nothing_was_reranked() -> None:
    candidates = [hit(i, "熊猫", cosine=c) for i, c in enumerate([0.85, 0.80, 0.79, 0.78, 0.77], 1)]
    family, features = abstain.gather("熊猫吃什么？", candidates[:3], candidates)
    assert family == "first_stage"
    assert features["best_cosine"] == 0.85
    assert features["cosine_margin"] == pytest.approx(0.85 - 0.785)
    assert features["sentence_cosine"] is None


def write_model(path: Path, coef: dict[str, float], mean: dict[str, float], threshold: float = 0.5) -> Path:
    names = list(coef)
    model = {"features": names, "mean": [mean.get(n, 0.0) for n in names], "scale": [1.0] * len(names),
             "coef": [coef[n] for n in names], "intercept": 0.0, "threshold": threshold}
    path.write_text(json.dumps({"models": {n: model for n in ("reranked", "reranked+sentence", "first_stage",
                                                                "first_stage+sentence")}}))
    return path


def test_the_decision_fires_above_its_operating_point_and_says_why(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.json", {"best_logit": -1.0, "name_coverage": -2.0},
                        mean={"name_coverage": 1.0})  # most questions' names are in their passages
    question = "How much does the Kestrel Cargo cost?"
    weak = [hit(1, "The Falcon van costs $30,000.", rerank=0.2)]
    decided = abstain.decide(question, weak, weak, models_path=model)
    assert decided.fires and decided.probability > 0.5 and decided.family == "reranked"
    assert "'kestrel', 'cargo'" in decided.reason and "0.20" in decided.reason
    strong = [hit(1, "The Kestrel Cargo costs $42,000.", rerank=0.95)]
    assert not abstain.decide(question, strong, strong, models_path=model).fires
    assert abstain.decide(question, strong, strong, models_path=model, threshold=0.0).fires  # the setting overrides


def test_a_name_the_whole_collection_never_mentions_is_said_by_name(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.json", {"names_held": -3.0, "name_coverage": -2.0},
                        mean={"names_held": 1.0, "name_coverage": 1.0})
    passages = [hit(1, "Apple's net sales were $81.8 billion.", rerank=0.6)]
    decided = abstain.decide("What was Tesla's revenue?", passages, passages, names_held=(0.0, ["tesla"]),
                             models_path=model)
    assert decided.fires and "no document in the collection mentions 'tesla'" in decided.reason
    assert "similarity" not in decided.reason  # the reranked family's reason names no embedding
    assert "top passages never mention" not in decided.reason  # the same name is not said twice


def test_nothing_found_fires_without_a_model() -> None:
    decided = abstain.decide("anything", [], [])
    assert decided.fires and decided.reason


def test_the_shipped_model_reads_its_evidence_the_right_way() -> None:
    models = abstain.load_models()
    for name, model in models.items():
        coef = dict(zip(model["features"], model["coef"], strict=True))
        assert 0.0 < model["threshold"] < 1.0, name
        # stronger evidence that a passage answers makes a warning less likely: the best score without the
        # sentence's (with it the two share their evidence, and the sentence's speaks), the words covered
        for feature in ("sentence_logit", "sentence_cosine", "word_coverage") if name.endswith("+sentence") else \
                ("best_logit", "best_cosine", "word_coverage"):
            if feature in coef:
                assert coef[feature] < 0, (name, feature)


def test_the_unanswered_answer_says_so_then_shows_the_closest_passages() -> None:
    chunks = [hit(1, "The Falcon van costs $30,000. " * 20, source="prices.pdf", page=3), hit(2, "Vans are vehicles.")]
    text = abstain.unanswered_answer("How much does the Kestrel Cargo cost?", chunks)
    assert text.startswith(abstain.UNANSWERED)
    assert "[1] prices.pdf, p. 3: The Falcon van costs $30,000." in text and "[2] doc.txt: Vans are vehicles." in text
    assert len(text) < 600  # openings, not whole passages
    assert abstain.unanswered_answer("熊猫有多少只？", chunks).startswith(abstain.UNANSWERED_ZH)
