"""The last stage: an answer from the top-n chunks, by an LLM, or extractively when there is none.

The LLM is any server that speaks OpenAI's chat-completions API. Its failures never lose the
retrieval: :class:`LlmError` carries a plain-words message (never the API key), and the pipeline then
falls back to the extractive answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from rag.models import Embedder
from rag.settings import Settings
from rag.types import ChunkHit

SYSTEM_PROMPT = (
    "You answer questions about the user's documents. Use only the numbered context passages. "
    "Cite every fact with the passage number in square brackets, like [1] or [2][3]. "
    "If the passages do not contain the answer, say that the documents do not contain it; do not guess."
)


class LlmError(RuntimeError):
    """The LLM could not answer; the message is safe to show (it never holds the key)."""


def build_messages(question: str, chunks: Sequence[ChunkHit]) -> list[dict[str, str]]:
    context = "\n\n".join(f"[{n}] ({chunk.citation})\n{chunk.text}" for n, chunk in enumerate(chunks, 1))
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Context passages:\n\n{context}\n\nQuestion: {question}"},
    ]


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class LlmAnswerer:
    """Chat completions through the ``openai`` client, plain or streamed."""

    def __init__(self, settings: Settings) -> None:
        from openai import OpenAI

        self.settings = settings
        self._key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        # Local servers (Ollama, vLLM, LM Studio) take any key, but the client insists on one.
        self.client = OpenAI(
            api_key=self._key or "not-needed",
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )

    def answer(self, question: str, chunks: Sequence[ChunkHit], on_token: Callable[[str], None] | None = None) -> str:
        """The model's answer; with ``on_token`` it streams, calling it with each piece of text."""
        import openai

        messages = build_messages(question, chunks)
        parts: list[str] = []
        try:
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
            for event in stream:
                piece = event.choices[0].delta.content if event.choices else None
                if piece:
                    parts.append(piece)
                    on_token(piece)
            return "".join(parts).strip()
        except LlmError:
            raise
        except openai.AuthenticationError as error:
            raise LlmError("The LLM server rejected the API key (401 Unauthorized): check OPENAI_API_KEY.") from error
        except openai.PermissionDeniedError as error:
            raise LlmError(f"The API key may not use the model '{self.settings.llm_model}' (403 Forbidden).") from error
        except openai.NotFoundError as error:
            raise LlmError(f"The LLM server has no model '{self.settings.llm_model}' (404): check RAG_LLM_MODEL.") from error
        except openai.RateLimitError as error:
            raise LlmError("The LLM server is rate-limiting requests (429 Too Many Requests): try again shortly.") from error
        except openai.APITimeoutError as error:
            raise LlmError(f"The LLM server did not answer within {self.settings.llm_timeout_s:g} s (timeout).") from error
        except openai.APIConnectionError as error:
            if parts:  # the connection dropped mid-stream
                raise LlmError(f"The answer stream broke off after {len(''.join(parts))} characters.") from error
            raise LlmError(f"Could not connect to the LLM server at {self._base_url()}.") from error
        except openai.APIStatusError as error:
            raise LlmError(f"The LLM server failed ({error.status_code}): {self._safe(error.message)}") from error
        except (openai.APIError, ValueError, KeyError) as error:
            state = f" after {len(''.join(parts))} characters" if parts else ""
            raise LlmError(f"The answer stream broke off{state}: {self._safe(str(error))}") from error
        except Exception as error:  # httpx transport errors mid-stream are not wrapped by openai
            state = f" after {len(''.join(parts))} characters" if parts else ""
            raise LlmError(f"The answer stream broke off{state} ({type(error).__name__}).") from error

    def _base_url(self) -> str:
        return str(self.client.base_url).rstrip("/")

    def _safe(self, text: str) -> str:
        return _redact(text, self._key)[:300]


_ANSWER_CHUNKS = 3  # the extractive answer quotes the best-ranked chunks only
_MAX_SENTENCES = 48  # bounds the embedding work on table-heavy chunks, which split into many lines
_MAX_SENTENCE_CHARS = 400
# PDF text wraps sentences over lines: a line that goes on in lowercase continues the sentence above;
# any other break (a heading, a table row, a new sentence) ends it.
_WRAPPED_LINE = re.compile(r"\n(?=[a-z])")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """Sentences and table rows of a chunk, wrapped lines rejoined, long ones cut."""
    pieces = (" ".join(piece.split()) for piece in _SENTENCE_END.split(_WRAPPED_LINE.sub(" ", text)))
    return [
        piece if len(piece) <= _MAX_SENTENCE_CHARS else piece[:_MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + " …"
        for piece in pieces
        if len(piece) >= 20
    ]


def extractive_answer(question: str, chunks: Sequence[ChunkHit], embedder: Embedder, max_sentences: int = 3) -> str:
    """Sentences of the best chunks closest to the question, each cited [n], in their chunks' order.

    The best sentence of the top chunk always leads: after reranking, that chunk is the one most
    likely to hold the answer, and similarity to the question alone favours sentences that merely
    repeat it. Written by hand: llama-index's extractive tools need an LLM or a QA model we cannot ship.
    """
    if not chunks:
        return "The documents contain nothing that matches this question."
    sentences = [
        (n, sentence) for n, chunk in enumerate(chunks[:_ANSWER_CHUNKS], 1) for sentence in split_sentences(chunk.text)
    ][:_MAX_SENTENCES] or [(1, chunks[0].text.strip())]
    similarity = embedder.embed_documents([s for _, s in sentences]) @ embedder.embed_queries([question])[0]
    ranked = [int(i) for i in np.argsort(-similarity)]
    lead = next((i for i in ranked if sentences[i][0] == 1), ranked[0])
    chosen = sorted({lead, *[i for i in ranked if i != lead][: max_sentences - 1]})  # document order reads better
    return " ".join(f"{sentences[i][1]} [{sentences[i][0]}]" for i in chosen)
