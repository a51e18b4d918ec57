"""Scoring answers against gold ones: the normalisation, "contains", the lead, and `rerank-rag eval --answers`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.datasets import DatasetFormatError, load_dataset
from evaluation.index import EvalError, index_corpus
from evaluation.metrics import answer_contains, answer_lead, answer_word_recall, normalize_answer, strip_citations
from evaluation.run import evaluate_dataset
from rag.cli import main
from rag.pipeline import RagPipeline
from rag.settings import Settings
from tests.helpers import CORPUS, QUERIES, write_dataset

GOLD = {"q1": ["Ada Lovelace"], "q2": ["Rayleigh scattering"], "q3": ["Camellia sinensis"], "q4": ["Paris"]}


def test_normalisation_folds_width_case_punctuation_and_space() -> None:
    assert normalize_answer("  Levi's  Stadium,\nSanta Clara. ") == "levi s stadium santa clara"
    assert normalize_answer("ＦＵＬＬ　Ｗｉｄｔｈ！") == "full width"  # NFKC: full-width letters and space
    assert normalize_answer("136 次") == normalize_answer("136次") == "136次"  # no spaces in CJK text
    assert normalize_answer("「战史演武」&「争霸演武」") == "战史演武争霸演武"  # "&" is punctuation too


def test_contains_needs_whole_words_and_ignores_citations() -> None:
    assert answer_contains(["Denver Broncos"], "The DENVER broncos won 24–10. [1]")
    assert answer_contains(["\"golden anniversary\""], "the league emphasised the golden anniversary [2]")
    assert not answer_contains(["four"], "He won fourteen titles. [1]")  # not inside a longer word
    assert not answer_contains(["1"], "Nothing numeric here. [1]")  # a citation is not an answer
    assert answer_contains(["1"], "It was 1 km. [1]")
    assert answer_contains(["光荣和ω-force"], "《战国无双3》是由光荣和ω-force开发的。[1]")
    assert not answer_contains(["", "  "], "anything")  # a blank gold answer matches nothing
    assert answer_contains(["x", "Paris"], "Paris is the capital. [3]")  # any of the gold answers
    assert strip_citations("A [1] b [12].") == "A b."


def test_the_lead_is_the_text_before_the_first_citation() -> None:
    assert answer_lead("It takes 4.5 hours. [1] The fast one 3 hours. [2]") == "It takes 4.5 hours."
    assert answer_lead("No citation at all.") == "No citation at all."
    assert not answer_contains(["3 hours"], answer_lead("It takes 4.5 hours. [1] The fast one 3 hours. [2]"))


def _with_answers(root: Path) -> Path:
    write_dataset(root)
    (root / "answers.jsonl").write_text("".join(json.dumps({"id": q, "answers": a}) + "\n" for q, a in GOLD.items()))
    return root


def test_answers_load_with_the_dataset_and_bad_lines_are_named(tmp_path: Path) -> None:
    dataset = load_dataset(_with_answers(tmp_path / "tiny"))
    assert dataset.answers["q1"] == ["Ada Lovelace"] and set(dataset.answers) == set(GOLD)
    assert load_dataset(write_dataset(tmp_path / "plain")).answers == {}
    (tmp_path / "tiny" / "answers.jsonl").write_text('{"id": "q1", "answers": "not a list"}\n')
    with pytest.raises(DatasetFormatError, match="answers.jsonl:1"):
        load_dataset(tmp_path / "tiny")


def test_eval_answers_scores_each_run_and_the_json_carries_it(tmp_path: Path, capsys) -> None:
    dataset = _with_answers(tmp_path / "tiny")
    store = tmp_path / "store"
    assert main(["eval", "--dataset", str(dataset), "--data-dir", str(store), "--retrieval", "dense",
                 "--top-n", "2", "--answers", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    runs = {run["name"]: run for run in report["runs"]}
    from rag import catalog

    assert list(runs) == ["dense", f"rerank:{catalog.DEFAULT_RERANKER}"]
    for run in runs.values():
        assert run["answer_queries"] == 4 and run["answer_hit_queries"] == 4  # these easy questions all hit
        # one-sentence documents holding the answer: every answer, and its lead, contains the gold one
        assert run["answer_contains"] == run["answer_contains_given_hit"] == run["lead_contains_given_hit"] == 1.0
        assert 20 < run["answer_chars"] < 400
        assert run["answer_ms"]["p50"] > 0
        assert run["llm_answer_contains"] is None  # no LLM configured
    # without --answers the runs carry no answer fields, and they are asked without an answer
    plain = evaluate_dataset(Settings(data_dir=store), dataset, first_stages=["dense"], top_n=2)
    assert all(r.answer_contains is None and r.answer_queries is None for r in plain.runs)
    assert "lead ∋ gold | hit" not in plain.rows()[0]


def test_eval_answers_counts_a_wrong_answer_and_a_miss(tmp_path: Path, capsys) -> None:
    """A gold answer the documents do not hold is never "contained"; a query whose passage was not returned
    counts in answer_contains but not in the "given hit" shares."""
    dataset = _with_answers(tmp_path / "tiny")
    wrong = dict(GOLD, q2=["a blue whale"])
    (dataset / "answers.jsonl").write_text("".join(json.dumps({"id": q, "answers": a}) + "\n" for q, a in wrong.items()))
    (dataset / "qrels.tsv").write_text("".join(f"{i}\t{d if i != 'q3' else 'd4'}\t1\n" for i, _, d in QUERIES if d))
    report = evaluate_dataset(Settings(data_dir=tmp_path / "store"), dataset, first_stages=["dense"], rerankers=[],
                              top_n=1, answers=True)
    run = report.runs[0]
    assert run.answer_queries == 4 and run.answer_hit_queries == 3  # q3's judged passage (d4) is not its answer
    # q3's answer comes from d3 and holds its gold answer: it counts here, though its judged passage was missed
    assert run.answer_contains == 0.75  # q1, q3, q4; never q2 (its gold answer is in no document)
    assert run.answer_contains_given_hit == run.lead_contains_given_hit == 0.6667  # q1, q4 of q1, q2, q4
    assert report.rows()[0]["answer ∋ gold"] == 0.75 and "answer chars" in report.table()


def test_eval_answers_needs_gold_answers(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="answers.jsonl"):
        evaluate_dataset(Settings(data_dir=tmp_path / "store"), write_dataset(tmp_path / "plain"), answers=True)


def test_word_recall_counts_the_gold_words_an_answer_holds() -> None:
    gold = ["Total net sales increased to $82,959 million in the quarter."]
    # terms: total, net, sale(s), increas(ed), 82, 959, million, quarter; "the", "in", "to" count for nothing
    assert answer_word_recall(gold, "Total net sales increased to 82,959 million in the quarter [1].") == 1.0
    assert answer_word_recall(gold, "Net sales increase: 82,959 million [2]") == pytest.approx(6 / 8)
    assert answer_word_recall(gold, "The weather was fine.") == 0.0
    assert answer_word_recall(["1"], "See [1].") == 0.0  # a citation mark is no answer
    # Chinese: characters and bigrams; of 电 池 充 电池 池充 充电 the answer lacks only 池充; the best gold counts
    assert answer_word_recall(["nothing here", "电池充电"], "电池需要充电") == pytest.approx(5 / 6)
    assert answer_word_recall([], "anything") == 0.0


def _pdf_dataset(root: Path) -> Path:
    """A corpus with one document kept as a PDF (the sample returns and service guide, two pages)."""
    (root / "pdfs").mkdir(parents=True)
    (root / "pdfs" / "guide.pdf").write_bytes(Path("data/sample/returns-and-service.pdf").read_bytes())
    corpus = [{"id": "guide.pdf", "title": "guide", "text": "", "path": "pdfs/guide.pdf"}]
    corpus += [{"id": i, "title": t, "text": x} for i, t, x in CORPUS]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    queries = {"p1": ("How much does a full service with a new chain cost?", "149 pounds"),
               "p2": ("Within how many days can unused accessories be returned?", "60 days")}
    (root / "queries.jsonl").write_text("".join(json.dumps({"id": q, "text": t}) + "\n" for q, (t, _) in queries.items()))
    (root / "qrels.tsv").write_text("".join(f"{q}\tguide.pdf\t1\n" for q in queries))
    (root / "answers.jsonl").write_text("".join(json.dumps({"id": q, "answers": [a]}) + "\n"
                                                for q, (_, a) in queries.items()))
    return root


def test_a_corpus_document_kept_as_a_pdf_is_parsed_and_chunked_by_page(tmp_path: Path) -> None:
    dataset = _pdf_dataset(tmp_path / "pdfset")
    settings = Settings(data_dir=tmp_path / "store", reranker="none")
    report = evaluate_dataset(settings, dataset, first_stages=["hybrid"], rerankers=[], top_n=2, answers=True)
    run = report.runs[0]
    assert run.hit_rate == 1.0 and run.answer_hit_queries == 2
    assert run.answer_word_recall_given_hit is not None and run.answer_word_recall_given_hit > 0.5
    assert "gold words held | hit" in report.table()
    info = index_corpus(settings, dataset)
    assert info.cached and info.nodes > len(CORPUS) + 1  # the PDF is more than one node: a chunk per page at least
    chunk = RagPipeline(settings).ask("What does a full service with a new chain cost?", collection=info.collection,
                                      top_n=1, generate=False).chunks[0]
    assert chunk.source == "guide.pdf" and chunk.page == 2  # the page it was read from, as ingest keeps it


def test_a_corpus_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    dataset = _pdf_dataset(tmp_path / "pdfset")
    (dataset / "pdfs" / "guide.pdf").write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(EvalError, match="guide.pdf"):
        index_corpus(Settings(data_dir=tmp_path / "store"), dataset)
