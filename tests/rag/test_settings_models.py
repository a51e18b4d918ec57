"""One settings object from env vars and secrets.toml; models resolve offline first, or say how to get them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rag.embedders.models import ModelUnavailableError, configured_embedder, load_embedder, resolve_model
from rag.settings import Settings


def test_env_vars_and_the_openai_conventions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TOP_K", "7")
    monkeypatch.setenv("RAG_DATA_DIR", "/tmp/elsewhere")
    monkeypatch.setenv("RAG_CHROMA_HOST", "10.1.2.3")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    settings = Settings()
    assert settings.top_k == 7 and settings.data_dir == Path("/tmp/elsewhere")
    assert settings.uses_chroma_server and settings.chroma_port == 8000
    assert settings.openai_api_key.get_secret_value() == "sk-from-env"
    assert settings.llm_configured and "sk-from-env" not in repr(settings)


def test_secrets_toml_is_read_and_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('OPENAI_API_KEY = "sk-from-secrets"\nllm_model = "llama3.1"\ntop_n = 3\n')
    monkeypatch.setattr("rag.settings.SECRETS_FILE", secrets)
    monkeypatch.setenv("RAG_TOP_N", "4")
    settings = Settings()
    assert settings.openai_api_key.get_secret_value() == "sk-from-secrets"
    assert settings.llm_model == "llama3.1" and settings.top_n == 4


def test_defaults_need_no_llm_and_bad_values_are_refused() -> None:
    settings = Settings()
    assert not settings.llm_configured and settings.top_k == 20 and settings.top_n == 5
    with pytest.raises(ValidationError, match="chunk_overlap"):
        Settings(chunk_size=100, chunk_overlap=100)
    with pytest.raises(ValidationError):
        Settings(top_k=0)


def test_packaged_alias_and_local_folder_resolve_offline(monkeypatch: pytest.MonkeyPatch, minilm_path: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("all-MiniLM-L6-v2") == minilm_path
    assert resolve_model(minilm_path) == minilm_path
    embedder = load_embedder("all-MiniLM-L6-v2")
    assert embedder is load_embedder("all-MiniLM-L6-v2"), "models load once per process"
    vectors = embedder.embed_documents(["A cat sits.", "A kitten is sitting.", "Quarterly revenue rose."])
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_the_embed_engine_setting_reaches_the_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_EMBED_ENGINE", "c")
    assert configured_embedder(Settings()).engine == "c"
    assert configured_embedder(Settings(embed_engine="onnx"), "multilingual-e5-small").engine == "onnx"
    with pytest.raises(ValidationError, match="embed_engine"):
        Settings(embed_engine="gpu")


def test_unavailable_models_say_what_failed_and_how_to_fix_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelUnavailableError) as raised:
        resolve_model("BAAI/bge-reranker-base", kind="reranker")
    message = str(raised.value)
    assert message.startswith("reranker 'BAAI/bge-reranker-base' is not available")
    assert "HF_HUB_OFFLINE is set" in message and "huggingface-cli download BAAI/bge-reranker-base" in message
    with pytest.raises(ModelUnavailableError, match="no such folder"):
        resolve_model(str(tmp_path / "missing-model"), kind="embedding model")


def test_a_model_in_the_hf_cache_is_found_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, minilm_path: str) -> None:
    """Lay the packaged weights out as the hub cache would hold `acme/mini`, then resolve it offline."""
    import shutil

    hub = tmp_path / "hf" / "hub"
    snapshot = hub / "models--acme--mini" / "snapshots" / ("0" * 40)
    shutil.copytree(minilm_path, snapshot)
    (hub / "models--acme--mini" / "refs").mkdir(parents=True)
    (hub / "models--acme--mini" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    assert Path(resolve_model("acme/mini")) == snapshot
