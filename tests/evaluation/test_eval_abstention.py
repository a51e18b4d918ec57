"""rerank-rag eval's warning rates: a tiny dataset marks questions its corpus does not answer."""

from __future__ import annotations

import json
from pathlib import Path

from evaluation.report import markdown
from evaluation.run import evaluate_dataset
from rag.pipeline import RagPipeline
from rag.settings import Settings
from tests.helpers import write_dataset

UNANSWERABLE = ["How much does the Kestrel Cargo van cost?", "Who won the 1998 chess olympiad in Elista?"]


def with_unanswerable(root: Path) -> Path:
    write_dataset(root)
    with (root / "queries.jsonl").open("a") as fh:
        for n, text in enumerate(UNANSWERABLE):
            fh.write(json.dumps({"id": f"u{n}", "text": text, "answerable": False}) + "\n")
    return root


def test_the_warning_rates_are_the_shares_of_each_kind_the_answers_warned(settings: Settings, tmp_path: Path) -> None:
    dataset = with_unanswerable(tmp_path / "tiny")
    report = evaluate_dataset(settings, dataset, rerankers=[], first_stages=["hybrid"], top_n=2)
    run = report.runs[0]
    assert report.queries == 4 and run.queries == 4  # the unanswerable questions count in no retrieval metric
    assert run.unanswerable_queries == 2
    # the same decisions the product makes for each question, asked alike
    pipeline = RagPipeline(settings.model_copy(update={"reranker": "none"}))
    collection = report.indexes[0].collection
    asked = [pipeline.ask(q, collection=collection, top_n=2, generate=False).low_confidence for q in UNANSWERABLE]
    assert run.warned_unanswerable == sum(asked) / 2
    answerable = [json.loads(line)["text"] for line in (dataset / "queries.jsonl").read_text().splitlines()]
    answerable = [q for q in answerable if q not in UNANSWERABLE and q != "A question without judgements"]
    warned = [pipeline.ask(q, collection=collection, top_n=2, generate=False).low_confidence for q in answerable]
    assert run.warned_answerable == sum(warned) / 4
    text = markdown(report)
    assert "warned \\| unanswerable" in text or "warned | unanswerable" in text
    assert "questions marked unanswerable" in text


def test_the_threshold_moves_both_rates(settings: Settings, tmp_path: Path) -> None:
    dataset = with_unanswerable(tmp_path / "tiny")
    always = evaluate_dataset(settings.model_copy(update={"abstain_threshold": 0.0}), dataset, rerankers=[],
                              first_stages=["dense"]).runs[0]
    never = evaluate_dataset(settings.model_copy(update={"abstain_threshold": 1.0}), dataset, rerankers=[],
                             first_stages=["dense"]).runs[0]
    assert (always.warned_unanswerable, always.warned_answerable) == (1.0, 1.0)
    assert (never.warned_unanswerable, never.warned_answerable) == (0.0, 0.0)


def test_a_set_without_unanswerable_questions_reports_no_rates(settings: Settings, tmp_path: Path) -> None:
    report = evaluate_dataset(settings, write_dataset(tmp_path / "plain"), rerankers=[], first_stages=["dense"])
    assert report.runs[0].warned_unanswerable is None and "warned" not in report.table()
