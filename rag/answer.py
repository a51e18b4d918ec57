"""The last stage: an answer from the top-n chunks, by an LLM, or extractively when there is none.

The LLM is any server that speaks OpenAI's chat-completions API. Its failures never lose the
retrieval: :class:`LlmError` carries a plain-words message (never the API key), and the pipeline then
falls back to the extractive answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rag.settings import Settings
from rag.types import ChunkHit

SYSTEM_PROMPT = (
    "You answer questions about the user's documents. Use only the numbered context passages. "
    "Cite every fact with the passage number in square brackets, like [1] or [2][3]. "
    "If the passages do not contain the answer, say that the documents do not contain it; do not guess."
)


class LlmError(RuntimeError):
    """The LLM could not answer; the message is safe to show (it never holds the key)."""


HISTORY_CHARS = 3000  # the budget of earlier turns in an answer's prompt (~750 tokens), newest kept first
_TURN_ANSWER_CHARS = 600  # of each earlier answer
_CITATION = re.compile(r"\s*\[\d+\]")


DOUBT_NOTE = (
    "Note: the retrieval judged that these passages probably do not answer the question ({reason}). If they do "
    "not, begin your answer by saying plainly that the documents do not seem to answer it, then say what the "
    "closest passages are about; do not present an unrelated figure or fact as the answer."
)


def build_messages(question: str, chunks: Sequence[ChunkHit], history: Sequence[tuple[str, str]] = (),
                   doubt: str | None = None) -> list[dict[str, str]]:
    """The chat for an answer: the rules, the chat's earlier turns (``history``: (question, answer) pairs, oldest
    first, within ``HISTORY_CHARS``), then the numbered passages with the user's own question, and with
    ``doubt`` (the abstention's reason, :mod:`rag.abstain`) a note asking to say so when they do not answer.
    Earlier answers lose their [n] marks: those numbers named other passages."""
    # each passage headed by its source and page, and by its document's title and section (ingest.identity), so
    # that the model tells whose figures a page gives
    context = "\n\n".join(f"[{n}] ({chunk.citation}{f' — {chunk.situated}' if chunk.situated else ''})\n{chunk.text}"
                          for n, chunk in enumerate(chunks, 1))
    turns: list[dict[str, str]] = []
    budget = HISTORY_CHARS
    for asked, answered in reversed(list(history)):
        answered = _CITATION.sub("", answered)[:_TURN_ANSWER_CHARS]
        budget -= len(asked) + len(answered)
        if budget < 0:
            break
        turns[:0] = [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        *turns,
        {"role": "user", "content": f"Context passages:\n\n{context}\n\nQuestion: {question}"
         + (f"\n\n{DOUBT_NOTE.format(reason=doubt)}" if doubt else "")},
    ]


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


OPENAI_API_URL = "https://api.openai.com/v1"  # where the openai client goes when no base URL is set


def _same_server(url, other: str) -> bool:
    """Whether ``other`` names the server and path of ``url``, the client's parsed base URL. Parsed by the
    client's own URL class, so that the check and the request can never read a URL two ways."""

    def parts(u) -> tuple:
        return (u.scheme, u.host.lower(), u.port or {"http": 80, "https": 443}.get(u.scheme), u.path.rstrip("/"),
                bytes(u.query))

    try:
        return parts(url) == parts(type(url)(other))
    except Exception:  # noqa: BLE001 - an unparsable URL (any error of the URL class) is not the configured one
        return False


_SERVER_LLM = None  # the settings class of _configured_llm, built on first use


def _configured_llm() -> tuple[str | None, str | None]:
    """The API key and base URL as the server's environment and secrets file set them, before any caller's
    (a browser session's) overrides: the same sources as :class:`Settings`, these two fields only."""
    from pydantic import ValidationError

    global _SERVER_LLM
    if _SERVER_LLM is None:
        from pydantic import Field, SecretStr
        from pydantic_settings import BaseSettings, SettingsConfigDict

        fields = Settings.model_fields

        class ServerLlm(BaseSettings):
            model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore", populate_by_name=True)
            openai_api_key: SecretStr | None = Field(None, validation_alias=fields["openai_api_key"].validation_alias)
            openai_base_url: str | None = Field(None, validation_alias=fields["openai_base_url"].validation_alias)

            settings_customise_sources = classmethod(Settings.settings_customise_sources.__func__)

        _SERVER_LLM = ServerLlm
    try:
        server = _SERVER_LLM()
    except ValidationError:
        return None, None
    return (server.openai_api_key.get_secret_value() if server.openai_api_key else None), server.openai_base_url


class _DoneWatch:
    """Wraps the SSE decoder of an openai ``Stream`` to note the ``data: [DONE]`` that ends a whole answer
    (the client swallows it)."""

    def __init__(self, decoder) -> None:
        self._decoder, self.seen = decoder, False

    def iter_bytes(self, iterator):
        for event in self._decoder.iter_bytes(iterator):
            if event.data.startswith("[DONE]"):
                self.seen = True
            yield event

    def __getattr__(self, name: str):
        return getattr(self._decoder, name)

    @classmethod
    def attach(cls, stream) -> _DoneWatch | None:
        """Watch ``stream`` (before it is read); None where this openai version reads it otherwise."""
        decoder = getattr(stream, "_decoder", None)
        if decoder is None or not callable(getattr(decoder, "iter_bytes", None)):
            return None
        watch = cls(decoder)
        stream._decoder = watch
        return watch


_MAX_RETRY_AFTER_S = 8.0  # a server that asks for a longer wait gets no retry: the user hears why at once
_CONNECT_FAILURES = {"ConnectError", "ConnectTimeout", "UnsupportedProtocol", "ProxyError", "InvalidURL",
                     "LocalProtocolError", "gaierror", "ConnectionRefusedError"}


class LlmAnswerer:
    """Chat completions through the ``openai`` client, plain or streamed.

    The server's own API key (OPENAI_API_KEY in its environment or secrets file) goes only to the base URL
    configured beside it: a caller that points ``openai_base_url`` elsewhere (a browser session's Settings
    page) gets no key sent unless it gives its own ``openai_api_key``.
    """

    def __init__(self, settings: Settings) -> None:
        from openai import OpenAI

        self.settings = settings
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        server_key, server_base_url = _configured_llm()
        # Local servers (Ollama, vLLM, LM Studio) take any key, but the client insists on one. An explicit
        # key and base URL: the client would otherwise read OPENAI_API_KEY / OPENAI_BASE_URL itself.
        # No client retries: chat() retries what is worth it, never a timeout.
        self.client = OpenAI(
            api_key="not-needed",
            base_url=settings.openai_base_url or OPENAI_API_URL,
            timeout=settings.llm_timeout_s,
            max_retries=0,
        )
        self._key_withheld = bool(key) and key == server_key and not _same_server(
            self.client.base_url, server_base_url or OPENAI_API_URL)
        self._key = None if self._key_withheld else key
        self._secrets = [secret for secret in {key, server_key} if secret]  # redacted from every message
        if self._key:
            self.client.api_key = self._key
        else:  # nor the server's account ids (OPENAI_ORG_ID / OPENAI_PROJECT_ID) to a server without its key
            self.client.organization = None
            self.client.project = None

    def answer(self, question: str, chunks: Sequence[ChunkHit], on_token: Callable[[str], None] | None = None,
               history: Sequence[tuple[str, str]] = (), doubt: str | None = None) -> str:
        """The model's answer from the numbered chunks, the chat's earlier (question, answer) turns before them;
        with ``on_token`` it streams each piece of text; ``doubt``: why the documents may not answer (the
        prompt then asks the model to say so, see :func:`build_messages`)."""
        return self.chat(build_messages(question, chunks, history, doubt), on_token)

    def complete(self, prompt: str) -> str:
        """The model's reply to one user message (evaluation writes questions with it)."""
        return self.chat([{"role": "user", "content": prompt}])

    def chat(self, messages: list[dict[str, str]], on_token: Callable[[str], None] | None = None) -> str:
        """One chat completion, plain or streamed; every failure becomes an :class:`LlmError` in plain words.

        Up to ``llm_max_retries`` more tries, only for what a second try soon fixes (a refused connection,
        408/409/429, 5xx) and only before any text arrived; never after a timeout, so a server that does not
        answer costs ``llm_timeout_s``, as the message says, not a multiple of it.
        """
        import time

        attempts = self.settings.llm_max_retries + 1
        for attempt in range(1, attempts + 1):
            parts: list[str] = []
            try:
                return self._chat_once(messages, on_token, parts)
            except LlmError:
                raise
            except Exception as error:  # every failure is explained in _explain
                delay = None if parts or attempt == attempts else self._retry_delay(error, attempt)
                if delay is None:
                    raise self._explain(error, parts) from error
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns or raises

    def _chat_once(self, messages: list[dict[str, str]], on_token: Callable[[str], None] | None,
                   parts: list[str]) -> str:
        if on_token is None:
            response = self.client.chat.completions.create(
                model=self.settings.llm_model, messages=messages, temperature=self.settings.llm_temperature
            )
            if not response.choices:
                raise LlmError("The LLM server returned no answer (empty choices).")
            return (response.choices[0].message.content or "").strip()
        stream = self.client.chat.completions.create(
            model=self.settings.llm_model,
            messages=messages,
            temperature=self.settings.llm_temperature,
            stream=True,
        )
        done = _DoneWatch.attach(stream)
        finish_reason = None
        for event in stream:
            for choice in event.choices or []:
                finish_reason = getattr(choice, "finish_reason", None) or finish_reason
            delta = getattr(event.choices[0], "delta", None) if event.choices else None
            piece = getattr(delta, "content", None)
            if piece:
                parts.append(piece)
                on_token(piece)
        # A whole answer ends with a finish_reason and then [DONE]; a stream closed with neither was cut off.
        if finish_reason is None and not (done and done.seen):
            raise LlmError(f"The answer stream was cut off after {len(''.join(parts))} characters: the server "
                           "closed it before the answer was finished.")
        return "".join(parts).strip()

    @staticmethod
    def _retry_delay(error: Exception, attempt: int) -> float | None:
        """Seconds to wait before another try, or None when one would not help (or the server asks for long)."""
        import openai

        backoff = 0.5 * 2 ** (attempt - 1)
        if isinstance(error, openai.APITimeoutError):
            return None
        if isinstance(error, openai.APIConnectionError):
            return backoff
        if not isinstance(error, openai.APIStatusError):
            return None
        headers = error.response.headers
        if headers.get("x-should-retry") == "false":
            return None
        retryable = error.status_code in {408, 409, 429} or error.status_code >= 500
        if not (retryable or headers.get("x-should-retry") == "true"):
            return None
        try:
            asked = float(headers.get("retry-after", ""))
        except ValueError:
            return backoff
        return asked if 0 <= asked <= _MAX_RETRY_AFTER_S else None

    def _explain(self, error: Exception, parts: list[str]) -> LlmError:
        """The plain-words LlmError for a failure of the openai client or of the stream."""
        import json

        import openai

        got = len("".join(parts))
        model = self.settings.llm_model
        if isinstance(error, openai.AuthenticationError):
            if self._key_withheld:
                return LlmError(f"The LLM server at {self._base_url()} wants an API key (401 Unauthorized): the "
                                "server's own key goes only to its configured base URL; give a key for this one.")
            return LlmError("The LLM server rejected the API key (401 Unauthorized): check OPENAI_API_KEY.")
        if isinstance(error, openai.PermissionDeniedError):
            return LlmError(f"The API key may not use the model '{model}' (403 Forbidden).")
        if isinstance(error, openai.NotFoundError):
            return LlmError(f"The LLM server has no model '{model}' (404): check RAG_LLM_MODEL.")
        if isinstance(error, openai.RateLimitError):
            try:
                asked = float(error.response.headers.get("retry-after", ""))
            except ValueError:
                asked = None
            if asked is not None and asked > _MAX_RETRY_AFTER_S:  # too long to hold the user's question
                return LlmError(f"The LLM server is rate-limiting requests (429 Too Many Requests): it asks to "
                                f"wait {asked:g} s; try again then.")
            return LlmError("The LLM server is rate-limiting requests (429 Too Many Requests): try again shortly.")
        if isinstance(error, openai.APITimeoutError):
            if parts:
                return LlmError(f"The answer stream stalled after {got} characters: nothing more came within "
                                f"{self.settings.llm_timeout_s:g} s (timeout).")
            return LlmError(f"The LLM server did not answer within {self.settings.llm_timeout_s:g} s (timeout).")
        if isinstance(error, openai.APIConnectionError):
            if parts:  # the connection dropped mid-stream
                return LlmError(f"The answer stream broke off after {got} characters.")
            causes = set()
            cause = error.__cause__
            while cause is not None and len(causes) < 20:
                causes.update(kind.__name__ for kind in type(cause).__mro__)
                cause = cause.__cause__ or cause.__context__
            if causes and not causes & _CONNECT_FAILURES:  # connected, then the reply broke off
                return LlmError("The LLM server sent an incomplete or malformed reply (the connection closed "
                                "before its end).")
            return LlmError(f"Could not connect to the LLM server at {self._base_url()}.")
        if isinstance(error, openai.APIStatusError):
            return LlmError(f"The LLM server failed ({error.status_code}): {self._safe(error.message)}")
        if isinstance(error, openai.APIError):  # an error event inside the stream
            state = f" after {got} characters" if parts else ""
            return LlmError(f"The answer stream broke off{state}: {self._safe(str(error))}")
        if isinstance(error, (ValueError, KeyError, TypeError, AttributeError)):  # JSON cut short, or not a reply
            what = "not valid JSON" if isinstance(error, json.JSONDecodeError) else "not a chat completion"
            if parts:
                return LlmError(f"The answer stream broke off after {got} characters: the LLM server sent an "
                                f"incomplete or malformed chunk ({what}).")
            return LlmError(f"The LLM server sent an incomplete or malformed reply ({what}).")
        # transport errors mid-stream that this openai version does not wrap
        state = f" after {got} characters" if parts else ""
        return LlmError(f"The answer stream broke off{state} ({type(error).__name__}).")

    def _base_url(self) -> str:
        return str(self.client.base_url).rstrip("/")

    def _safe(self, text: str) -> str:
        for secret in self._secrets:
            text = _redact(text, secret)
        return text[:300]


# The extractive answer (no LLM, or it failed) lives in rag.extract; these names stay importable from here.
from rag.extract import extract_answer, split_sentences  # noqa: F401
