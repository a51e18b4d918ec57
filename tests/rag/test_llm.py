"""The answer stage against a real OpenAI-compatible HTTP server on 127.0.0.1, failures included."""

from __future__ import annotations

import json
import re
import logging
from pathlib import Path

import pytest

from ingest.pipeline import Ingestor
from rag.pipeline import RagPipeline
from rag.settings import Settings
from rag.store import KnowledgeBase
from tests.helpers import REPO, FakeOpenAI, free_port

KEY = "sk-test-very-secret-key-123"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("llm-store")
    Ingestor(Settings(data_dir=data_dir)).ingest_paths([REPO / "data" / "sample"])
    return data_dir


def _pipeline(store: Path, server_url: str, **update) -> RagPipeline:
    return RagPipeline(Settings(data_dir=store, openai_base_url=server_url, openai_api_key=KEY,
                                llm_model="test-model", llm_max_retries=0, **update))


def test_llm_answer_uses_numbered_chunks_and_the_key(store: Path, openai_server: FakeOpenAI) -> None:
    result = _pipeline(store, openai_server.url).ask("How long is the refund window?")
    assert result.answer_mode == "llm" and result.error is None
    assert result.answer == openai_server.answer and result.llm_model == "test-model"
    (request,) = openai_server.requests
    assert request["_authorization"] == f"Bearer {KEY}"
    system, user = request["messages"]
    assert "only the numbered context passages" in system["content"] and "[1]" in system["content"]
    for n, chunk in enumerate(result.chunks, 1):
        assert chunk.situated  # the sample documents' titles
        assert f"[{n}] ({chunk.citation} — {chunk.situated})\n{chunk.text}" in user["content"]
    assert user["content"].endswith("Question: How long is the refund window?")


def test_streamed_answer_arrives_in_pieces(store: Path, openai_server: FakeOpenAI) -> None:
    pieces: list[str] = []
    result = _pipeline(store, openai_server.url).ask("Refunds?", on_token=pieces.append)
    assert len(pieces) == len(openai_server.answer.split(" ")) > 1
    assert "".join(pieces) == openai_server.answer == result.answer
    assert openai_server.requests[0]["stream"] is True


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("fail-401", "rejected the API key (401 Unauthorized)"),
        ("fail-429", "rate-limiting requests (429 Too Many Requests)"),
        ("fail-500", "The LLM server failed (500)"),
        ("hang", "did not answer within 1 s (timeout)"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_llm_failures_keep_the_retrieval_and_say_why(
    store: Path, openai_server: FakeOpenAI, model: str, message: str, stream: bool,
) -> None:
    pipeline = _pipeline(store, openai_server.url, llm_timeout_s=1.0)
    pipeline.settings.llm_model = model
    result = pipeline.ask("How long is the refund window?", on_token=(lambda _: None) if stream else None)
    assert message in result.error
    assert result.answer_mode == "extractive" and re.search(r"\[\d\]", result.answer)
    stored = KnowledgeBase(pipeline.settings).count()
    assert len(result.chunks) == 5 and len(result.candidates) == min(stored, 20)  # every chunk of the sample store


def test_broken_stream_is_reported(store: Path, openai_server: FakeOpenAI) -> None:
    pipeline = _pipeline(store, openai_server.url)
    pipeline.settings.llm_model = "broken-stream"
    received: list[str] = []
    result = pipeline.ask("How long is the refund window?", on_token=received.append)
    assert result.error.startswith("The answer stream broke off")
    assert received == ["The", " refund"]  # what arrived before the break
    assert result.answer_mode == "extractive" and result.chunks


def test_connection_refused(store: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = _pipeline(store, url).ask("How long is the refund window?")
    assert result.error == f"Could not connect to the LLM server at {url}."
    assert result.answer_mode == "extractive" and result.chunks


def test_the_key_never_shows(store: Path, openai_server: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pipeline = _pipeline(store, openai_server.url)
    pipeline.settings.llm_model = "fail-401"
    result = pipeline.ask("Refunds?")
    dumped = result.model_dump_json() + json.dumps(result.model_dump()) + repr(pipeline.settings) + str(pipeline.settings)
    assert KEY not in dumped
    assert KEY not in caplog.text
    assert "**********" in repr(pipeline.settings.openai_api_key)


def test_no_llm_configured_means_extractive_without_error(store: Path) -> None:
    result = RagPipeline(Settings(data_dir=store)).ask("How long is the refund window?")
    assert result.answer_mode == "extractive" and result.error is None and result.llm_model is None
