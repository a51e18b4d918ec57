"""Distillation: a student reranker learns its teacher's scores over each question's candidates.

Loss (``--loss distil``): listwise KL divergence between the teacher's and the student's softmax over one
question's candidates (1 gold passage + N mined negatives), at temperature T, scaled by T² so its gradients keep
their size as T changes (Hinton et al., 2015); plus ``gold_weight`` x the listwise cross-entropy on the gold
label (the loss of ``--loss listwise``). Listwise, not MarginMSE: the student only ever has to order one
question's candidates, and the softmax spends its capacity on the top of the list, where MRR@5 is decided;
MarginMSE would also fit the exact gaps between hopeless negatives.

``score_weight`` adds the mean squared error between the student's and the teacher's raw logits (the pointwise
distillation of sentence-transformers' cross-encoder recipes). The KL term is blind to a shift of all of a
question's logits, but the app reads their level: the confident blend weighs the reranker by sigmoid(best
logit) (rag.rerank.blend), so a student that orders like its teacher but on another scale blends differently.

A student's start: :func:`student_start` keeps by default the teacher's layers 1, 3, ..., 11 (the last one included:
the pooler and head were trained on its output), read from the teacher's int8 ONNX file
(:mod:`training.dequantize`); or any checkpoint (``--base``), e.g. the packaged all-MiniLM-L6-v2.
"""

from __future__ import annotations

import random
from pathlib import Path

from training.data import TrainQuery

EVERY_OTHER = (1, 3, 5, 7, 9, 11)


def sample_candidates(ex: TrainQuery, negatives: int, rng: random.Random) -> tuple[list[str], list[float] | None]:
    """One gold passage and up to ``negatives`` mined negatives, gold first, with the teacher's logit for each;
    scores None for a question no teacher labelled (one in a language the teacher does not read: it learns
    from its gold label). Fewer mined negatives than asked: the list is shorter (padding with random passages
    would teach scores the teacher never gave)."""
    labelled = len(ex.positive_scores) == len(ex.positives) and len(ex.negative_scores) == len(ex.negatives) \
        and bool(ex.positive_scores)
    pos = rng.randrange(len(ex.positives))
    pool = [i for i, text in enumerate(ex.negatives) if text not in ex.positives]
    picked = rng.sample(pool, min(negatives, len(pool)))
    texts = [ex.positives[pos]] + [ex.negatives[i] for i in picked]
    if not labelled:
        return texts, None
    return texts, [ex.positive_scores[pos]] + [ex.negative_scores[i] for i in picked]


def require_labels(examples: list[TrainQuery]) -> None:
    if not any(ex.positive_scores for ex in examples):
        raise ValueError("no training question has teacher scores: label the mined file first "
                         "(`rerank-rag reranker label`)")


def distil_loss(student, teacher, mask, temperature: float = 1.0, gold_weight: float = 0.0, labelled=None,
                score_weight: float = 0.0):
    """``student``, ``teacher``: logits ``[questions, candidates]`` (gold in column 0); ``mask``: which
    candidates exist (lists may be shorter); ``labelled``: which rows the teacher scored (default all).
    KL(teacher || student) at ``temperature``, x T², mean over questions; an unlabelled row's target is its
    gold passage alone (KL to a one-hot target is the listwise cross-entropy). Plus ``gold_weight`` x the
    cross-entropy on column 0 for every row; plus ``score_weight`` x the mean squared logit error over the
    labelled rows' candidates (the teacher's scale)."""
    import torch

    neg_inf = torch.finfo(student.dtype).min
    s = (student / temperature).masked_fill(~mask, neg_inf)
    p_t = torch.softmax((teacher / temperature).masked_fill(~mask, neg_inf), dim=1)
    if labelled is not None:
        one_hot = torch.zeros_like(p_t)
        one_hot[:, 0] = 1.0
        p_t = torch.where(labelled[:, None], p_t, one_hot)
    log_s = torch.log_softmax(s, dim=1)
    kl = (p_t * (torch.log(p_t.clamp_min(1e-12)) - log_s)).masked_fill(~mask, 0.0).sum(dim=1).mean()
    loss = kl * temperature ** 2
    if gold_weight:
        gold = torch.zeros(student.shape[0], dtype=torch.long, device=student.device)
        loss = loss + gold_weight * torch.nn.functional.cross_entropy(student.masked_fill(~mask, neg_inf), gold)
    if score_weight:
        scored = mask if labelled is None else mask & labelled[:, None]
        if scored.any():
            loss = loss + score_weight * ((student - teacher)[scored] ** 2).mean()
    return loss


def match_teacher_scale(classifier, student, teacher) -> tuple[float, float]:
    """Fold the least-squares line ``teacher = a * student + c`` over the given logits into the one-logit head
    (weight x a, bias x a + c), so a start on another scale begins on the teacher's: otherwise the squared-error
    term's first gradients would spend themselves on rescaling, through the whole encoder. A start that orders
    against its teacher (a <= 0) keeps its order: a is then the ratio of the spreads. Returns (a, c)."""
    import torch

    s, t = student.double().flatten(), teacher.double().flatten()
    spread = ((s - s.mean()) ** 2).sum()
    a = float(((s - s.mean()) * (t - t.mean())).sum() / spread) if spread > 0 else 1.0
    if a <= 0:
        a = float(t.std() / s.std()) if s.std() > 0 else 1.0
    c = float(t.mean() - a * s.mean())
    with torch.no_grad():
        classifier.weight.mul_(a)
        classifier.bias.mul_(a).add_(c)
    return a, c


def student_start(teacher: str, out: str | Path, layers: tuple[int, ...] = EVERY_OTHER) -> Path:
    """A student's start from an int8 model (a catalog name, a packaged model or a folder with an ONNX file): its
    embeddings, the given ``layers`` (default: every other of 12), its pooler and head, as a torch folder in ``out``.
    All of a 6-layer model's layers (0-5) read a shipped student back for more training."""
    from rag.rerank import resolve_reranker
    from training.dequantize import torch_folder_from_onnx

    path, _ = resolve_reranker(teacher)
    return torch_folder_from_onnx(path, out, layers=layers)
