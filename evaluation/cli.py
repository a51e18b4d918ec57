"""``rerank-rag eval``: the command line of the evaluation (rag.cli wires it in)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evaluation.questions import generate_questions
from evaluation.report import write_report
from evaluation.run import evaluate_dataset, evaluate_questions
from rag.settings import RETRIEVAL_MODES, Settings, reranker_off


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quiet_libraries(args: argparse.Namespace) -> None:
    """No per-model "Loading weights" bars between the progress lines (``--debug`` keeps them)."""
    if getattr(args, "debug", False):
        return
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    rerankers = None if args.rerankers is None else [r for r in args.rerankers if not reranker_off(r)]
    if rerankers and "all" in rerankers:  # the grid: every catalog reranker that loads here
        from rag import catalog

        rerankers = list(dict.fromkeys([r for r in rerankers if r != "all"]
                                       + [r["name"] for r in catalog.rows() if r["available"]]))
    progress = None if args.quiet else stderr
    quiet_libraries(args)
    if args.dataset:
        if args.questions or args.generate:
            print("error: --dataset evaluates a public set; --questions/--generate evaluate a collection, "
                  "give one or the other", file=sys.stderr)
            return 2
        report = evaluate_dataset(settings, args.dataset, queries=args.queries, relevant_docs=args.relevant_docs,
                                  rerankers=rerankers, embedders=args.embedders, first_stages=args.first_stages,
                                  top_k=args.top_k, top_n=args.top_n,
                                  chunk=args.chunk, ndcg=args.ndcg, rebuild=args.rebuild, answers=args.answers,
                                  progress=progress)
    else:
        if args.embedders and len(args.embedders) > 1:
            print("error: a collection was embedded by one embedder; several --embedder need --dataset",
                  file=sys.stderr)
            return 2
        if args.embedders:
            settings = settings.model_copy(update={"embed_model": args.embedders[0]})
        questions = args.questions
        if args.generate:
            questions = questions or str(Path(settings.data_dir) / "eval" / f"{settings.collection}-questions.jsonl")
            generate_questions(settings, args.generate, questions, progress=progress)
            if progress:
                progress(f"wrote {questions}")
        if not questions:
            print("error: give --dataset DIR, or --questions FILE / --generate N for a collection", file=sys.stderr)
            return 2
        report = evaluate_questions(settings, questions, rerankers=rerankers, first_stages=args.first_stages,
                                    top_k=args.top_k, top_n=args.top_n,
                                    ndcg=args.ndcg, limit=args.queries, answers=args.answers, progress=progress)
    if args.out:
        out, chart_path = write_report(report, args.out)
        if progress:
            progress(f"wrote {out} and {chart_path}")
    if args.json:
        print(json.dumps(report.summary(args.latency_budget), ensure_ascii=False, indent=2))
    else:
        print(report.table())
        if len(report.embedders) > 1 or len(report.rerankers) > 1:
            print()
            print(report.grid())
        if len(report.rerankers) > 1 or args.latency_budget is not None:
            print()
            print(report.recommend(args.latency_budget))
    return 0


def register(subparsers, parent) -> None:
    p = subparsers.add_parser(
        "eval", parents=[parent], help="hit rate / MRR at top-n: first stage vs reranked, model vs model",
        description="Evaluate retrieval on a BEIR-format dataset (--dataset) or on a collection (--questions/--generate).",
    )
    p.add_argument("--dataset", metavar="DIR", help="folder with corpus.jsonl, queries.jsonl, qrels.tsv")
    p.add_argument("--queries", type=int, metavar="N", help="first N queries (file order) that have qrels")
    p.add_argument("--relevant-docs", metavar="REGEX",
                   help="only queries whose relevant doc ids all match REGEX, e.g. a held-out split "
                        "('^s(3[89]|4[0-7])_' = SQuAD articles 38-47); the corpus stays whole")
    p.add_argument("--top-k", type=int, help="first-stage candidates (default: settings, 20)")
    p.add_argument("--top-n", type=int, help="cut-off of the metrics and of the rerank (default: settings, 5)")
    p.add_argument("--embedder", dest="embedders", action="append", metavar="E",
                   help="embedder; repeat for a grid (default: settings)")
    p.add_argument("--reranker", dest="rerankers", action="append", metavar="R",  # "all": the grid
                   help="reranker; repeat for a grid (default: the configured one, else the shipped default)")
    p.add_argument("--retrieval", dest="first_stages", action="append", choices=RETRIEVAL_MODES, metavar="STAGE",
                   help="first stage to evaluate: dense, bm25 or hybrid; repeat for several (default: all three)")
    p.add_argument("--chunk", action="store_true", help="split long documents; chunk hits count for their document")
    p.add_argument("--ndcg", action="store_true", help="also report nDCG@10")
    p.add_argument("--latency-budget", type=float, metavar="MS",
                   help="recommend the best run by MRR whose p50 per query fits MS (with --reranker all: the grid)")
    p.add_argument("--answers", action="store_true",
                   help="also answer each question and score the answers against the gold ones (a dataset's "
                        "answers.jsonl, a questions file's 'answers'): whether the answer, and its lead (the text "
                        "before its first [n]), contains a gold answer; the extractive answer always, the LLM's "
                        "too when one is configured")
    p.add_argument("--rebuild", action="store_true", help="re-embed the corpus even if a cached index exists")
    p.add_argument("--questions", metavar="FILE", help='collection mode: {"question","expected_source"|"expected_chunk_id"} per line')
    p.add_argument("--generate", type=int, metavar="N", help="collection mode: first write N questions with the LLM")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", metavar="REPORT.md", help="write a Markdown report and an Altair chart beside it")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_eval)
