"""One streamed request to an OpenAI-compatible endpoint, shared by the omni and text clients.

The `openai` package builds the request (URL, auth, JSON body) and maps HTTP statuses to
exceptions; the SSE body is parsed here, line by line, because the SDK's own stream
parser gives up on the first chunk that is not JSON, and a voice agent must not go
silent over one bad chunk from a vendor. What this module guarantees:

- every await is bounded (connect, the answer's headers, each line of the stream);
- 429 is retried with backoff, at most `max_retries` times; nothing else is retried,
  because every other failure costs the user seconds they would rather hear an apology in;
- every failure surfaces as `LLMError` with a one-line message naming what to fix;
- leaving the iteration early (cancellation, `aclose`) closes the HTTP response, so the
  server sees the disconnect and stops generating.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import httpx2
import openai

from config import secret
from agent.events import FailureKind, LLMError

log = logging.getLogger(__name__)

# Local servers (llama.cpp, vLLM) need no key, but the SDK refuses an empty one.
NO_KEY = "no-key"
# Longest wait we accept from a server's Retry-After before trying again.
MAX_RETRY_WAIT_S = 8.0


class Endpoint:
    """An OpenAI-compatible base URL plus how to authenticate and how long to wait."""

    def __init__(self, label: str, base_url: str, api_key_env: str, *,
                 timeout_s: float, max_retries: int):
        self.label = label              # "omni" or "llm": prefixes every message
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        key = secret(api_key_env)
        self.has_key = key is not None
        self.client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=key or NO_KEY,
            # The read timeout applies between received bytes: it catches a stalled stream.
            timeout=openai.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            max_retries=0)  # retries are ours: only 429, bounded, visible in logs

    async def close(self) -> None:
        await self.client.close()

    async def stream(self, open_response: Callable[..., contextlib.AbstractAsyncContextManager],
                     **params) -> AsyncIterator[dict]:
        """The JSON chunks of one streamed reply, in order.

        `open_response` is an SDK `with_streaming_response.create` method. Raises LLMError.
        Chunks that are not JSON objects are skipped (and counted in the log).
        """
        async with contextlib.AsyncExitStack() as stack:
            response = await self._open(stack, open_response, params)
            skipped = 0
            finished = False
            events = await stack.enter_async_context(contextlib.aclosing(self._sse_data(response)))
            try:
                async for data in events:
                    if data.strip() == "[DONE]":
                        finished = True
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        chunk = None
                    if not isinstance(chunk, dict):
                        skipped += 1
                        continue
                    if isinstance(chunk.get("error"), (dict, str)):
                        # vLLM and DashScope report failures after the 200 as a chunk.
                        raise LLMError(FailureKind.SERVER,
                                       f"{self.label}: {self._host} failed mid-reply: {_error_text(chunk['error'])}")
                    finished = finished or _has_finish_reason(chunk)
                    yield chunk
            except (httpx2.TimeoutException, TimeoutError):
                raise LLMError(FailureKind.TIMEOUT,
                               f"{self.label}: the reply from {self._host} stalled for {self.timeout_s:g} s") from None
            except httpx2.TransportError:
                raise LLMError(FailureKind.STREAM_CUT,
                               f"{self.label}: the reply stream from {self._host} broke off mid-reply") from None
            finally:
                if skipped:
                    log.warning("%s: skipped %d malformed chunk(s) from %s", self.label, skipped, self._host)
            if not finished:
                raise LLMError(FailureKind.STREAM_CUT,
                               f"{self.label}: the reply stream from {self._host} ended before the reply did")

    async def _open(self, stack, open_response, params):
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(self.timeout_s + 1.0):  # backstop to the SDK's own timeouts
                    return await stack.enter_async_context(open_response(**params, stream=True))
            except openai.RateLimitError as e:
                if attempt == self.max_retries:
                    raise LLMError(FailureKind.RATE_LIMIT,
                                   f"{self.label}: rate limited by {self._host} (429) after "
                                   f"{self.max_retries} retries; try again in a moment") from None
                wait = _retry_wait(e.response.headers, attempt)
                attempt += 1
                log.info("%s: rate limited (429); retry %d/%d in %.2f s", self.label, attempt, self.max_retries, wait)
                await asyncio.sleep(wait)
            except Exception as e:
                raise self._classify(e) from None

    async def _sse_data(self, response) -> AsyncIterator[str]:
        """The `data` payload of each server-sent event (comments and other fields dropped)."""
        lines = response.iter_lines().__aiter__()
        data: list[str] = []
        loop = asyncio.get_running_loop()
        # The deadline moves only when an event arrives: keep-alive comments trickling in
        # forever are a stall too.
        deadline = loop.time() + self.timeout_s
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    line = await anext(lines)
            except StopAsyncIteration:
                break
            if not line:  # a blank line ends an event
                if data:
                    yield "\n".join(data)
                    data = []
                    deadline = loop.time() + self.timeout_s
                continue
            field, _, value = line.partition(":")
            if field == "data":
                data.append(value[1:] if value.startswith(" ") else value)
        if data:
            yield "\n".join(data)

    def _classify(self, e: Exception) -> LLMError:
        label, url = self.label, self.base_url
        if isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError):
            if not self.has_key:
                return LLMError(FailureKind.AUTH,
                                f"{label}: no API key: set the environment variable {self.api_key_env}")
            return LLMError(FailureKind.AUTH,
                            f"{label}: {self._host} rejected the API key in {self.api_key_env} "
                            f"({e.status_code}); check that it is valid for this endpoint")
        if isinstance(e, openai.APIStatusError):
            detail = _error_text(e.body) if e.body else e.response.reason_phrase
            if e.status_code >= 500:
                return LLMError(FailureKind.SERVER, f"{label}: {self._host} failed ({e.status_code}): {detail}")
            return LLMError(FailureKind.REQUEST,
                            f"{label}: {self._host} refused the request ({e.status_code}): {detail}")
        if isinstance(e, openai.APITimeoutError | TimeoutError):
            return LLMError(FailureKind.TIMEOUT, f"{label}: no answer from {url} within {self.timeout_s:g} s")
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e
            reason = "connection refused" if _refused(cause) else type(cause).__name__
            return LLMError(FailureKind.CONNECTION,
                            f"{label}: cannot connect to {url} ({reason}); is the server running?")
        raise e  # a bug of ours, not a service failure: let it show

    @property
    def _host(self) -> str:
        return urlsplit(self.base_url).netloc or self.base_url


def _has_finish_reason(chunk: dict) -> bool:
    choices = chunk.get("choices")
    return isinstance(choices, list) and any(string_at(c, "finish_reason") for c in choices)


# Reading chunks from any vendor: a field of the wrong type reads as absent, never raises.

def first_choice(chunk: dict) -> dict:
    """`choices[0]`, or {} (usage-only chunks have no choices)."""
    choices = chunk.get("choices")
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}


def mapping_at(obj, key: str) -> dict:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def string_at(obj, key: str) -> str:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) else ""


def _retry_wait(headers, attempt: int) -> float:
    """Seconds to wait before retry `attempt + 1`: the server's hint, else backoff."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            return min(MAX_RETRY_WAIT_S, max(0.0, float(headers.get(name)) * scale))
        except (TypeError, ValueError):
            continue  # absent, or an HTTP date: fall back to our own backoff
    return min(MAX_RETRY_WAIT_S, 0.5 * 2 ** attempt) * random.uniform(0.8, 1.2)


def _error_text(body) -> str:
    """One line out of an error body: {"message": ...}, {"error": {...}} or anything else."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            body = inner.get("message") or inner
        else:
            body = inner
    text = " ".join(str(body).split())
    return text[:200] + ("…" if len(text) > 200 else "")


def _refused(e: BaseException | None) -> bool:
    while e is not None:
        if isinstance(e, ConnectionRefusedError) or "refused" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    return False
