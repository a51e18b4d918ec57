"""A teacher's scores on every mined candidate (``rerank-rag reranker label``): what a distilled student learns from.

A mined file (:mod:`training.mine`) holds, per training question, its gold passages and the first stage's top
non-relevant ones. Labelling runs the teacher (any reranker spec, by default the app's default reranker) over
each question's candidates and records its raw logit per passage, so the student learns graded relevance on
every candidate the first stage hands over, not one gold passage per question. Scores stay parallel to the
passages (``TrainQuery.positive_scores`` / ``negative_scores``) and travel in the same file, so labelling (here,
on CPU) and training (on a lent GPU) can run on different machines.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from training.entity_swap import add_entity_swaps
from training.mine import load_mined, save_mined


def label_mined(mined: str | Path, out: str | Path, teacher_spec: str, *, negatives: int | None = None,
                max_queries: int | None = None, entity_swaps: bool = False, seed: int = 13,
                log: Callable[[str], None] = print) -> dict:
    """Score every question's positives and (its first ``negatives``) negatives with ``teacher_spec``; write
    the labelled file to ``out``. ``entity_swaps``: one more negative per question, its gold passage with a name
    it shares with the question renamed (training.entity_swap). Returns what labelled it (recorded in the file
    under ``teacher``)."""
    from rag.rerank import reranker_from_spec

    queries, sources, first_stage = load_mined(mined)
    if max_queries is not None:
        queries = queries[:max_queries]
    if negatives is not None:
        for q in queries:
            q.negatives = q.negatives[:negatives]
    swaps = add_entity_swaps(queries, random.Random(seed)) if entity_swaps else 0
    if entity_swaps:
        log(f"{swaps} of {len(queries)} questions got a negative with a name renamed")
    teacher = reranker_from_spec(teacher_spec)
    started = time.perf_counter()
    pairs = 0
    for n, q in enumerate(queries, 1):
        scores = teacher.logits(q.query, q.positives + q.negatives)
        q.positive_scores, q.negative_scores = scores[:len(q.positives)], scores[len(q.positives):]
        pairs += len(scores)
        if n % 100 == 0 or n == len(queries):
            rate = pairs / (time.perf_counter() - started)
            log(f"labelled {n}/{len(queries)} questions ({pairs} pairs, {rate:.0f} pairs/s, "
                f"ETA {(len(queries) - n) * pairs / n / rate / 60:.1f} min)")
    info = {"spec": teacher_spec, "name": teacher.name, "backend": getattr(teacher, "backend", None),
            "file": Path(getattr(teacher, "file_name", None) or "").name or None,
            "max_length": getattr(teacher, "max_length", None),
            # how its logits read as probabilities: a student trained on its scale (--score-weight) inherits it
            "calibration": list(getattr(teacher, "calibration", (1.0, 0.0))), "pairs": pairs, "entity_swaps": swaps,
            "seconds": round(time.perf_counter() - started, 1)}
    first_stage.pop("teacher", None)  # relabelling replaces the previous teacher
    save_mined(out, queries, sources, first_stage, teacher=info)
    return info
