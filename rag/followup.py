"""Follow-up questions in a chat: what to search for when the question leans on the turns before it.

"How much does it weigh?" after "Tell me about the Kestrel Cargo" names nothing to search for. Two ways out:

* with an LLM, :func:`rewrite_question` asks it to rewrite the follow-up into a question that stands alone
  (same language; unchanged when it already stands alone; never answered), from the last few turns. A
  failed or empty rewrite falls back to the question as asked.
* without one, the pipeline searches the question and also :func:`context_query` (the previous question
  with this one), fuses both rankings by reciprocal rank (:func:`fuse`) and reranks the fused candidates
  with the question itself, so a question that changes the subject is barely disturbed.

The history is the chat's earlier turns, oldest first: :class:`rag.types.AskResult` objects, or anything with a
``question`` (and ``answer``) attribute or key, or plain question strings. The first turn has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rag.retrieve import Candidate, FirstStage, rrf
from rag.settings import Settings

HISTORY_TURNS = 3  # the turns a rewrite reads
_ANSWER_CHARS = 600  # of each earlier answer, in the rewrite prompt
_MAX_REWRITE_CHARS = 500

REWRITE_PROMPT = """You rewrite the last question of a conversation so that it can be understood without the conversation.
Rules:
- Write it in the same language as the last question.
- Replace pronouns and fill in what the question leaves out (ellipsis) from the conversation.
- If the last question already stands alone, return it unchanged.
- Do not answer the question. Return only the rewritten question, on one line, nothing else.

Conversation:
{conversation}

Last question: {question}

Standalone question:"""


def _field(turn: Any, name: str) -> str:
    if isinstance(turn, str):
        return turn if name == "question" else ""
    value = turn.get(name) if isinstance(turn, dict) else getattr(turn, name, None)
    return str(value or "").strip()


def recent_turns(history: Sequence[Any] | None, turns: int = HISTORY_TURNS) -> list[tuple[str, str]]:
    """The last ``turns`` (question, answer) pairs of ``history`` that have a question, oldest first."""
    pairs = [(_field(t, "question"), _field(t, "answer")) for t in (history or [])]
    return [pair for pair in pairs if pair[0]][-turns:]


def context_query(question: str, history: Sequence[Any] | None) -> str | None:
    """The previous user question with this one (what a chat without an LLM searches as well); None on the
    first turn or when the previous question is this one."""
    turns = recent_turns(history, 1)
    if not turns or turns[-1][0].strip() == question.strip():
        return None
    return f"{turns[-1][0]} {question}"


def rewrite_prompt(question: str, history: Sequence[Any] | None) -> str:
    lines = []
    for asked, answered in recent_turns(history):
        lines.append(f"User: {asked}")
        if answered:
            short = " ".join(answered.split())
            lines.append(f"Assistant: {short[:_ANSWER_CHARS]}{' …' if len(short) > _ANSWER_CHARS else ''}")
    return REWRITE_PROMPT.format(conversation="\n".join(lines), question=question)


def clean_rewrite(text: str, question: str) -> str:
    """The rewrite's one line without labels or quotes; ``question`` when it is empty or clearly not a question
    (far longer than any rewrite: the model answered or rambled)."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    if not lines:
        return question
    line = lines[0]
    for label in ("standalone question:", "rewritten question:", "question:"):
        if line.lower().startswith(label):
            line = line[len(label):].strip()
    line = line.strip().strip("\"'“”「」").strip()
    if not line or len(line) > max(_MAX_REWRITE_CHARS, 4 * len(question) + 200):
        return question
    return line


def rewrite_question(settings: Settings, question: str, history: Sequence[Any] | None) -> str:
    """The follow-up rewritten by the LLM to stand alone; the question itself on the first turn, or when the
    LLM fails or returns nothing usable."""
    if not recent_turns(history):
        return question
    from rag.answer import LlmAnswerer, LlmError

    try:
        reply = LlmAnswerer(settings).complete(rewrite_prompt(question, history))
    except LlmError:
        return question
    return clean_rewrite(reply, question)


def fuse(own: FirstStage, context: FirstStage, *, top_k: int, rrf_k: int = 60) -> FirstStage:
    """The question's own first stage and the context query's, fused by reciprocal rank: the top ``top_k``,
    each with the ranks of the search that found it (the question's own first)."""
    by_id: dict[str, Candidate] = {}
    for candidate in [*context.candidates, *own.candidates]:  # the question's own ranks win
        by_id[candidate.chunk.chunk_id] = candidate
    fused = rrf({"own": [c.chunk.chunk_id for c in own.candidates],
                 "context": [c.chunk.chunk_id for c in context.candidates]}, k=rrf_k)[:top_k]
    candidates = []
    for rank, (chunk_id, score) in enumerate(fused, 1):
        found = by_id[chunk_id]
        candidates.append(Candidate(chunk=found.chunk, rank=rank, score=score, dense_rank=found.dense_rank,
                                    dense_score=found.dense_score, bm25_rank=found.bm25_rank,
                                    bm25_score=found.bm25_score, fused_rank=rank, fused_score=score))
    timings = {name: round(own.timings_ms.get(name, 0.0) + context.timings_ms.get(name, 0.0), 2)
               for name in {*own.timings_ms, *context.timings_ms}}
    return FirstStage(candidates, timings)
