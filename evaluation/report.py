"""The evaluation report: one run per ranking, its Markdown table, model grid and chart.

``EvalReport`` is what ``rerank-rag eval --json`` prints; :meth:`EvalReport.rows` is the table that the
CLI prints as Markdown and the Evaluate page draws.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from evaluation.metrics import Latency

METRIC_SOURCE = "hit rate and MRR: llama_index.core.evaluation HitRate/MRR (RetrieverEvaluator definitions)"


class RunResult(BaseModel):
    """One ranking (first stage alone, or reranked by one model) over all queries."""

    name: str = Field(description="'dense', 'bm25', 'hybrid'; reranked: 'rerank:<model>' (on dense) or "
                      "'<first stage>+rerank:<model>'.")
    first_stage: str = Field("dense", description="dense, bm25 or hybrid.")
    embedder: str
    reranker: str | None = None
    default: bool = Field(False, description="This run is what the app's default settings do.")
    queries: int
    hit_rate: float
    mrr: float
    recall_at_k: float | None = Field(None, description="Share of the relevant documents among the top-k candidates "
                                      "of the first stage: the most a reranker can find.")
    ndcg_at_10: float | None = None
    latency_ms: Latency = Field(description="Per-query total (first stage + rerank), no LLM.")
    stages_ms: dict[str, Latency] = Field(default_factory=dict, description="embed, search, bm25, fuse, rerank.")
    # The answers (``--answers``; None when not measured). "Contains": a gold answer, normalised (NFKC, case,
    # punctuation and whitespace folded), appears in the answer text; "given hit": over the queries whose
    # relevant passage is among the returned top-n; the lead is the answer's text before its first [n].
    answer_queries: int | None = Field(None, description="Queries with a gold answer (the answers' denominator).")
    answer_hit_queries: int | None = Field(None, description="Of those, the queries whose relevant passage is "
                                           "among the returned chunks (the 'given hit' denominator).")
    answer_contains: float | None = Field(None, description="Extractive answer: share that contains a gold answer.")
    answer_contains_given_hit: float | None = Field(None, description="The same, over the queries with a hit.")
    lead_contains_given_hit: float | None = Field(None, description="The answer's lead (text before its first "
                                                  "[n] citation) contains a gold answer, over the queries with a hit.")
    answer_chars: float | None = Field(None, description="Mean length of the extractive answer in characters.")
    answer_word_recall_given_hit: float | None = Field(
        None, description="Mean share of the gold answer's words (BM25 terms) the answer holds, over the queries "
        "with a hit: the measure for long gold answers, which no answer contains whole.")
    answer_ms: Latency | None = Field(None, description="Time to make the extractive answer from the chunks.")
    llm_answer_contains: float | None = Field(None, description="The LLM's answer (when one is configured): "
                                              "share that contains a gold answer; a failed answer counts as none.")
    llm_answer_contains_given_hit: float | None = None
    llm_lead_contains_given_hit: float | None = None
    llm_answer_chars: float | None = None
    llm_answer_word_recall_given_hit: float | None = None
    # The abstention warning (``AskResult.low_confidence``), when the set marks unanswerable questions
    # (queries.jsonl ``"answerable": false``); measured on the runs that asked with their own settings.
    unanswerable_queries: int | None = Field(None, description="Questions the set marks unanswerable.")
    warned_unanswerable: float | None = Field(None, description="Share of the unanswerable questions whose answer "
                                              "warned that the documents do not seem to answer (higher is better).")
    warned_answerable: float | None = Field(None, description="Share of the answerable questions warned so "
                                            "(false alarms: lower is better).")


class IndexInfo(BaseModel):
    embedder: str
    collection: str
    nodes: int
    cached: bool
    seconds: float


class EvalReport(BaseModel):
    """What ``rerank-rag eval --json`` prints and the UI's Evaluate page shows."""

    dataset: str
    queries: int
    relevant_docs: str | None = Field(None, description="Regex the queries' relevant doc ids matched (a held-out split).")
    skipped_blank: int = Field(0, description="Selected queries left out because their text is empty (it happens in public sets).")
    top_k: int
    top_n: int
    embedder: str = Field(description="The embedder (the first one when several were compared).")
    embedders: list[str]
    rerankers: list[str]
    chunked: bool = False
    rerank_weight: float = Field(1.0, description="Settings' rerank_weight: the rerank score's share of the final order.")
    metrics: str = METRIC_SOURCE
    runs: list[RunResult]
    indexes: list[IndexInfo] = Field(default_factory=list)

    def run(self, name: str, embedder: str | None = None) -> RunResult:
        return next(r for r in self.runs if r.name == name and (embedder is None or r.embedder == embedder))

    def summary(self, latency_budget_ms: float | None = None) -> dict:
        """The documented ``--json`` shape, plus the extra fields; with a budget, the recommendation too."""
        out = self.model_dump()
        if latency_budget_ms is not None:
            out["recommendation"] = self.recommend(latency_budget_ms)
        return out

    def recommended_run(self, latency_budget_ms: float | None = None) -> RunResult | None:
        """The run with the best MRR whose p50 latency fits the budget (the faster of a tie); None when none fits."""
        fits = [r for r in self.runs if latency_budget_ms is None or r.latency_ms.p50 <= latency_budget_ms]
        return max(fits, key=lambda r: (round(r.mrr, 4), -r.latency_ms.p50)) if fits else None

    def recommend(self, latency_budget_ms: float | None = None) -> str:
        """One line: the run with the best MRR whose p50 latency fits the budget (first stage alone included)."""
        best = self.recommended_run(latency_budget_ms)
        budget = f" within {latency_budget_ms:g} ms per query (p50)" if latency_budget_ms is not None else ""
        if best is None:
            fastest = min(self.runs, key=lambda r: r.latency_ms.p50)
            return (f"No run fits{budget}: the fastest, {fastest.name}, takes {fastest.latency_ms.p50:.0f} ms "
                    f"(MRR@{self.top_n} {fastest.mrr:.3f}).")
        return (f"Recommended{budget}: {best.name} (MRR@{self.top_n} {best.mrr:.3f}, hit@{self.top_n} "
                f"{best.hit_rate:.3f}, {best.latency_ms.p50:.0f} ms p50) of {len(self.runs)} runs.")

    def rows(self) -> list[dict]:
        """One row per run, the columns the CLI's table and the Evaluate page show (None = not applicable)."""
        several = len(self.embedders) > 1
        with_ndcg = any(r.ndcg_at_10 is not None for r in self.runs)
        out = []
        for r in self.runs:
            rerank = r.stages_ms.get("rerank")
            row = {"embedder": r.embedder} if several else {}
            row |= {"run": r.name + (" (default)" if r.default else ""), f"hit@{self.top_n}": r.hit_rate,
                    f"MRR@{self.top_n}": r.mrr, f"recall@{self.top_k}": r.recall_at_k}
            if with_ndcg:
                row["nDCG@10"] = r.ndcg_at_10
            row |= {"p50 ms": r.latency_ms.p50, "p95 ms": r.latency_ms.p95,
                    "rerank p50 ms": rerank.p50 if rerank and r.reranker else None}
            if r.answer_contains is not None:
                row |= {"answer ∋ gold": r.answer_contains, "answer ∋ gold | hit": r.answer_contains_given_hit,
                        "lead ∋ gold | hit": r.lead_contains_given_hit,
                        "gold words held | hit": r.answer_word_recall_given_hit, "answer chars": r.answer_chars,
                        "answer p50 ms": r.answer_ms.p50 if r.answer_ms else None}
            if any(run.warned_unanswerable is not None for run in self.runs):
                row |= {"warned | unanswerable": r.warned_unanswerable, "warned | answerable": r.warned_answerable}
            if r.llm_answer_contains is not None:
                row |= {"LLM ∋ gold": r.llm_answer_contains, "LLM ∋ gold | hit": r.llm_answer_contains_given_hit,
                        "LLM lead ∋ gold | hit": r.llm_lead_contains_given_hit,
                        "LLM gold words held | hit": r.llm_answer_word_recall_given_hit, "LLM chars": r.llm_answer_chars}
            out.append(row)
        return out

    def table(self) -> str:
        """A Markdown table of :meth:`rows`."""
        rows = self.rows()
        head = list(rows[0]) if rows else ["run"]

        def cell(column: str, value) -> str:
            if value is None:
                return "-"
            if isinstance(value, float):
                return f"{value:.1f}" if column.endswith((" ms", "chars")) else f"{value:.3f}"
            return str(value)

        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cell(h, row.get(h)) for h in head) + " |" for row in rows]
        return "\n".join(lines)

    def grid(self) -> str:
        """Embedder x run MRR@n grid (the LlamaIndex blog's table), when several models were given."""
        cols = list(dict.fromkeys(r.name for r in self.runs))
        lines = [f"| MRR@{self.top_n} / hit@{self.top_n} | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
        for e in self.embedders:
            cells = []
            for c in cols:
                run = next((r for r in self.runs if r.embedder == e and r.name == c), None)
                cells.append(f"{run.mrr:.3f} / {run.hit_rate:.3f}" if run else "-")
            lines.append(f"| {e} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def chart(report: EvalReport):
    """An Altair grouped bar chart: hit rate and MRR per run (and embedder)."""
    import altair as alt
    import pandas as pd

    rows = []
    for r in report.runs:
        label = r.name if len(report.embedders) == 1 else f"{r.embedder} | {r.name}"
        rows.append({"run": label, "metric": f"hit@{report.top_n}", "value": r.hit_rate})
        rows.append({"run": label, "metric": f"MRR@{report.top_n}", "value": r.mrr})
        if r.ndcg_at_10 is not None:
            rows.append({"run": label, "metric": "nDCG@10", "value": r.ndcg_at_10})
    frame = pd.DataFrame(rows)
    return (
        alt.Chart(frame, title=f"{report.dataset}: {report.queries} queries, top-{report.top_k} -> top-{report.top_n}")
        .mark_bar(clip=True)
        .encode(
            x=alt.X("metric:N", title=None, axis=alt.Axis(labelAngle=0)),
            # From 0: an axis that started near the lowest score made gaps of .01 look like halves
            y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1]), title="score (0 to 1)"),
            color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=2, labelLimit=400)),
            xOffset="run:N",
            tooltip=["run", "metric", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(width=360, height=400)  # the whole view: title, axes and the legend under it take ~200 px
    )


def save_chart(report: EvalReport, base: Path) -> Path:
    """``<base>.png`` when vl-convert is installed, otherwise ``<base>.html`` (self-contained Vega-Lite)."""
    figure = chart(report)
    try:
        import vl_convert  # noqa: F401

        path = base.with_name(base.name + ".png")
    except ImportError:
        path = base.with_name(base.name + ".html")
    figure.save(str(path))
    return path


def markdown(report: EvalReport, chart_path: Path | None = None) -> str:
    lines = [
        f"# Retrieval evaluation: {report.dataset}",
        "",
        (
            f"{report.queries} queries"
            f"{f' (those whose relevant documents match `{report.relevant_docs}`)' if report.relevant_docs else ''}"
            f"{f'; {report.skipped_blank} without text left out' if report.skipped_blank else ''}"
            f"; first stage top-{report.top_k} with `{', '.join(report.embedders)}`, scored at top-{report.top_n}"
            f"{' (documents chunked; a document ranks at its first chunk)' if report.chunked else ''}."
            f"{f' Reranked runs order by {report.rerank_weight:g} x rerank + {1 - report.rerank_weight:g} x retrieval score.' if report.rerank_weight < 1 else ''}"
        ),
        f"Metrics: {report.metrics}. Latency: per query, no LLM, on this machine.",
        *([f"Answers: \"∋ gold\" = a gold answer, normalised (NFKC, case, punctuation and whitespace folded), "
           f"appears in the answer; \"| hit\" = over the queries whose relevant passage is among the top-"
           f"{report.top_n}; the lead is the answer's text before its first [n] citation; \"gold words held\" = the "
           f"mean share of the gold answer's words (BM25 terms) in the answer, for long gold answers."]
          if any(r.answer_contains is not None for r in report.runs) else []),
        *([f"Warnings: \"warned | unanswerable\" = the share of the {report.runs[0].unanswerable_queries} questions "
           f"marked unanswerable whose answer said the documents do not seem to answer; \"warned | answerable\" = "
           f"the same over the answerable ones (false alarms); '-' = a run read from another's answers."]
          if any(r.warned_unanswerable is not None for r in report.runs) else []),
        "",
        report.table(),
        "",
    ]
    if len(report.embedders) > 1 or len(report.rerankers) > 1:
        lines += ["## Model grid", "", report.grid(), ""]
    if chart_path is not None:
        lines += [f"Chart: [{chart_path.name}]({chart_path.name})" if chart_path.suffix == ".html"
                  else f"![chart]({chart_path.name})", ""]
    return "\n".join(lines)


def write_report(report: EvalReport, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    chart_path = save_chart(report, out.with_name(out.stem + ".chart"))
    out.write_text(markdown(report, chart_path), encoding="utf-8")
    return out, chart_path
