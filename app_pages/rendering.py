"""How the pages draw an :class:`~rag.types.AskResult`: answer, badges, chunk table, timings.

Pages compute nothing of their own: every rank, score, movement and timing comes from ``AskResult``.
Document text and model output are shown as text: dataframe cells, ``st.text``, or markdown with every
markdown character escaped, never HTML.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import streamlit as st

from rag import catalog
from rag.settings import Settings
from rag.types import AskResult, ChunkHit

# ---- rendering ------------------------------------------------------------------------------------
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")
_CITATION = re.compile(r"\\\[(\d{1,2})\\\]")


def escape_md(text: str) -> str:
    """Markdown-escape ``text`` so that it renders as the literal text (no links, images, HTML, LaTeX)."""
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def answer_markdown(answer: str) -> str:
    """The answer, escaped, with its [n] citations in bold (they name the rows of the chunk table)."""
    return _CITATION.sub(r"**[\1]**", escape_md(answer))


def highlighted_markdown(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` as escaped markdown with the ``(start, end)`` ranges in bold: the sentences an answer quoted.

    Every piece is escaped (so the document's own markdown, HTML and links stay literal text); a space is
    added where a bold mark would otherwise touch a letter and fail to close or open (CJK text)."""
    out, at = [], 0
    for start, end in sorted(spans):
        start, end = max(start, at), min(end, len(text))
        if end <= start:
            continue
        out.append(escape_md(text[at:start]))
        before = " " if start > 0 and not text[start - 1].isspace() else ""
        after = " " if end < len(text) and not text[end].isspace() else ""
        out.append(f"{before}**{escape_md(text[start:end])}**{after}")
        at = end
    out.append(escape_md(text[at:]))
    return "".join(out)


def searched_line(result: AskResult) -> str | None:
    """What the retrieval searched for, as escaped markdown: the question, a follow-up's rewrite, or the
    question with the previous one (fused); None for results from before chats kept it."""
    searched = result.searched_query
    if not searched:
        return None
    line = f"searched for: “{escape_md(searched)}”"
    if searched != result.question:
        line += " (the follow-up rewritten to stand alone)"
    if result.context_query:
        line += f" and “{escape_md(result.context_query)}” (with the previous question), fused"
    return line


def chat_markdown(results: list[AskResult]) -> str:
    """A chat as a Markdown file: each question, its answer with the citations' sources and pages, and the
    query searched (a download: plain text, not drawn by the app)."""
    lines = ["# Chat", ""]
    if results:
        lines += [f"Collection: {results[0].collection}", ""]
    for n, result in enumerate(results, 1):
        kind = f"LLM answer, {result.llm_model}" if result.answer_mode == "llm" else "extractive answer"
        lines += [f"## {n}. {result.question}", ""]
        if result.searched_query:
            searched = f"Searched for: {result.searched_query}"
            if result.context_query:
                searched += f" + {result.context_query}"
            lines += [f"*{searched}*", ""]
        lines += [result.answer or "(no answer)", "", f"({kind}{', reranked' if result.reranked else ''})", ""]
        if result.chunks:
            lines += ["Sources:", ""]
            lines += [f"- [{i}] {chunk.citation}" for i, chunk in enumerate(result.chunks, 1)]
            lines.append("")
    return "\n".join(lines)


model_label = catalog.model_label  # a folder by its last part: the pages and the API name models alike


def plural(count: int, noun: str) -> str:
    """"1 question", "2 questions": a count with its noun."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def badges(result: AskResult) -> str:
    """Markdown badges: the answer mode (LLM / extractive) and whether the chunks were reranked."""
    if result.answer_mode == "llm":
        mode = f":blue-badge[:material/smart_toy: LLM answer · {escape_md(result.llm_model or '')}]"
    else:
        mode = ":gray-badge[:material/format_quote: Extractive answer · quoted from the passages]"
    if result.reranked:
        blend = f", weight {result.rerank_weight:g}" if result.blended else ""
        rerank = f":green-badge[:material/swap_vert: reranked by {escape_md(model_label(result.reranker))}{blend}]"
    elif result.rerank_skipped:
        rerank = ":orange-badge[:material/translate: not reranked: the reranker does not read this language]"
    else:
        rerank = ":orange-badge[:material/horizontal_rule: not reranked]"
    other = (" :violet-badge[:material/translate: quotes the documents in another language than the question]"
             if result.quotes_other_language else "")
    if result.low_confidence and result.chunks:  # the reason in words is the warning under the answer
        other += " :red-badge[:material/help: the documents may not answer this]"
    return f"{mode} {rerank}{other}"


def answer_notices(result: AskResult, settings: Settings) -> None:
    """The LLM's failure and the low-confidence warning, next to the answer where the user looks."""
    if result.rerank_skipped:
        st.caption(f":material/translate: Not reranked: {escape_md(result.rerank_skipped)}.")
    if result.named_documents:
        st.caption(f":material/filter_alt: {escape_md(result.named_documents.describe())}.")
    if read_first := result.statements_read_first():
        st.caption(f":material/table_view: {escape_md(read_first)}.")
    if result.error:
        st.error(f"The LLM could not answer, so this is an extractive answer from the passages instead. "
                 f"Reason: {escape_md(result.error)}", icon=":material/error:")
    if result.low_confidence and result.chunks:
        st.warning(f"The documents may not contain the answer: {escape_md(result.low_confidence_reason or '')}.",
                   icon=":material/warning:")
    if not result.chunks:
        st.info("The collection has no documents yet: add some on the Library page.", icon=":material/info:")


def sources_line(chunks: list[ChunkHit]) -> str:
    return "  \n".join(f"**[{n}]** {escape_md(chunk.citation)}" + (f" — {escape_md(chunk.situated)}" if chunk.situated
                                                                   else "") for n, chunk in enumerate(chunks, 1))


NOT_FOUND = "–"  # a rank cell of a search that did not find the chunk


def _rank_cell(rank: int | None) -> str:
    return NOT_FOUND if rank is None else str(rank)


def chunk_frame(chunks: list[ChunkHit]) -> pd.DataFrame:
    return pd.DataFrame([
        {
            "cite": f"[{n}]",
            "rank": c.final_rank,
            "before rerank": c.retrieval_rank,
            "moved": c.movement,
            "found by": c.found_by,
            "marks": c.mark_note,  # a mark on a question alike in meaning moved it (rag.mark_memory)
            "dense rank": _rank_cell(c.dense_rank),
            "BM25 rank": _rank_cell(c.bm25_rank),
            "rerank score": c.rerank_score,
            "retrieval score": c.retrieval_score,
            "final score": c.final_score,
            "source": c.source,
            "page": "" if c.page is None else str(c.page),  # documents without pages: an empty cell
            "document": c.situated,  # its title and section (ingest.identity): which filing, which part
            "text": c.text,
        }
        for n, c in enumerate(chunks, 1)
    ])


RETRIEVAL_SCORE_HELP = {
    "dense": "Cosine similarity of the question and chunk embeddings",
    "bm25": "BM25 score of the question's words in the chunk",
    "hybrid": "The fused score of the dense and BM25 searches. Relative fusion (the default): each search's "
              "scores scaled to 0-1 over its own list, then added, so 0 to 2 (2: first in both); RRF: the sum of "
              "1 / (60 + rank), about 0.01-0.03. Its scale moves with the question (a follow-up's fuses two "
              "searches by rank): compare chunks within one answer, not across answers",
}


RETRIEVAL_LABEL = {"dense": "cosine", "bm25": "BM25 score", "hybrid": "fused score"}


def retrieval_label(result: AskResult) -> str:
    """The retrieval score's column, named by its scale: a cosine, a BM25 score or the two searches fused."""
    return RETRIEVAL_LABEL.get(result.retrieval, "retrieval score")


def score_scales(result: AskResult) -> str:
    """One line under the chunk table: what each score column measures, and which one set the order."""
    scale = {"dense": "the cosine of question and chunk embeddings (−1 to 1)",
             "bm25": "the BM25 score of the question's words (0 and up, no fixed top)",
             "hybrid": "the two searches fused (relative fusion: 0 to 2, 2 = first in both; a follow-up's and "
                       "RRF's about 0.01-0.03)"}.get(result.retrieval, "the first stage's score")
    parts = [f"{retrieval_label(result)}: {scale}"]
    if result.reranked:
        parts.insert(0, "rerank score: the cross-encoder's probability that the chunk answers (0 to 1)")
    if result.blended:
        parts.append("final score: the blend of both that set the order, so a lower rerank score can rank above "
                     "a higher one")
    return "Scores · " + " · ".join(parts) + ". Each chunk's search ranks and full text: open it below."


def rank_details(chunk: ChunkHit) -> str:
    """How one chunk ranked at every stage, in words (the expander under the table)."""
    searches = [f"found by {chunk.found_by}"]
    if chunk.dense_rank is not None:
        searches.append(f"embedding search rank {chunk.dense_rank} (cosine {chunk.dense_score:.3f})")
    if chunk.bm25_rank is not None:
        searches.append(f"word search rank {chunk.bm25_rank} (BM25 {chunk.bm25_score:.2f})")
    searches.append(f"first-stage rank {chunk.retrieval_rank} (score {chunk.retrieval_score:.3f})")
    if chunk.rerank_rank is not None:
        searches.append(f"rerank rank {chunk.rerank_rank} (score {chunk.rerank_score:.3f})")
    searches.append(f"final rank {chunk.final_rank}")
    return " · ".join(searches)


def final_score_help(result: AskResult) -> str:
    """What set the order, in words, for the final-score column (the recipe is rag.rerank.blend)."""
    w = result.rerank_weight or 0.0
    if result.rerank_blend == "rrf":
        return (f"What ordered the chunks: a fusion of ranks, {w:g} / (60 + rerank rank) + {1 - w:g} / (60 + "
                "retrieval rank); so a lower rerank score can sit above a higher one")
    scaled = (f"{w:g} × the best chunk's confidence (sigmoid of its logit)" if result.rerank_blend == "confident"
              else f"{w:g}")
    return (f"What ordered the chunks: {scaled} × rerank logit + the rest × retrieval score, each min-max "
            "normalised over the reranked candidates; so a lower rerank score can sit above a higher one")


def _score_range(values: list[float | None], default: tuple[float, float]) -> tuple[float, float]:
    present = [v for v in values if v is not None]
    if not present:
        return default
    lo, hi = min(present + [default[0]]), max(present + [default[1]])
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def chunk_table(result: AskResult, *, chunks: list[ChunkHit] | None = None, compact: bool = False,
                expandable: bool = True) -> None:
    """The chunks behind the answer: final rank, rank before rerank and its movement, both scores as bars,
    source and page; each text expandable below."""
    chunks = result.chunks if chunks is None else chunks
    if not chunks:
        return
    frame = chunk_frame(chunks)
    # Bars span the scores of all top-k candidates, so a bar's length compares across the table.
    rr_lo, rr_hi = _score_range([c.rerank_score for c in result.candidates], (0.0, 1.0))
    rt_lo, rt_hi = _score_range([c.retrieval_score for c in result.candidates], (0.0, 1.0))
    columns: dict[str, Any] = {
        "cite": st.column_config.TextColumn("cite", help="The answer cites this chunk as [n]", width="small"),
        "rank": st.column_config.NumberColumn("rank", help="Final rank", width="small"),
        "before rerank": st.column_config.NumberColumn("before rerank", help="Rank after the first retrieval",
                                                       width=105),
        "moved": st.column_config.TextColumn("moved", help="Places gained (▲) or lost (▼) by reranking, and the "
                                             "rank before", width=80),
        "marks": st.column_config.TextColumn("marks", help="Marks left on a question alike in meaning moved this "
                                             "chunk: up when it was marked as answering it, down when not (in "
                                             "proportion to how alike the questions are)", width="medium"),
        "found by": st.column_config.TextColumn("found by", help="Which first-stage search found the chunk: the "
                                                "embeddings (dense), the words (BM25), or both", width="small"),
        "dense rank": st.column_config.TextColumn("dense rank", help=f"Rank in the embedding search ({NOT_FOUND}: "
                                                  "not in its top)", width="small"),
        "BM25 rank": st.column_config.TextColumn("BM25 rank", help=f"Rank in the word (BM25) search ({NOT_FOUND}: "
                                                 "not in its top)", width="small"),
        "rerank score": st.column_config.ProgressColumn(
            "rerank score", help="Cross-encoder relevance: for the default reranker the probability that the chunk "
            "answers, fitted on dev data (comparable across questions). With a blend it does not set the order "
            "alone: the final score does", format="%.3f", min_value=rr_lo, max_value=rr_hi),
        "retrieval score": st.column_config.ProgressColumn(
            retrieval_label(result), help=RETRIEVAL_SCORE_HELP.get(result.retrieval, ""), format="%.3f",
            min_value=min(0.0, rt_lo), max_value=max(rt_hi, 1.0 if result.retrieval == "dense" else rt_hi)),
        "final score": st.column_config.ProgressColumn(
            "final score", help=final_score_help(result), format="%.3f",
            min_value=0.0, max_value=max([1.0] + [c.final_score or 0.0 for c in result.candidates]))
        if result.blended else None,
        "source": st.column_config.TextColumn("source", width="small"),
        "page": st.column_config.TextColumn("page", width="small"),
        "document": st.column_config.TextColumn("document", width="small", help="The document's title and the "
                                                "chunk's section, found at ingest"),
        # medium: with every column shown the table then fits the chat's column; the full text is below it
        "text": st.column_config.TextColumn("text", width="medium"),
    }
    hidden = [] if result.reranked else ["before rerank", "moved", "rerank score"]
    if not any(c.mark_note for c in chunks):
        hidden.append("marks")
    if result.retrieval != "hybrid":  # one search ran: its rank is the rank before rerank
        hidden += ["found by", "dense rank", "BM25 rank"]
    if not result.blended:
        hidden.append("final score")
    frame = frame.drop(columns=hidden)
    for name in hidden:
        columns.pop(name)
    if result.reranked:
        frame["moved"] = [c.movement if c.movement == "=" else f"{c.movement} (was {c.retrieval_rank})" for c in chunks]
    if compact:  # a narrow column: the page before the source (a long file name cannot cut it), one score, no text
        # two chunks of one file told apart: the chunk's first words beside the file
        frame["source"] = [f"{c.source} · {' '.join(c.text.split()[:6])}…" for c in chunks]
        score = "final score" if result.blended else "rerank score" if result.reranked else "retrieval score"
        frame = frame[[c for c in ("rank", "moved") if c in frame] + ["page", "source", score]]
        columns = {name: columns[name] for name in frame.columns}
        columns["rank"] = st.column_config.NumberColumn("rank", help="Final rank", width=45)
        columns["page"] = st.column_config.TextColumn("p.", help="Page", width=40)
    else:  # the chat's column is narrow: each search's rank and the text are in the chunk's expander below
        details = [name for name in ("rank", "before rerank", "found by", "dense rank", "BM25 rank", "text")
                   if name in frame]
        frame = frame.drop(columns=details)
        columns = {name: config for name, config in columns.items() if name not in details}
    st.dataframe(frame, column_config=columns, hide_index=True, width="stretch")
    if not compact:
        st.caption(escape_md(score_scales(result)))
    if expandable:
        quoted: dict[int, list[tuple[int, int]]] = {}
        if chunks is result.chunks:  # the answer's spans cite these chunks by their number
            for span in result.answer_spans:
                quoted.setdefault(span.chunk, []).append((span.start, span.end))
        for n, chunk in enumerate(chunks, 1):
            label = f"[{n}] {chunk.citation} — how it ranked, full text" + (
                " (the answer's sentences in bold)" if n in quoted else "")
            with st.expander(escape_md(label)):
                st.caption(escape_md(rank_details(chunk)))
                if n in quoted:
                    st.markdown(highlighted_markdown(chunk.text, quoted[n]))
                else:
                    st.text(chunk.text)


def timings_line(result: AskResult) -> str:
    t = result.timings_ms
    first = {"dense": f"embed {t.embed:.0f} ms · search {t.search:.0f} ms",
             "bm25": f"BM25 {t.bm25:.0f} ms",
             "hybrid": f"embed {t.embed:.0f} ms · search {t.search:.0f} ms · BM25 {t.bm25:.0f} ms · "
                       f"fuse {t.fuse:.0f} ms"}[result.retrieval]
    return (f"{first} · rerank {t.rerank:.0f} ms · generate {t.generate:.0f} ms · total {t.total:.0f} ms")


def timings(result: AskResult) -> None:
    st.caption(f":material/timer: {timings_line(result)} — {len(result.candidates)} {result.retrieval} candidates from "
               f"'{escape_md(result.collection)}', embedder {escape_md(model_label(result.embedder))}")
