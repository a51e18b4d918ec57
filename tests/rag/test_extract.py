"""The extractive answer with the real models (the shipped reranker, the packaged embedder): it quotes the
sentences that answer, never the FAQ's question; cites them; says where they are; the Ask page highlights them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.extract import NOTHING_FOUND, extract_answer, is_heading, is_question, sentence_spans
from rag.embedders.models import load_embedder
from rag.rerank import load_reranker
from rag.types import ChunkHit
from tests.helpers import SAMPLE


def _chunk(text: str, n: int = 1, source: str = "doc.txt", rerank_score: float | None = None) -> ChunkHit:
    return ChunkHit(chunk_id=f"c{n}", doc_id="d", source=source, text=text, retrieval_rank=n, retrieval_score=1.0 / n,
                    rerank_rank=n if rerank_score is not None else None, rerank_score=rerank_score)


@pytest.fixture(scope="module")
def reranker():
    return load_reranker("rerank-minilm-l6")


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("all-MiniLM-L6-v2")


FAQ = (SAMPLE / "product-faq.txt").read_text()


def _sentences(answer: str) -> list[str]:
    return [s.strip() for s in re.split(r"\[\d+\]", answer) if s.strip()]


@pytest.mark.parametrize("scorer", ["reranker", "embedder", "lexical"])
def test_an_faq_answer_quotes_the_answer_under_the_question(scorer: str, request: pytest.FixtureRequest) -> None:
    kwargs = {} if scorer == "lexical" else {scorer: request.getfixturevalue(scorer)}  # the lexical one always reads
    result = extract_answer("How long does the battery take to charge?", [_chunk(FAQ, rerank_score=0.9)], **kwargs)
    sentences = _sentences(result.answer)  # the passages between citations: sentences that follow each other
    assert 1 <= len(sentences) <= len(result.spans) <= 3  # in the chunk share one citation (issue 24 §2)
    assert result.answer.count("[1]") == len(sentences)
    block = FAQ[FAQ.index("A full charge"):FAQ.index("How long does a battery last?")]  # the answer under it
    assert " ".join(sentences[0].split()) in " ".join(block.split())  # an answer sentence leads...
    assert "4.5 hours" in result.answer
    if scorer == "reranker":
        assert "4.5 hours" in sentences[0]  # ...with the reranker, the full charge's
    assert not any(s.endswith("?") for s in sentences)  # never the FAQ's questions themselves
    assert "Product FAQ" not in result.answer  # nor its heading
    # each span is where its quoted sentence sits in the chunk, in the answer's order
    assert all(span.chunk == 1 for span in result.spans)
    quoted = " ".join(" ".join(FAQ[span.start:span.end].split()) for span in result.spans)
    assert quoted == " ".join(sentences)


HUASHAN = ("华山位于陕西省渭南市华阴市，是中国著名的五岳之一。华山的主峰南峰海拔两千多米，是五岳中最高的山峰。"
           "华山以险峻著称，自古有“奇险天下第一山”之称。每年有数百万游客前来登山观日出。")


@pytest.mark.parametrize(("question", "lead"), [
    ("华山为什么被称为奇险天下第一山？", "华山以险峻著称"), ("华山在哪个省？", "华山位于陕西省"),
    ("华山的主峰有多高？", "华山的主峰南峰海拔")])
def test_a_chinese_answer_leads_with_the_sentence_that_answers(question: str, lead: str, reranker, embedder) -> None:
    # both models read Chinese poorly (an English vocabulary; MiniLM), the question's words do not
    result = extract_answer(question, [_chunk(HUASHAN, rerank_score=0.6)], reranker=reranker, embedder=embedder)
    assert _sentences(result.answer)[0].startswith(lead)


def test_the_answer_under_the_matching_question_leads_not_a_neighbour(reranker) -> None:
    chunks = [_chunk("Returns\nCan I return accessories?\nAccessories can be returned unused within 60 days.\n"
                     "How long does a refund take?\nRefunds reach your original payment method within 10 working "
                     "days of the bike arriving at our workshop.\nWhere is the workshop?\nOur workshop is in Leeds, "
                     "open from Monday to Saturday.", rerank_score=0.8),
              _chunk("Refund policies differ between shops. Ask your dealer about theirs.", 2, rerank_score=0.1)]
    result = extract_answer("How long does a refund take?", chunks, reranker=reranker)
    assert result.answer.startswith("Refunds reach your original payment method within 10 working days")
    assert "?" not in result.answer and "Returns" not in result.answer


def test_sentences_of_several_chunks_keep_their_own_citations(reranker) -> None:
    chunks = [_chunk("The Kestrel Cargo weighs 34 kg with the battery. It carries 80 kg in its front box.",
                     rerank_score=0.9, source="faq.txt"),
              _chunk("The Kestrel Commute weighs 22 kg. Its range is 60 km.", 2, rerank_score=0.5, source="b.txt")]
    result = extract_answer("How much does the Kestrel Cargo weigh?", chunks, reranker=reranker)
    assert result.answer.startswith("The Kestrel Cargo weighs 34 kg with the battery. [1]")
    for span in result.spans:
        quoted = " ".join(chunks[span.chunk - 1].text[span.start:span.end].split())
        assert f"{quoted} [{span.chunk}]" in result.answer


def test_no_chunks_and_no_sentences(reranker) -> None:
    assert extract_answer("anything?", [], reranker=reranker).answer == NOTHING_FOUND
    only_questions = extract_answer("Warranty?", [_chunk("Warranty\nWhat does it cover?")], reranker=reranker)
    assert only_questions.answer.endswith("[1]") and only_questions.spans[0].chunk == 1


def test_sentences_split_at_their_ends_not_at_abbreviations_or_wrapped_lines() -> None:
    text = ("Dr. J. K. Smith joined the U.S. Army in 1843. He earned $4.5 million, approx. three times more!\n"
            "Kestrel Cycles - Returns\nRefunds reach your payment method within 10 working days of the bike arriving in\n"
            "Leeds. The frame is\ncovered for life.")
    pieces = [" ".join(text[s:e].split()) for s, e in sentence_spans(text)]
    assert pieces == ["Dr. J. K. Smith joined the U.S. Army in 1843.",
                      "He earned $4.5 million, approx. three times more!", "Kestrel Cycles - Returns",
                      "Refunds reach your payment method within 10 working days of the bike arriving in Leeds.",
                      "The frame is covered for life."]
    chinese = "长城位于中国北方。它全长约两万一千公里！为什么修建长城？为了抵御外敌。"
    assert [chinese[s:e] for s, e in sentence_spans(chinese)] == [
        "长城位于中国北方。", "它全长约两万一千公里！", "为什么修建长城？", "为了抵御外敌。"]
    assert is_question("How long does it take?") and is_question("为什么修建长城？")
    assert is_heading("## Holidays") and is_heading("Warranty and repairs") and not is_heading("Kestrel Cargo 34 kg")
    assert not is_heading("The frame is covered for life.")


def test_the_pipeline_records_the_quoted_sentences(tmp_path: Path) -> None:
    from ingest.pipeline import Ingestor
    from rag.pipeline import RagPipeline
    from rag.settings import Settings

    settings = Settings(data_dir=tmp_path / "store")
    assert all(r.status == "ok" for r in Ingestor(settings).ingest_paths([SAMPLE / "product-faq.txt"]))
    result = RagPipeline(settings).ask("How long does the battery take to charge?")
    assert result.answer_mode == "extractive" and result.answer_spans
    first = result.answer_spans[0]
    assert "4.5 hours" in result.chunks[first.chunk - 1].text[first.start:first.end]
    assert "answer_spans" in result.public_json()


def test_the_ask_page_bolds_the_quoted_sentence_as_escaped_text() -> None:
    from app_pages.rendering import highlighted_markdown

    text = "Intro *not bold*. The answer is <b>4.5</b> hours. After [link](x)."
    start = text.index("The answer")
    end = text.index("hours.") + len("hours.")
    shown = highlighted_markdown(text, [(start, end)])
    assert shown == ("Intro \\*not bold\\*\\. **The answer is \\<b\\>4\\.5\\</b\\> hours\\.** "
                     "After \\[link\\]\\(x\\)\\.")
    cjk = "长城位于中国北方。它全长约两万一千公里。"
    assert highlighted_markdown(cjk, [(9, 20)]) == "长城位于中国北方。 **它全长约两万一千公里。**"
