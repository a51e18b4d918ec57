"""What a hostile or broken LLM server does to the answer stage: cut streams, truncated replies, hangs,
and a base URL pointed elsewhere, which must never receive the server's API key."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

import rag.settings
from ingest.pipeline import Ingestor
from rag.answer import LlmAnswerer, LlmError
from rag.pipeline import RagPipeline
from rag.settings import Settings
from tests.helpers import REPO, FakeOpenAI, free_port, openai_handler

KEY = "sk-server-secret-key-456"


@pytest.fixture
def other_server() -> Iterator[FakeOpenAI]:
    """A second fake OpenAI server: the host a browser visitor would point the base URL at."""
    state = FakeOpenAI(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), openai_handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def _answer(settings: Settings, stream: bool = False, received: list[str] | None = None) -> str:
    on_token = (received.append if received is not None else (lambda _: None)) if stream else None
    return LlmAnswerer(settings).answer("How long is the refund window?", [], on_token)


def _settings(url: str, model: str = "test-model", **update) -> Settings:
    return Settings(openai_base_url=url, openai_api_key="k", llm_model=model, **{"llm_max_retries": 0, **update})


# ---- streams that end without finishing the answer ------------------------------------------------
def test_a_stream_closed_without_finish_reason_or_done_is_cut_off(openai_server: FakeOpenAI) -> None:
    received: list[str] = []
    with pytest.raises(LlmError, match=r"^The answer stream was cut off after 10 characters"):
        _answer(_settings(openai_server.url, "stream-no-done"), stream=True, received=received)
    assert received == ["The", " refund"]


@pytest.mark.parametrize("model", ["test-model", "stream-no-finish", "stream-no-done-finished"])
def test_a_stream_with_finish_reason_or_done_is_whole(openai_server: FakeOpenAI, model: str) -> None:
    assert _answer(_settings(openai_server.url, model), stream=True) == openai_server.answer


# ---- replies cut short --------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["truncated-json", "truncated-body"])
def test_a_truncated_reply_is_called_incomplete_not_unreachable(openai_server: FakeOpenAI, model: str) -> None:
    with pytest.raises(LlmError) as failure:
        _answer(_settings(openai_server.url, model))
    assert str(failure.value).startswith("The LLM server sent an incomplete or malformed reply")
    assert "Could not connect" not in str(failure.value)


def test_a_refused_connection_is_still_could_not_connect() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LlmError, match="^Could not connect to the LLM server at "):
        _answer(_settings(url, llm_max_retries=1))


# ---- timeouts: the wait the message states is the wait ---------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_a_timeout_is_not_retried(openai_server: FakeOpenAI, stream: bool) -> None:
    settings = _settings(openai_server.url, "hang", llm_timeout_s=1.0, llm_max_retries=2)
    started = time.perf_counter()
    with pytest.raises(LlmError, match=r"did not answer within 1 s \(timeout\)"):
        _answer(settings, stream=stream)
    waited = time.perf_counter() - started
    assert len(openai_server.requests) == 1  # the openai client would have asked 3 times, 3+ s in all
    assert waited < 2.5


@pytest.mark.parametrize("model", ["fail-500", "fail-429"])
def test_quick_failures_are_still_retried(openai_server: FakeOpenAI, model: str) -> None:
    with pytest.raises(LlmError):
        _answer(_settings(openai_server.url, model, llm_max_retries=1))
    assert len(openai_server.requests) == 2


def test_no_retry_once_text_has_been_shown(openai_server: FakeOpenAI) -> None:
    with pytest.raises(LlmError, match="broke off after 10 characters"):
        _answer(_settings(openai_server.url, "broken-stream", llm_max_retries=2), stream=True)
    assert len(openai_server.requests) == 1


# ---- the server's key goes only to the server's base URL --------------------------------------------
@pytest.fixture
def server_key(monkeypatch: pytest.MonkeyPatch, openai_server: FakeOpenAI) -> FakeOpenAI:
    """The server's environment: OPENAI_API_KEY for OPENAI_BASE_URL = ``openai_server``."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    return openai_server


def _authorizations(server: FakeOpenAI) -> list[str]:
    return [request["_authorization"] for request in server.requests]


def test_the_key_goes_to_the_configured_base_url(server_key: FakeOpenAI) -> None:
    assert _answer(Settings()) == server_key.answer
    slash = Settings(openai_base_url=server_key.url.upper().replace("/V1", "/v1") + "/")  # the same URL
    assert _answer(slash, stream=True) == server_key.answer
    assert _authorizations(server_key) == [f"Bearer {KEY}"] * 2


@pytest.mark.parametrize("how", ["keyword", "model_copy", "assignment"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_session_base_url_never_receives_the_servers_key(
    server_key: FakeOpenAI, other_server: FakeOpenAI, how: str, stream: bool,
) -> None:
    if how == "keyword":  # app_pages/state.py: Settings(**session overrides)
        settings = Settings(openai_base_url=other_server.url)
    elif how == "model_copy":
        settings = Settings().model_copy(update={"openai_base_url": other_server.url})
    else:
        settings = Settings()
        settings.openai_base_url = other_server.url
    assert settings.openai_api_key.get_secret_value() == KEY  # the key is in the settings...
    assert _answer(settings, stream=stream) == other_server.answer
    assert _authorizations(other_server) == ["Bearer not-needed"]  # ...but never sent there
    assert not server_key.requests


def test_a_url_that_starts_like_the_configured_one_gets_no_key(
    server_key: FakeOpenAI, other_server: FakeOpenAI,
) -> None:
    home = server_key.url.removeprefix("http://").removesuffix("/v1")  # 127.0.0.1:PORT
    away = other_server.url.removeprefix("http://")
    _answer(Settings(openai_base_url=f"http://{home}@{away}"))  # user-info: the host is the other server
    (authorization,) = _authorizations(other_server)  # httpx sends the user-info as Basic auth
    assert KEY not in authorization and KEY not in base64.b64decode(authorization.split()[-1]).decode()


def test_the_default_openai_url_is_not_the_configured_one_when_another_was(
    monkeypatch: pytest.MonkeyPatch, other_server: FakeOpenAI,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # a key for api.openai.com (no base URL configured)
    _answer(Settings(openai_base_url=other_server.url))
    assert KEY not in "".join(_authorizations(other_server))


def test_a_key_from_the_secrets_file_stays_home_too(other_server: FakeOpenAI) -> None:
    rag.settings.SECRETS_FILE.write_text(f'OPENAI_API_KEY = "{KEY}"\n')
    assert Settings().openai_api_key.get_secret_value() == KEY
    _answer(Settings(openai_base_url=other_server.url))
    assert _authorizations(other_server) == ["Bearer not-needed"]


def test_a_session_with_its_own_key_sends_that_key(server_key: FakeOpenAI, other_server: FakeOpenAI) -> None:
    _answer(Settings(openai_base_url=other_server.url, openai_api_key="sk-visitor-own"))
    assert _authorizations(other_server) == ["Bearer sk-visitor-own"]


def test_a_withheld_key_is_explained_without_showing_it(server_key: FakeOpenAI, other_server: FakeOpenAI) -> None:
    with pytest.raises(LlmError) as failure:
        _answer(Settings(openai_base_url=other_server.url, llm_model="fail-401", llm_max_retries=0))
    assert "own key goes only to its configured base URL" in str(failure.value)
    assert KEY not in str(failure.value)


def test_without_a_server_key_the_callers_key_is_sent(other_server: FakeOpenAI) -> None:
    """No key in the environment: whoever built the settings (CLI, tests) gave the key, for this URL."""
    _answer(Settings(openai_base_url=other_server.url, openai_api_key="sk-cli"))
    assert _authorizations(other_server) == ["Bearer sk-cli"]


# ---- through the pipeline: the retrieval stays, the reason shows ------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("llm-faults-store")
    Ingestor(Settings(data_dir=data_dir)).ingest_paths([REPO / "data" / "sample"])
    return data_dir


@pytest.mark.parametrize(
    ("model", "stream", "message"),
    [
        ("stream-no-done", True, "The answer stream was cut off after 10 characters"),
        ("truncated-json", False, "The LLM server sent an incomplete or malformed reply"),
    ],
)
def test_the_pipeline_falls_back_and_says_why(
    store: Path, openai_server: FakeOpenAI, model: str, stream: bool, message: str,
) -> None:
    pipeline = RagPipeline(Settings(data_dir=store, openai_base_url=openai_server.url, openai_api_key="k",
                                    llm_model=model, llm_max_retries=0))
    result = pipeline.ask("How long is the refund window?", on_token=(lambda _: None) if stream else None)
    assert result.error.startswith(message)
    assert result.answer_mode == "extractive" and result.chunks


# ---- 429 with Retry-After: wait what the server asks, when that is short ---------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_a_429_with_a_short_retry_after_is_waited_out(openai_server: FakeOpenAI, stream: bool) -> None:
    started = time.perf_counter()
    assert _answer(_settings(openai_server.url, "fail-429-retry-after-1", llm_max_retries=1),
                   stream=stream) == openai_server.answer
    waited = time.perf_counter() - started
    assert len(openai_server.requests) == 2  # the 429, then the answer
    assert 1.0 <= waited < 4  # Retry-After: 1, not the 0.5 s backoff


def test_a_429_asking_for_a_long_wait_says_so_at_once(openai_server: FakeOpenAI) -> None:
    started = time.perf_counter()
    with pytest.raises(LlmError, match=r"rate-limiting requests \(429 Too Many Requests\): it asks to wait 30 s"):
        _answer(_settings(openai_server.url, "fail-429-retry-after-30", llm_max_retries=2))
    assert len(openai_server.requests) == 1 and time.perf_counter() - started < 2  # no 30 s hold, no retry
