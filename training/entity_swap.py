"""Negatives that match the question in all but a name (``rerank-rag reranker label --entity-swaps``).

A first stage's hard negatives are other passages on the question's topic; few are the same passage about
another company or person. That is the mistake the 6-layer students make on the SEC 10-Q set ("NVIDIA's total
net sales" scored highest on Apple's net-sales page). Renaming, in the gold passage, a name the question
shares with it is the cheapest such negative. The teacher, which reads names, scores it like every other
candidate, so the student learns from the teacher how much the name matters, not from a rule of ours.
"""

from __future__ import annotations

import random
import re

from training.data import TrainQuery

# a run of capitalised words: "NVIDIA", "Super Bowl 50", "Denver Broncos" (a regex: no tagger ships offline here)
NAME = re.compile(r"\b[A-Z][\w&'-]*(?:\s+(?:[A-Z][\w&'-]*|\d+))*")
NOT_NAMES = {"what", "who", "whom", "whose", "when", "where", "which", "how", "why", "the", "a", "an", "in", "on",
             "of", "is", "was", "are", "were", "did", "does", "do", "can", "list", "name", "according", "during"}


def names(text: str) -> set[str]:
    """The capitalised runs of ``text``, a leading question or article word dropped ("The Broncos" -> "Broncos")."""
    out = set()
    for match in NAME.finditer(text):
        words = match.group(0).split()
        while words and words[0].lower() in NOT_NAMES:
            words = words[1:]
        if words and len(" ".join(words)) >= 3:
            out.add(" ".join(words).removesuffix("'s"))
    return out


def shared_name(query: TrainQuery) -> str | None:
    """The longest name the question and its first gold passage share, or None."""
    if not query.positives:
        return None
    passage = query.positives[0]
    shared = [n for n in names(query.query) if re.search(rf"\b{re.escape(n)}\b", passage)]
    return max(shared, key=lambda n: (len(n), n)) if shared else None


def add_entity_swaps(queries: list[TrainQuery], rng: random.Random) -> int:
    """Append to each question that shares a name with its gold passage one negative: that passage with the
    name renamed to another question's shared name (one that is not in the passage). Returns how many."""
    found = [(q, name) for q in queries if (name := shared_name(q))]
    pool = sorted({name for _, name in found})
    added = 0
    for q, name in found:
        passage = q.positives[0]
        others = [n for n in pool if n != name and n not in passage and name not in n]
        if not others:
            continue
        q.negatives = [*q.negatives, re.sub(rf"\b{re.escape(name)}\b", rng.choice(others), passage)]
        added += 1
    return added
