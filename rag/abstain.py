"""Whether the documents answer the question: the abstention decision behind ``AskResult.low_confidence``.

Every piece of evidence the pipeline already holds becomes a feature (:func:`gather`), and a small logistic
model fitted on dev data (``scripts/fit_abstention.py``; coefficients in ``rag/abstain.json``, never set by
hand) turns them into the probability that the documents do not answer; above the model's operating point
the answer says so (:func:`unanswered_answer`). Two families of evidence, each with its own model:

* ``reranked``: the reranker's calibrated scores (the best, its margin over the next, how many candidates it
  holds relevant), the first stage's agreement (dense and BM25 top-5 in common), the quoted sentence's own
  rerank score, whether the top passages carry the names and periods the question names, whether the whole
  collection's words hold those names, and whether the collection holds a document of the quarter it asks
  about (rag.doc_names; every asked quarter missing fires on its own: :func:`warns`).
* ``first_stage``: a question the reranker does not read (Chinese with the shipped English one) or no
  reranker: the best dense cosine and its margin over the next ones, how much of the question's words the
  top passages hold (BM25's tokens), the same agreement and names, and the quoted sentence's cosine.

Each family has a model with the sentence's score (the extractive answer, where a confident quote is the
danger) and one without (an LLM's answer, decided before it is asked, and ``generate=False``). A feature
that cannot be read (no BM25 side to agree with) is set to the fit's mean: it then moves nothing.
See docs/abstention.md.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from rag.bm25_tokens import tokenize
from rag.catalog import question_script_language
from rag.types import Abstention, ChunkHit

MODEL_FILE = Path(__file__).with_name("abstain.json")
TOP_PASSAGES = 3  # the passages whose words and names count (the answer reads mostly these)
AGREEMENT_DEPTH = 5  # the dense and BM25 top-k whose overlap measures the first stage's agreement
RELEVANT = 0.5  # a calibrated rerank score at or above this: the reranker holds the candidate relevant
_P_EDGE = 1e-4  # probabilities are clipped to [edge, 1 - edge] before their logit

# A name or a period in a question: a capitalised word past the first, a number, a quarter (Q3), a quoted
# title (《...》, "..."). Hand-written: no tagger ships that reads both English and Chinese, and these are
# the names a document identity (title, who, what period) carries.
_NAME = re.compile(r"(?<![\w'])([A-Z][\w&-]+(?:['’]s)?|\d[\d,.]*\d|\d)(?![\w])")  # "I" and "A" are no names
_QUOTED = re.compile(r"《([^》]{1,40})》|\"([^\"]{2,60})\"|“([^”]{2,60})”")
_FIRST_WORD = re.compile(r"^\W*\w+")
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")  # "... outcomes? Please provide ...": "Please" is no name
# a filing's form names a kind of document, not one ("these 10-Qs"): doc_names reads forms; here "10" and "Qs"
# would count as names no passage prints
_FORM = re.compile(r"\b(?:10-?[KQ]|20-?F|[68]-?K)(?:'?s)?\b", re.I)


def _logit(p: float) -> float:
    p = min(max(p, _P_EDGE), 1 - _P_EDGE)
    return math.log(p / (1 - p))


def named_terms(question: str) -> list[str]:
    """The names and periods ``question`` names, lowercased: its capitalised words but each sentence's first,
    numbers, quarters and quoted titles ("What was Microsoft's revenue in Q3 2023?" -> microsoft, q3, 2023); a
    filing's form ("10-Q") is none."""
    terms = []
    for sentence in _SENTENCE_END.split(_FORM.sub(" ", question)):
        terms += [m.group(1) for m in _NAME.finditer(_FIRST_WORD.sub("", sentence, count=1))]
    terms = [re.sub(r"['’]s$", "", t) for t in terms]
    terms += [next(g for g in m.groups() if g) for m in _QUOTED.finditer(question)]
    seen: dict[str, None] = {}
    for term in terms:
        seen.setdefault(term.lower().replace(",", ""), None)
    return list(seen)


def entity_names(question: str) -> list[str]:
    """The names among :func:`named_terms` that name a thing, not a number or a quarter ("microsoft", not "q3" or
    "2023"): what ``names_held`` looks up in the whole collection (a quarter is ``quarter_coverage``'s)."""
    return [t for t in named_terms(question) if any(c.isalpha() for c in t) and not re.fullmatch(r"q[1-4]", t)]


def _identity(chunk: ChunkHit) -> str:
    """What the chunk says of its document besides its text: its source, and the title and context the
    chunk-context issue gives chunks where they have them (read only if there)."""
    parts = [chunk.source]
    for field in ("doc_title", "title", "context", "doc_context"):
        value = getattr(chunk, field, None)
        if isinstance(value, str):
            parts.append(value)
    return " ".join(parts)


def name_coverage(question: str, chunks: Sequence[ChunkHit]) -> tuple[float, list[str]]:
    """(share of the question's names and periods that the top passages or their documents carry, the names
    none carries); 1.0 when the question names none."""
    terms = named_terms(question)
    if not terms:
        return 1.0, []
    held = " ".join(f"{c.text} {_identity(c)}" for c in chunks[:TOP_PASSAGES]).lower().replace(",", "")
    missing = [t for t in terms if not re.search(rf"(?<!\w){re.escape(t)}(?!\w)", held)]
    return 1 - len(missing) / len(terms), missing


def _content_tokens(text: str) -> set[str]:
    """BM25's tokens that say something: Latin words of 2+ letters, CJK bigrams (single ideographs match
    nearly any Chinese passage)."""
    return {t for t in tokenize(text) if len(t) > 1}


def word_coverage(question: str, chunks: Sequence[ChunkHit]) -> float | None:
    """The share of the question's BM25 tokens that the top passages hold (1.0 for a question with none); None
    when the passages are in another script than the question (a Chinese question over English documents):
    no word could match, so the words say nothing."""
    wanted = _content_tokens(question)
    if not wanted:
        return 1.0
    if question_script_language(question) != question_script_language(" ".join(c.text for c in chunks[:TOP_PASSAGES])):
        return None
    held: set[str] = set()
    for chunk in chunks[:TOP_PASSAGES]:
        held |= _content_tokens(chunk.text)
    return len(wanted & held) / len(wanted)


def agreement(candidates: Sequence[ChunkHit]) -> float | None:
    """The share of the dense top-5 that BM25 ranks in its top-5 too; None without both sides (not hybrid)."""
    dense = {c.chunk_id for c in candidates if c.dense_rank is not None and c.dense_rank <= AGREEMENT_DEPTH}
    bm25 = {c.chunk_id for c in candidates if c.bm25_rank is not None and c.bm25_rank <= AGREEMENT_DEPTH}
    if not dense or not bm25:
        return None
    return len(dense & bm25) / AGREEMENT_DEPTH


def gather(question: str, chunks: Sequence[ChunkHit], candidates: Sequence[ChunkHit], *,
           sentence_score: float | None = None, quarters: tuple[float, list[str]] | None = None,
           names_held: tuple[float, list[str]] | None = None) -> tuple[str, dict[str, float | None]]:
    """(family, features) of one answer: ``chunks`` the top-n given to the answer, ``candidates`` all the first
    stage found; ``sentence_score`` the quoted sentence's calibrated rerank score (reranked) or cosine;
    ``quarters`` the share of the quarters the question asks about that the collection holds a document of, and
    the missing ones (:meth:`rag.doc_names.DocumentNames.quarters_held`; None: it asks none, or no periodic
    reports); ``names_held`` the share of the question's names (:func:`entity_names`) the whole collection's
    words hold, and those they do not (None: no names, or no BM25 side)."""
    coverage, _ = name_coverage(question, chunks)
    agree = agreement(candidates)
    scores = sorted((c.rerank_score for c in candidates if c.rerank_score is not None), reverse=True)
    if scores:
        features = {
            "best_logit": _logit(scores[0]),
            "margin": scores[0] - (scores[1] if len(scores) > 1 else 0.0),
            "relevant_count": float(sum(s >= RELEVANT for s in scores)),
            "agreement": agree,
            "name_coverage": coverage,
            "names_held": names_held[0] if names_held else None,
            "quarter_coverage": quarters[0] if quarters else None,
            "sentence_logit": None if sentence_score is None else _logit(sentence_score),
        }
        return "reranked", features
    cosines = sorted((c.dense_score for c in candidates if c.dense_score is not None), reverse=True)
    features = {
        "best_cosine": cosines[0] if cosines else None,
        "cosine_margin": cosines[0] - sum(cosines[1:5]) / len(cosines[1:5]) if len(cosines) > 1 else None,
        "word_coverage": word_coverage(question, chunks),
        "agreement": agree,
        "name_coverage": coverage,
        "quarter_coverage": quarters[0] if quarters else None,  # the missing-quarter rule's (no dev data to fit)
        "sentence_cosine": sentence_score,
    }
    return "first_stage", features


@lru_cache(maxsize=4)
def _load(path: str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_models(path: str | Path = MODEL_FILE) -> dict:
    """The fitted models (``rag/abstain.json``): per model name, its features, their mean and scale, the
    coefficients, intercept and operating point."""
    return _load(str(path))["models"]


def model_name(family: str, with_sentence: bool) -> str:
    return f"{family}+sentence" if with_sentence else family


def probability(model: dict, features: dict[str, float | None]) -> tuple[float, dict[str, float]]:
    """(the probability that the documents do not answer, each feature's push toward that in log-odds)."""
    pushes = {}
    for name, mean, scale, coef in zip(model["features"], model["mean"], model["scale"], model["coef"], strict=True):
        value = features.get(name)
        pushes[name] = 0.0 if value is None else coef * (value - mean) / scale
    z = model["intercept"] + sum(pushes.values())
    return 1 / (1 + math.exp(-z)), pushes


def warns(p: float, point: float, features: dict[str, float | None]) -> bool:
    """Whether the decision fires: the probability at or above the operating point, or every quarter asked
    missing from the collection (``quarter_coverage`` 0) at any point but 1 (the setting that never warns)."""
    # A question about "Q3 2024" over Q1 and Q2's filings: whatever the passages score, they are another period's,
    # and a quote from them the confident wrong answer this decision is for. A fact, not an estimate: in the dev
    # data every such question was unanswerable (43 of 43). A model weighs it against the passages' scores: the
    # shipped one warns on all 43 alone, a refit without names_held let the test filings' well-matching wrong
    # quarter through (p .76 against .79). The rule keeps the answer whatever a refit weighs.
    return p >= point or _quarter_missing(point, features)


def _quarter_missing(point: float, features: dict[str, float | None]) -> bool:
    return features.get("quarter_coverage") == 0.0 and point < 1.0


def decide(question: str, chunks: Sequence[ChunkHit], candidates: Sequence[ChunkHit], *,
           sentence_score: float | None = None, quarters: tuple[float, list[str]] | None = None,
           names_held: tuple[float, list[str]] | None = None, threshold: float | None = None,
           models_path: str | Path = MODEL_FILE) -> Abstention:
    """The decision for one answer (see the module's doc and :func:`gather`); ``threshold`` overrides the model's
    operating point."""
    if not chunks:
        return Abstention(fires=True, reason="nothing in the collection matched the question", family="none")
    family, features = gather(question, chunks, candidates, sentence_score=sentence_score, quarters=quarters,
                              names_held=names_held)
    name = model_name(family, sentence_score is not None)
    model = load_models(models_path)[name]
    p, pushes = probability(model, features)
    point = model["threshold"] if threshold is None else threshold
    missing_quarter = _quarter_missing(point, features)
    fires = warns(p, point, features)
    reason = None
    if missing_quarter:
        reason = (f"no document in the collection is of {', '.join(quarters[1])}, the period asked about; "
                  + explain(question, chunks, features, pushes, p, unheld=names_held[1] if names_held else ()))
    elif fires:
        reason = explain(question, chunks, features, pushes, p, quarters[1] if quarters else [],
                         names_held[1] if names_held else ())
    return Abstention(fires=fires, probability=round(p, 4), threshold=point, family=family, model=name,
                      features={k: None if v is None else round(v, 4) for k, v in features.items()}, reason=reason)


def _describe(name: str, features: dict[str, float | None], missing: list[str], quarters: list[str],
              unheld: list[str]) -> str:
    value = features[name]
    if name == "quarter_coverage":
        return "no document in the collection is of " + ", ".join(quarters)
    if name == "names_held":
        return "no document in the collection mentions " + ", ".join(f"'{t}'" for t in unheld)
    if name == "best_logit":
        return f"the best passage's rerank score is {1 / (1 + math.exp(-value)):.2f}"
    if name == "margin":
        return f"the best passage leads the next by only {value:.2f}"
    if name == "relevant_count":
        return "no passage is more likely relevant than not" if value == 0 else \
            f"only {value:.0f} passages are more likely relevant than not"
    if name == "agreement":
        return f"the word and meaning searches share only {value * AGREEMENT_DEPTH:.0f} of their top {AGREEMENT_DEPTH}"
    if name == "name_coverage":
        return "the top passages never mention " + ", ".join(f"'{t}'" for t in missing)
    if name == "sentence_logit":
        return f"the best sentence's own rerank score is {1 / (1 + math.exp(-value)):.2f}"
    if name == "best_cosine":
        return f"the best passage's embedding similarity is {value:.2f}"
    if name == "cosine_margin":
        return f"the best passage stands out from the next by only {value:.3f} similarity"
    if name == "word_coverage":
        return f"the top passages hold {value:.0%} of the question's words"
    if name == "sentence_cosine":
        return f"the best sentence's embedding similarity is {value:.2f}"
    return f"{name} is {value:.2f}"  # a feature a refit adds before its words are written


def explain(question: str, chunks: Sequence[ChunkHit], features: dict[str, float | None],
            pushes: dict[str, float], p: float, quarters: Sequence[str] = (), unheld: Sequence[str] = ()) -> str:
    """The reason in words: the estimate and the (at most two) pieces of evidence that pushed it most;
    ``quarters`` the asked quarters no document is of, ``unheld`` the names no document mentions."""
    _, missing = name_coverage(question, chunks)
    strongest = [n for n in sorted(pushes, key=lambda n: -pushes[n]) if pushes[n] > 0 and features[n] is not None
                 and (n != "name_coverage" or set(missing) - set(unheld)) and (n != "quarter_coverage" or quarters)
                 and (n != "names_held" or unheld)][:2]
    said = ("; ".join(_describe(n, features, missing, list(quarters), list(unheld)) for n in strongest)
            or "no single piece of evidence decides")
    return f"{p:.0%} likely unanswered by the documents: {said}"


UNANSWERED = "The documents do not seem to answer this question."
UNANSWERED_ZH = "文档似乎没有回答这个问题。"
CLOSEST = "The closest passages:"
CLOSEST_ZH = "最接近的段落："
PASSAGE_CHARS = 200  # of each closest passage shown


def unanswered_answer(question: str, chunks: Sequence[ChunkHit], shown: int = 3) -> str:
    """The answer when the decision fires: a plain sentence that the documents do not seem to answer, then
    the openings of the closest passages, cited (not a quote that looks like an answer)."""
    chinese = any("\u4e00" <= ch <= "\u9fff" for ch in question)
    lines = [UNANSWERED_ZH if chinese else UNANSWERED]
    if chunks:
        lines.append(CLOSEST_ZH if chinese else CLOSEST)
    for n, chunk in enumerate(chunks[:shown], 1):
        text = " ".join(chunk.text.split())
        cut = text if len(text) <= PASSAGE_CHARS else text[:PASSAGE_CHARS].rsplit(" ", 1)[0] + " …"
        lines.append(f"[{n}] {chunk.citation}: {cut}")
    return "\n\n".join(lines)


def sentence_score(question: str, chunks: Sequence[ChunkHit], spans, *, reranker=None, embedder=None) -> float | None:
    """The quoted (first) sentence's own score for ``question``: the reranker's calibrated score, or without
    one the embedder's cosine; None when the answer quoted nothing."""
    if not spans:
        return None
    span = spans[0]
    text = chunks[span.chunk - 1].text[span.start:span.end]
    if not text.strip():
        return None
    if reranker is not None:
        return float(reranker.readable(reranker.logits(question, [text]))[0])
    if embedder is not None:
        return float(embedder.embed_documents([text])[0] @ embedder.embed_queries([question])[0])
    return None
