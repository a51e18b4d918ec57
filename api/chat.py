"""OpenAI's chat-completions shape: the completion, its streamed chunks, and the events of a stream."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from api.errors import ApiError, error_body, store_error_status
from api.keys import ApiKey
from api.service import Api, public_result
from rag.store import StoreError
from rag.types import AskResult

log = logging.getLogger("rerank_rag.api")


def sources_block(result: AskResult) -> str:
    """What the [n] of an answer refer to, for chat clients that show only the message."""
    if not result.chunks:
        return ""
    return "\n\nSources:\n" + "\n".join(f"[{n}] {chunk.citation}" for n, chunk in enumerate(result.chunks, 1))


def chat_completion(completion_id: str, model: str, result: AskResult, key: ApiKey | None = None) -> dict:
    return {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": result.answer + sources_block(result)}}],
        "rerank_rag": public_result(result, key),
    }


def chat_chunk(completion_id: str, model: str, delta: dict, finish_reason: str | None = None, **extra: Any) -> str:
    event = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}], **extra}
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"



def chat_events(api: Api, completion_id: str, model: str, question: str, collection: str,
                asker: str | None = None, key: ApiKey | None = None) -> AsyncIterator[str]:
    """Starts the answer now (so a full pool is a 503, not a broken stream), then relays its tokens."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()

    def post(item: tuple) -> None:
        try:
            loop.call_soon_threadsafe(pieces.put_nowait, item)
        except RuntimeError:  # the loop is gone: the server is stopping
            pass

    future = api.reads.submit(api.pipeline.ask, question, collection=collection, asker=asker,
                              on_token=lambda piece: post(("token", piece)))
    future.add_done_callback(lambda done: post(("done", done)))

    async def events() -> AsyncIterator[str]:
        yield chat_chunk(completion_id, model, {"role": "assistant", "content": ""})
        streamed = False
        while True:
            kind, value = await pieces.get()
            if kind == "done":
                break
            streamed = True
            yield chat_chunk(completion_id, model, {"content": value})
        try:
            result: AskResult = value.result()
        except Exception as error:  # noqa: BLE001 - told to the client as an OpenAI error event
            if isinstance(error, StoreError):
                message, kind = str(error), store_error_status(error)[1]
            elif isinstance(error, ApiError):
                message, kind = error.message, error.kind
            else:
                log.error("internal error while streaming: %s", type(error).__name__, exc_info=error)
                message, kind = f"internal error ({type(error).__name__})", "internal_error"
            yield f"data: {json.dumps(error_body(message, kind))}\n\n"
            yield "data: [DONE]\n\n"
            return
        if result.answer_mode != "llm":
            text = result.answer
            if streamed:  # the LLM broke off mid-answer: say so, then give the extractive answer
                text = f"\n\n(The LLM's answer broke off: {result.error}. An extractive answer follows.)\n\n{text}"
            yield chat_chunk(completion_id, model, {"content": text})
        if sources_block(result):
            yield chat_chunk(completion_id, model, {"content": sources_block(result)})
        yield chat_chunk(completion_id, model, {}, "stop", rerank_rag=public_result(result, key))
        yield "data: [DONE]\n\n"

    return events()
