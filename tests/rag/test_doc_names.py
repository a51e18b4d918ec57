"""A question that names documents by what tells them apart searches those first (issue 33, rag.doc_names)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.pipeline import Ingestor, SourceFile
from rag.doc_names import DocumentNames, asked_quarters, identity_terms, naming_terms, newest_date
from rag.pipeline import RagPipeline
from rag.settings import Settings
from tests.helpers import quarterly_filing

FILINGS = {  # three companies, two quarters each: pages that never name their company or quarter but in footers
    "zenith-q1.pdf": ("Zenith Foods Inc.", "4,812", "7", "Q1 2024", "March 31, 2024"),
    "zenith-q2.pdf": ("Zenith Foods Inc.", "5,106", "9", "Q2 2024", "June 30, 2024"),
    "borealis-q1.pdf": ("Borealis Mining Corp.", "9,530", "12", "Q1 2024", "March 31, 2024"),
    "borealis-q2.pdf": ("Borealis Mining Corp.", "9,871", "4", "Q2 2024", "June 30, 2024"),
    "calypso-q1.pdf": ("Calypso Airlines Ltd.", "2,264", "3", "Q1 2024", "March 31, 2024"),
    "calypso-q2.pdf": ("Calypso Airlines Ltd.", "2,590", "15", "Q2 2024", "June 30, 2024"),
}


def namer(rows: list[tuple[str, str, str]]) -> Callable[[str], tuple[str, ...] | None]:
    """The documents of ``rows`` (source, identity, text) that a question names, at the default shares."""
    names, defaults = DocumentNames.build(rows), Settings()

    def named(question: str) -> tuple[str, ...] | None:
        found = names.named(question, defaults.route_max_outside_share, defaults.route_min_inside_share)
        return found.sources if found else None

    return named


@pytest.fixture(scope="module")
def filings(tmp_path_factory) -> Settings:
    settings = Settings(data_dir=tmp_path_factory.mktemp("filings") / "store")
    results = Ingestor(settings).ingest([SourceFile(name, data=quarterly_filing(*facts))
                                         for name, facts in FILINGS.items()])
    assert [r.status for r in results] == ["ok"] * len(FILINGS)
    return settings


@pytest.mark.parametrize("name", ["borealis-q2.pdf", "calypso-q1.pdf", "zenith-q2.pdf"])
def test_a_question_naming_company_and_quarter_reads_that_filing_only(filings, name) -> None:
    company, sales, _, quarter, _ = FILINGS[name]
    ordinal = {"Q1": "first", "Q2": "second"}[quarter[:2]]
    result = RagPipeline(filings).ask(f"What were {company.split()[0]}'s total net sales in the {ordinal} quarter "
                                      "of 2024?")
    assert result.named_documents is not None and result.named_documents.sources == (name,)
    assert company.split()[0] in result.named_documents.terms and "q" + quarter[1] in result.named_documents.terms
    sources = [c.source for c in result.candidates]
    lead = sources.count(name)  # its chunks come first; the rest of the collection fills top_k after them
    assert lead >= 2 and sources[:lead] == [name] * lead and len(sources) == filings.top_k
    assert sales in result.chunks[0].text and sales in result.answer
    assert result.public_json()["named_documents"]["sources"] == [name]
    assert name in result.named_documents.describe()


def test_the_latest_keeps_the_newest_filing_unless_the_question_compares_periods(filings) -> None:
    pipeline = RagPipeline(filings)
    latest = pipeline.ask("What were Calypso's total net sales in the latest quarter?", generate=False)
    assert latest.named_documents.sources == ("calypso-q2.pdf",) and latest.named_documents.latest
    both = pipeline.ask("How did Calypso's net sales in the most recent quarter compare with the previous one?",
                        generate=False)
    assert both.named_documents.sources == ("calypso-q1.pdf", "calypso-q2.pdf")
    assert not both.named_documents.latest


def test_a_question_about_a_quarter_no_filing_is_of_says_the_documents_do_not_answer(filings) -> None:
    pipeline = RagPipeline(filings)
    held = pipeline.ask("What were Zenith's total net sales in the second quarter of 2024?")
    assert held.abstention.features["quarter_coverage"] == 1.0 and not held.low_confidence
    assert "5,106" in held.answer
    missing = pipeline.ask("What were Zenith's total net sales in the third quarter of 2024?")
    assert missing.abstention.features["quarter_coverage"] == 0.0
    assert missing.low_confidence and "Q3 2024" in missing.low_confidence_reason
    assert missing.answer.startswith("The documents do not seem to answer")
    unasked = pipeline.ask("What were Zenith's total net sales?", generate=False)
    assert unasked.abstention.features["quarter_coverage"] is None


def test_a_question_naming_no_document_or_asked_of_chosen_ones_searches_as_asked(filings) -> None:
    pipeline = RagPipeline(filings)
    plain = pipeline.ask("What were total net sales for the quarter?", generate=False)
    assert plain.named_documents is None and len({c.source for c in plain.candidates}) > 2
    chosen = pipeline.ask("What were Zenith's net sales?", sources=["borealis-q1.pdf"], generate=False)
    assert chosen.named_documents is None and {c.source for c in chosen.candidates} == {"borealis-q1.pdf"}
    off = RagPipeline(filings.model_copy(update={"route_max_outside_share": 0.0}))
    unnamed = off.ask("What were Zenith's total net sales in the second quarter of 2024?", generate=False)
    assert unnamed.named_documents is None and len({c.source for c in unnamed.candidates}) > 1


def test_titled_one_chunk_passages_are_never_named(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "store", top_k=5)
    topics = ["Glaciers", "Volcanoes", "Estuaries", "Deserts", "Monsoons", "Tundra", "Savannas", "Reefs"]
    files = [SourceFile(f"{topic.lower()}.md", data=f"# {topic}\n\nThis landform shapes the climate and the life "
                        f"of the region around it in many ways.\n".encode()) for topic in topics]
    assert {r.status for r in Ingestor(settings).ingest(files)} == {"ok"}
    result = RagPipeline(settings).ask("How do estuaries shape the region around them?", generate=False)
    assert result.named_documents is None and len(result.candidates) == 5
    assert result.candidates[0].source == "estuaries.md"  # its title is read with its only chunk


def test_a_word_the_other_documents_speak_of_or_its_own_do_not_names_none() -> None:
    def pages(source: str, identity: str, *texts: str) -> list[tuple[str, str, str]]:
        return [(source, identity, text) for text in texts]

    rows = [  # "United" is on one cover, and the others' text says it; "Harbor" their text says, the others' not
        *pages("a.pdf", "United Freight Corp · 2024 Q1", "United Freight carried more.", "Freight rates rose.",
               "Costs fell.", "Fuel was dear."),
        *pages("b.pdf", "Harbor Rail Inc · 2024 Q1 · What I know", "Harbor Rail ran more trains.",
               "Rail volumes across the United States rose.", "United States rates rose.", "Costs fell."),
        *pages("c.pdf", "Harbor Rail Inc · 2024 Q2", "Harbor Rail ran fewer trains.", "Costs rose in the United States.",
               "United States rail volumes fell.", "Fuel was cheap."),
        ("d.md", "Glossary of rail terms", "A glossary of rail terms."),  # one chunk: its title is read with its text
    ]
    named = namer(rows)

    assert named("What did United Freight report?") == ("a.pdf",)  # "freight": a's text says it, b's and c's not
    assert named("What did the United States report?") is None
    assert named("How did Harbor Rail do in Q2 2024?") == ("c.pdf",)
    assert named("What do I know about harbors?") == ("b.pdf", "c.pdf")  # "I" and "know" name nothing
    assert named("What is the latest rate?") is None  # "the latest" of nothing named narrows nothing
    assert named("What is in the glossary?") is None  # a one-chunk document is never named...
    assert named("How did Harbor Rail do?") == ("b.pdf", "c.pdf")  # ...nor are others by a word it carries too


def test_periods_and_dates_as_identities_write_them() -> None:
    assert {"q3", "2023", "appl"} <= naming_terms("Apple's third quarter of FY2023")
    assert "q2" in naming_terms("第二季度营收") and "30" not in naming_terms("ended June 30, 2024")
    assert newest_date("period ended July 1, 2023 · filed on 2023-08-04") == "2023-08-04"
    assert newest_date("Q3 2023 Form 10-Q") == "2023-09-28" and newest_date("Pump guide") is None
    # a cover's period names its calendar quarter, unless the identity says which quarter it is
    assert "q2" in identity_terms("AMAZON.COM, INC. · For the quarterly period ended June 30, 2023")
    assert "q2" in identity_terms("For the quarterly period ended July 1, 2023")  # a week into July: June's
    # the quarter holding most of its months: August to October is q3 (NVIDIA's fiscal third quarter of 2024)
    assert "q3" in identity_terms("For the quarterly period ended October 29, 2023")
    assert {"q4", "2022"} <= identity_terms("For the quarterly period ended January 29, 2023")  # November to January
    labelled = identity_terms("Apple Inc. · For the quarterly period ended July 1, 2023 · Q3 2023 Form 10-Q")
    assert "q3" in labelled and "q2" not in labelled


def test_a_filing_is_named_by_the_quarter_its_text_calls_its_own() -> None:
    """Amcor-like: a fiscal year ending in June makes the quarter ended December 31 its fiscal second quarter."""
    def filing(source: str, ended: str, *texts: str) -> list[tuple[str, str, str]]:
        return [(source, f"Kestrel Packaging plc · For the quarterly period ended {ended}", text) for text in texts]

    fiscal = ["Net sales in the second quarter of fiscal 2024 fell.", "Margins in the second quarter of fiscal "
              "2024 rose against the second quarter of fiscal 2023.", "Kestrel Packaging paid a dividend."]
    outlook = ["Kestrel Packaging expects a fourth quarter 2024 as strong.", "Costs fell in the quarter.",
               "The fourth quarter of 2023 is reviewed in the annual report."]  # one mention with a year: no own
    rows = [*filing("h2.pdf", "December 31, 2023", *fiscal), *filing("q3.pdf", "March 31, 2024", *outlook),
            *[("z.pdf", "Zephyr Rail · 2024", text) for text in ("Zephyr Rail ran trains.", "Fares rose.")]]
    named = namer(rows)
    assert named("What did Kestrel Packaging report for its second fiscal quarter?") == ("h2.pdf",)  # not q4
    assert named("What did Kestrel Packaging report for the first quarter of 2024?") == ("q3.pdf",)  # March's q1


def test_file_names_periods_and_forms_name_an_annual_or_a_quarterly_filing() -> None:
    """FinanceBench-like names: "HARBOR_2024Q2_10Q.pdf" is fiscal 2024's second quarter, its cover July 2023's."""
    def filing(source: str, cover: str, *texts: str) -> list[tuple[str, str, str]]:
        return [(source, f"{cover} · Harbor Rail Inc · {source[:-4].replace('_', ' ')}", text) for text in texts]

    texts = ("Harbor Rail ran trains.", "Harbor Rail's costs fell, as the Form 10-K says.", "Fares rose.")
    rows = [*filing("HARBOR_2023_10K.pdf", "FORM 10-K · For the fiscal year ended January 28, 2023", *texts),
            *filing("HARBOR_2024Q2_10Q.pdf", "FORM 10-Q · For the quarterly period ended July 29, 2023", *texts),
            *[("3M_2023Q2_10Q.pdf", "3M Company · For the quarterly period ended June 30, 2023", text)
              for text in ("3M sold tape.", "3M's costs rose.")]]
    named = namer(rows)

    assert named("What were Harbor Rail's fares in Q2 FY2024?") == ("HARBOR_2024Q2_10Q.pdf",)
    assert named("What did Harbor Rail's FY23 10-K say of costs?") == ("HARBOR_2023_10K.pdf",)
    shown = DocumentNames.build(rows).named("What did Harbor Rail's FY23 10-K say?", 0.02, 0.02).terms
    assert "10-K" in shown and "Harbor" in shown  # the question's own words, as the answer shows them
    assert named("What did 3M sell?") == ("3M_2023Q2_10Q.pdf",)  # a name with a digit
    assert {"8k", "20f", "10q"} <= naming_terms("Its 8-K, its 20-F and its 10Q")


def test_a_fiscal_year_asked_is_the_one_a_filings_text_calls_its_own() -> None:
    """NVIDIA-like: the quarter ended October 30, 2022 is the third of fiscal 2023; its neighbour a year later,
    of fiscal 2024, is the one a question dated "Q3 2023" asks about (the calendar's year)."""
    def filing(source: str, ended: str, fiscal: str) -> list[tuple[str, str, str]]:
        texts = [f"Revenue for the third quarter of fiscal year {fiscal} rose.",
                 f"Orion Chips grew in fiscal {fiscal}.", f"Orion Chips' margin in the third quarter of fiscal year {fiscal} fell.", "Costs rose."]
        return [(source, f"Orion Chips Corp · For the quarterly period ended {ended}", text) for text in texts]

    rows = [*filing("a.pdf", "October 30, 2022", "2023"), *filing("b.pdf", "October 29, 2023", "2024"),
            *[("z.pdf", "Zephyr Rail · 2024", text) for text in ("Zephyr Rail ran trains.", "Fares rose.")]]
    named = namer(rows)

    assert named("What was Orion Chips' revenue in Q3 FY2023?") == ("a.pdf",)
    assert named("What was Orion Chips' revenue in the third quarter of fiscal 2024?") == ("b.pdf",)
    assert named("What was Orion Chips' revenue in Q3 2023?") == ("b.pdf",)  # a year not called fiscal: the dates'


def test_the_quarters_a_question_asks_about_as_people_write_them() -> None:
    assert asked_quarters("What were Apple's net sales in Q3 2023?") == [("q3", "2023")]
    assert asked_quarters("In the second quarter of fiscal 2024, what was the margin?") == [("q2", "fy2024")]
    assert asked_quarters("Compare Q3 FY2024 with the first quarter of 2023") == [("q3", "fy2024"), ("q1", "2023")]
    assert asked_quarters("AMCOR_2023Q2_10Q: what was the revenue?") == [("q2", "2023")]
    assert asked_quarters("2023年第三季度的营收是多少？") == [("q3", "2023")]
    assert asked_quarters("What was the revenue in 2023?") == [] and asked_quarters("Which quarter?") == []


def test_a_quarter_no_document_is_of_is_missing(tmp_path: Path) -> None:
    rows = [("zenith-q1.pdf", "Zenith Foods Inc. Q1 2024 Form 10-Q", "Net sales were $4,812 million."),
            ("zenith-q2.pdf", "Zenith Foods Inc. Q2 2024 Form 10-Q", "Net sales were $5,106 million."),
            ("zenith-2022.pdf", "Zenith Foods Inc. Annual Report 2022 Form 10-K", "Net sales were $19 billion."),
            ("nvidia-q3.pdf", "NVIDIA Form 10-Q For the quarterly period ended October 30, 2022",
             "Revenue for the third quarter of fiscal 2023 was $5.93 billion. " * 3 + "Fiscal year 2023 " * 3)]
    names = DocumentNames.build(rows)
    assert names.quarters_held("What were Zenith's net sales in Q2 2024?") == (1.0, [])
    assert names.quarters_held("What were Zenith's net sales in the third quarter of 2024?") == (0.0, ["Q3 2024"])
    assert names.quarters_held("How did net sales change from Q1 2024 to Q3 2024?") == (0.5, ["Q3 2024"])
    assert names.quarters_held("What were net sales in Q4 2022?") == (1.0, [])  # the annual report holds it
    # NVIDIA's quarter ended October 2022 is Q3 of fiscal 2023, and of calendar 2022: not Q3 2023
    assert names.quarters_held("What was NVIDIA's revenue in Q3 FY2023?") == (1.0, [])
    assert names.quarters_held("What was NVIDIA's revenue in Q3 2023?") == (0.0, ["Q3 2023"])
    assert names.quarters_held("What were net sales in 2024?") is None  # no quarter asked
    names.save(tmp_path)
    assert DocumentNames.load(tmp_path).quarters_held("Sales in Q3 2024?") == (0.0, ["Q3 2024"])
    # a collection with no document of a quarter (articles, manuals) says nothing of an asked quarter
    articles = DocumentNames.build([("olympics.txt", "2008 Summer Olympics", "The games opened in August 2008."),
                                    ("apollo.txt", "Apollo 11", "The mission launched in July 1969.")])
    assert articles.quarters_held("What happened in Q3 2008?") is None
