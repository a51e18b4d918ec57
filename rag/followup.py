"""Follow-up questions in a chat: what to search for when the question leans on the turns before it.

"How much does it weigh?" after "Tell me about the Kestrel Cargo" names nothing to search for. Two ways out:

* with an LLM, :func:`rewrite_question` asks it to rewrite the follow-up into a question that stands alone
  (same language; unchanged when it already stands alone; never answered), from the last few turns. A
  failed or empty rewrite falls back to the question as asked.
* without one, the question being asked leads. The pipeline searches it and also :func:`context_query` (the
  previous question with this one) and fuses both rankings by reciprocal rank (:func:`fuse`): the context
  finds candidates. How far it also ranks them and picks the answer's sentences is :func:`context_share`:
  nothing for a follow-up that stands alone ("And how long is the warranty?" after a question about charging
  is about the warranty only: ranked and answered by its own words), half for one that leaves out what the
  chat said ("How long does it take?", "And the Commute?", "What about accessories?"): each score is then
  the mean of the follow-up's and the context query's. (Before, every follow-up took the better of the two,
  so the previous topic won: see scripts/followup_eval.py for the figures.)

The history is the chat's earlier turns, oldest first: :class:`rag.types.AskResult` objects, or anything with a
``question`` (and ``answer``) attribute or key, or plain question strings. The first turn has none.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rag.retrieve import Candidate, FirstStage, rrf
from rag.settings import Settings

HISTORY_TURNS = 3  # the turns a rewrite reads
_ANSWER_CHARS = 600  # of each earlier answer, in the rewrite prompt
_MAX_REWRITE_CHARS = 500
ELLIPTICAL_SHARE = 0.5  # of a score that comes from the context query, for a follow-up that leans on it
# The context query's ranking in a follow-up's candidates, against the follow-up's own (1): a little for one that
# stands alone (it finds what the chat was about, ranked below the follow-up's own finds); more for one that leans
# on the chat, whose own words alone ("How long does one take?") search for nothing in particular.
FUSION_WEIGHTS = {"standalone": 0.25, "elliptical": 2.0}
# Words that point back into the chat: pronouns, "one" ("a full one"), adverbs that continue ("still",
# "too", "else"); Chinese pronouns and a question ending in 呢 ("那电机呢？": "and the motor?").
_REFERRING = re.compile(
    r"\b(it|its|itself|they|them|their|theirs|this|that|these|those|one|ones|he|she|him|her|his|"
    r"still|too|also|else|elsewhere|instead|then|same)\b|它|它们|这个|那个|这些|那些|其|呢\s*[?？]?\s*$",
    re.IGNORECASE)
_CONNECTIVE = re.compile(r"^\s*(?:(?:and what about|what about|how about|and|but|so|or|also|even|plus|then)\b|"
                         r"还有|那么|那)\s*", re.IGNORECASE)
_QUESTION_START = re.compile(
    r"^(what|which|who|whom|whose|when|where|why|how|is|are|was|were|am|do|does|did|can|could|will|would|"
    r"should|shall|may|might|must|has|have|had|tell|list|explain|describe|give|show|name)\b", re.IGNORECASE)

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
    """The previous user question with this one (what a chat without an LLM searches as well); when the
    previous question leaned on the one before it ("How far does it go?" after "How much does the Kestrel
    Cargo weigh?"), the questions back to the last that stood alone (at most ``HISTORY_TURNS``), so that "it"
    still finds the Cargo. None on the first turn or when the previous question is this one."""
    turns = recent_turns(history)
    if not turns or turns[-1][0].strip() == question.strip():
        return None
    chain = [turns[-1][0]]
    for asked, _ in reversed(turns[:-1]):
        if not leans_on_context(chain[0]):
            break
        chain.insert(0, asked)
    return " ".join([*chain, question])


def leans_on_context(question: str) -> bool:
    """Whether a follow-up leaves out what the chat said before it: it refers back ("it", "a full one",
    "still", 它, …呢), or it is a fragment, not a question ("And the Commute?", "Even with a pressure washer?",
    "What about accessories?"). "And how long is the warranty?" stands alone: a whole question on its own
    subject. A fragment of four or more words with no connective ("battery charge time at 4 A") is a
    search of its own."""
    if _REFERRING.search(question):
        return True
    rest = _CONNECTIVE.sub("", question.strip(), count=1)
    led = rest != question.strip()
    if _QUESTION_START.match(rest):
        return False
    return led or len(question.split()) <= 3 and not re.search("[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]", question)


def context_share(question: str) -> float:
    """The share of a follow-up's rerank and sentence scores that the context query gives: ``ELLIPTICAL_SHARE``
    when it leans on the chat before it (:func:`leans_on_context`), 0 when it stands alone."""
    return ELLIPTICAL_SHARE if leans_on_context(question) else 0.0


def fusion_weight(share: float) -> float:
    """The context query's weight in the fusion of a follow-up's candidates (:data:`FUSION_WEIGHTS`)."""
    return FUSION_WEIGHTS["elliptical" if share else "standalone"]


def blend(own: Sequence[float], context: Sequence[float], share: float) -> list[float]:
    """Each score the follow-up's own, moved ``share`` of the way to the context query's."""
    return [(1 - share) * a + share * b for a, b in zip(own, context, strict=True)]


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


def fuse(own: FirstStage, context: FirstStage, *, top_k: int, rrf_k: int = 60, context_weight: float = 1.0) -> FirstStage:
    """The question's own first stage and the context query's, fused by reciprocal rank (the context's ranking
    weighted by ``context_weight``): the top ``top_k``, each with the ranks of the search that found it (the
    question's own first)."""
    by_id: dict[str, Candidate] = {}
    for candidate in [*context.candidates, *own.candidates]:  # the question's own ranks win
        by_id[candidate.chunk.chunk_id] = candidate
    fused = rrf({"own": [c.chunk.chunk_id for c in own.candidates],
                 "context": [c.chunk.chunk_id for c in context.candidates]}, k=rrf_k,
                weights={"own": 1.0, "context": context_weight})
    fused = sorted(fused, key=lambda item: not by_id[item[0]].leads)[:top_k]  # a named statement's chunks lead
    candidates = []
    for rank, (chunk_id, score) in enumerate(fused, 1):
        found = by_id[chunk_id]
        candidates.append(Candidate(chunk=found.chunk, rank=rank, score=score, dense_rank=found.dense_rank,
                                    dense_score=found.dense_score, bm25_rank=found.bm25_rank,
                                    bm25_score=found.bm25_score, fused_rank=rank, fused_score=score,
                                    leads=found.leads))
    timings = {name: round(own.timings_ms.get(name, 0.0) + context.timings_ms.get(name, 0.0), 2)
               for name in {*own.timings_ms, *context.timings_ms}}
    return FirstStage(candidates, timings)
