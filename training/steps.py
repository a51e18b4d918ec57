"""One training step's forward pass and loss (:func:`training.train.train` runs them).

Where a CPU step's time goes (``scripts/bench_train_step.py --profile``, docs/distillation.md): matrix products,
and with dropout on the attention probabilities also the dropout masks themselves (``bernoulli_`` over every
layer's [pairs x heads x tokens x tokens] tensor) and SDPA's slow path, which PyTorch takes on CPU whenever
attention dropout is on. So a step can run the attention without dropout (``attention_dropout``), in bf16
autocast on a CPU whose matrix units take it (``cpu_bf16``: AMX / AVX-512 BF16), and cut each question's pairs
at its language's length (``max_length_by_language``), each language padded to its own longest pair.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.train import TrainConfig


def pair_length(query: str, cfg: TrainConfig) -> int:
    """The tokens a pair is cut at: its question's language's (``zh``, ``ja``, ``ko``, by script) or the default."""
    from rag.catalog import question_script_language

    return cfg.max_length_by_language.get(question_script_language(query) or "", cfg.max_length)


def pair_logits(model, tok, queries: list[str], docs: list[str], cfg: TrainConfig, device: str):
    """The model's logit per (query, passage) pair, one flat tensor in the pairs' order; one forward per length
    (a Chinese question's pairs at their own length, padded to their own longest); bf16 autocast on CUDA, and on
    a CPU when ``cfg.cpu_bf16``."""
    import torch

    lengths = [pair_length(q, cfg) for q in queries]
    groups = {length: [i for i, x in enumerate(lengths) if x == length] for length in sorted(set(lengths))}
    parts, order = [], []
    for length, rows in groups.items():
        enc = tok([queries[i] for i in rows], [docs[i] for i in rows], padding=True, truncation="only_second",
                  max_length=length, return_tensors="pt").to(device)
        bf16 = device == "cuda" or (device == "cpu" and cfg.cpu_bf16)
        with torch.autocast("cuda" if device == "cuda" else "cpu", dtype=torch.bfloat16, enabled=bf16):
            parts.append(model(**enc).logits.float().view(-1))
        order += rows
    if len(parts) == 1:
        return parts[0]
    flat = torch.cat(parts)
    back = torch.empty(len(order), dtype=torch.long, device=flat.device)
    back[torch.tensor(order, device=flat.device)] = torch.arange(len(order), device=flat.device)
    return flat[back]


def set_attention_dropout(model, p: float | None) -> None:
    """Attention-probability dropout ``p`` in every layer (None: the base's own). transformers' BERT-family
    attention modules pass their ``dropout.p`` to the attention function (SDPA's ``dropout_p``)."""
    if p is None:
        return
    model.config.attention_probs_dropout_prob = p
    for module in model.modules():
        if type(module).__name__.endswith(("SelfAttention", "CrossAttention")) and hasattr(module, "dropout"):
            module.dropout.p = p


def start_on_teacher_scale(model, tok, examples, cfg: TrainConfig, device: str, log, questions: int = 32) -> None:
    """Rescale the start's head to its teacher's logits over the first labelled questions
    (distill.match_teacher_scale)."""
    import torch

    from training.distill import match_teacher_scale

    sample = [ex for ex in examples if ex.positive_scores][:questions]
    pairs = [(ex.query, text) for ex in sample for text in ex.positives + ex.negatives]
    target = torch.tensor([x for ex in sample for x in ex.positive_scores + ex.negative_scores])
    model.eval()  # no dropout while measuring the scale
    with torch.no_grad():
        logits = torch.cat([pair_logits(model, tok, [q for q, _ in pairs[i:i + 64]], [d for _, d in pairs[i:i + 64]],
                                        cfg, device).cpu() for i in range(0, len(pairs), 64)])
    model.train()
    a, c = match_teacher_scale(model.classifier, logits, target)
    log(f"start rescaled to the teacher's logits over {len(pairs)} pairs: {a:.3f} x logit {c:+.3f}")


def listwise_step(model, tok, batch, cfg: TrainConfig, rng: random.Random, device: str, all_texts: list[str]):
    """Cross-entropy of the gold passage against ``cfg.negatives`` mined ones: (loss, pairs)."""
    import torch

    queries, docs = [], []
    for ex in batch:
        pos = rng.choice(ex.positives)
        pool = [n for n in ex.negatives if n not in ex.positives]
        negs = rng.sample(pool, min(cfg.negatives, len(pool)))
        while len(negs) < cfg.negatives:  # too few mined: random in-set passages
            cand = rng.choice(all_texts)
            if cand not in ex.positives and cand not in negs:
                negs.append(cand)
        for t in [pos] + negs:
            queries.append(ex.query)
            docs.append(t)
    logits = pair_logits(model, tok, queries, docs, cfg, device).view(len(batch), 1 + cfg.negatives)
    gold = torch.zeros(len(batch), dtype=torch.long, device=device)
    return torch.nn.functional.cross_entropy(logits, gold), len(docs)


def distil_step(model, tok, batch, cfg: TrainConfig, rng: random.Random, device: str):
    """The teacher's scores over each question's candidates as targets (training.distill): (loss, pairs)."""
    import torch

    from training.distill import distil_loss, sample_candidates

    lists = [sample_candidates(ex, cfg.negatives, rng) for ex in batch]
    labelled = torch.tensor([scores is not None for _, scores in lists], device=device)
    width = max(len(texts) for texts, _ in lists)
    queries = [ex.query for ex, (texts, _) in zip(batch, lists) for _ in texts]
    docs = [t for texts, _ in lists for t in texts]
    flat = pair_logits(model, tok, queries, docs, cfg, device)
    student = torch.zeros(len(batch), width, device=device)
    teacher = torch.zeros(len(batch), width, device=device)
    mask = torch.zeros(len(batch), width, dtype=torch.bool, device=device)
    at = 0
    for row, (texts, scores) in enumerate(lists):
        student[row, :len(texts)] = flat[at:at + len(texts)]
        if scores is not None:
            teacher[row, :len(texts)] = torch.tensor(scores, device=device)
        mask[row, :len(texts)] = True
        at += len(texts)
    return distil_loss(student, teacher, mask, cfg.temperature, cfg.gold_weight, labelled,
                       cfg.score_weight), len(docs)
