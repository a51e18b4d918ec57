"""Questions about a user's own collection: reading a questions file, or writing one with the LLM."""

from __future__ import annotations

import json
import re
from pathlib import Path

from evaluation.index import EvalError, Progress
from rag.settings import Settings


def load_questions(path: str | Path) -> list[dict]:
    """``{"question", "expected_source" | "expected_chunk_id"}`` per line (either may be a list); a question
    the documents do not answer has ``"answerable": false`` instead (the eval reports the warning's rates)."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"questions file not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise EvalError(f"{path}:{n}: invalid JSON ({error.msg})") from error
        if not isinstance(row, dict) or not str(row.get("question", "")).strip():
            raise EvalError(f"{path}:{n}: needs a 'question'")
        if not (row.get("expected_source") or row.get("expected_chunk_id") or row.get("answerable") is False):
            raise EvalError(f"{path}:{n}: needs 'expected_source' or 'expected_chunk_id'")
        rows.append(row)
    if not rows:
        raise EvalError(f"{path} holds no questions")
    return rows


# The prompt of llama-index's generate_question_context_pairs (DEFAULT_QA_GENERATE_PROMPT_TMPL), which
# llama-index-core 0.14 no longer ships; asked here through the openai client the app already uses.
QA_GENERATE_PROMPT = """\
Context information is below.

---------------------
{context_str}
---------------------

Given the context information and not prior knowledge.
generate only questions based on the below query.

You are a Teacher/ Professor. Your task is to setup {num_questions_per_chunk} questions for an upcoming \
quiz/examination. The questions should be diverse in nature across the document. Restrict the questions to \
the context information provided."
"""


def _parse_questions(text: str) -> list[str]:
    """Questions out of an LLM reply, one per non-empty line, numbering stripped (as llama-index did)."""
    out = []
    for line in text.strip().splitlines():
        line = re.sub(r"^\s*(?:[-*]|\d+[.)]|Q\d*[:.])\s*", "", line).strip()
        if line:
            out.append(line)
    return out


def generate_questions(
    settings: Settings,
    n: int,
    out_path: str | Path,
    *,
    collection: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write ``n`` questions (one per sampled chunk) with their ``expected_chunk_id`` and ``expected_source``."""
    from rag.answer import LlmAnswerer, LlmError
    from rag.store import KnowledgeBase

    if not settings.llm_configured:
        raise EvalError(
            "--generate needs an LLM: set OPENAI_API_KEY (and RAG_LLM_MODEL), or OPENAI_BASE_URL for a local "
            "OpenAI-compatible server (Ollama, vLLM, LM Studio); or write the questions file yourself: one "
            '{"question": ..., "expected_source": ...} per line'
        )
    collection = collection or settings.collection
    kb = KnowledgeBase(settings, collection)
    chunks = kb.sample_chunks(n)
    if not chunks:
        raise EvalError(f"collection '{collection}' is empty: ingest documents first")
    client = LlmAnswerer(settings)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out_path.open("w", encoding="utf-8") as fh:
        for i, chunk in enumerate(chunks, 1):
            prompt = QA_GENERATE_PROMPT.format(context_str=chunk.text, num_questions_per_chunk=1)
            try:
                content = client.complete(prompt)
            except LlmError as error:
                raise EvalError(f"the LLM failed while writing questions: {error}") from error
            questions = _parse_questions(content or "")
            if not questions:
                continue
            fh.write(json.dumps({"question": questions[0], "expected_chunk_id": chunk.chunk_id,
                                 "expected_source": chunk.source}, ensure_ascii=False) + "\n")
            written += 1
            if progress:
                progress(f"questions: {i}/{len(chunks)}")
    if not written:
        raise EvalError("the LLM returned no usable question")
    return out_path
