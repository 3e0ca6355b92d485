"""Streaming text LLM client, and the sentence splitter that lets TTS start early.

Two request shapes, chosen by `llm.api`:
- `chat`: /v1/chat/completions with the persona's system prompt and history, rendered by
  the model's chat template (the default, an instruct model);
- `completions`: /v1/completions with a few-shot `User:/Ada:` transcript and stop
  strings, for base models without a chat template (the bundled Gemma 3 270M).

    llm = TextLLM(cfg.llm, server=server)          # or base_url=... for a hosted endpoint
    async with contextlib.aclosing(llm.spoken(persona, history, "Hi!")) as events:
        async for event in events:
            match event:
                case Sentence(text): ...            # to TTS, while the LLM keeps going
                case ReplyDone(text) | ReplyFailed(): ...
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

from config import ConfigError, LLMConfig
from agent.events import (FailureKind, LLMError, ReplyDone, ReplyEvent, ReplyFailed, Sentence,
                          TextDelta)
from agent.history import History
from agent.llm_server import LLMServerError, LocalLLMServer
from agent.persona import USER_LABEL, Persona
from agent.reply_guard import guarded
from agent.streaming import Endpoint, first_choice, mapping_at, string_at


# Added to the user's words, for that request only, when the reply only repeated an
# earlier one: the prompt's prefix stays as it was.
REPHRASE = "(Answer in other words than before.)"
RETRY_REPEAT_PENALTY = 1.3


def base_model_stops(persona: Persona) -> list[str]:
    """A base model continues the transcript after its line: cut it at the next speaker
    label or paragraph break. (OpenAI-compatible APIs accept at most 4 stop strings.)"""
    return ["\n" + USER_LABEL, "\n" + persona.agent_label, "\n\n", USER_LABEL]


class TextLLM:
    def __init__(self, cfg: LLMConfig, *, base_url: str | None = None, server: LocalLLMServer | None = None):
        """`server`: the embedded llama.cpp server (its URL, and waiting while it restarts);
        else `base_url` or `llm.base_url`."""
        url = server.base_url if server else base_url or cfg.base_url
        if not url:
            raise ConfigError("llm.provider openai needs llm.base_url in config.yaml")
        self.cfg = cfg
        self.server = server
        self.endpoint = Endpoint("llm", url, cfg.api_key_env, timeout_s=cfg.timeout_s, max_retries=cfg.max_retries)

    async def close(self) -> None:
        await self.endpoint.close()

    async def __aenter__(self) -> TextLLM:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def warm_up(self, persona: Persona, history: History | None = None) -> bool:
        """Have the server evaluate the prompt's prefix now: the persona's prompt (e.g. while
        the greeting plays), so the first reply starts as fast as later ones, or that and
        `history`. False if that failed."""
        # Reading every finished exchange ahead this way, while the user thinks, was tried:
        # first tokens came 0.2 s later in bench/conversation.py (0.62 s against 0.36 s
        # after the ASR, p50). Only a trimmed history is worth it (Brain.reread).
        async with contextlib.aclosing(self.reply(persona, history or History(0, 0), "", max_tokens=1)) as events:
            return isinstance([e async for e in events][-1], ReplyDone)

    async def spoken(self, persona: Persona, history: History, user_text: str) -> AsyncIterator[ReplyEvent]:
        """The reply as the persona says it: `reply()` in Sentence events for TTS, each made
        speakable, stopped where it starts repeating (agent.reply_guard). A reply that
        would only repeat an earlier one is asked for once more, in other words and with
        livelier sampling."""
        retry = dict(user_text=f"{user_text.strip()} {REPHRASE}", temperature=max(self.cfg.temperature, 1.0),
                     repeat_penalty=max(self.cfg.repeat_penalty, RETRY_REPEAT_PENALTY))
        for attempt in (dict(user_text=user_text), retry):
            replying = self.reply(persona, history, **attempt)
            async with contextlib.aclosing(guarded(sentences(replying), history)) as events:
                async for event in events:
                    if isinstance(event, ReplyDone) and event.finish_reason == "repeat" and not event.text \
                            and attempt is not retry:
                        break  # nothing said yet: ask again
                    yield event
                else:
                    return

    async def reply(self, persona: Persona, history: History, user_text: str, *, max_tokens: int | None = None,
                    temperature: float | None = None, repeat_penalty: float | None = None,
                    ) -> AsyncIterator[ReplyEvent]:
        """Stream the agent's reply to `user_text` as TextDelta events, then ReplyDone or
        ReplyFailed. Closing the generator early closes the HTTP request. `temperature`
        and `repeat_penalty` replace the config's for this request."""
        client = self.endpoint.client
        common = dict(model=self.cfg.model, max_tokens=max_tokens or self.cfg.max_tokens,
                      temperature=self.cfg.temperature if temperature is None else temperature)
        if self.server:  # llama.cpp's own sampling knob; hosted APIs reject unknown ones
            common["extra_body"] = {"repeat_penalty": repeat_penalty or self.cfg.repeat_penalty}
        if self.cfg.api == "completions":
            request = client.completions.with_streaming_response.create
            params = dict(common, prompt=persona.completion_prompt(history, user_text), stop=base_model_stops(persona))
        else:
            request = client.chat.completions.with_streaming_response.create
            params = dict(common, messages=[*persona.chat_messages(history),
                                            {"role": "user", "content": user_text.strip()}])
        parts: list[str] = []
        finish_reason = "stop"
        # A second try only when the embedded server died under the first, before any text.
        for attempt in range(2 if self.server else 1):
            cleaner = BaseModelCleaner(persona.agent_label) if self.cfg.api == "completions" else None
            if self.server:
                try:
                    await self.server.wait_ready()
                except LLMServerError as e:  # the local server is down for good
                    yield ReplyFailed(LLMError(FailureKind.CONNECTION, str(e)))
                    return
                serving_pid = self.server.pid  # the process this try's request goes to
            try:
                async for chunk in self.endpoint.stream(request, **params):
                    choice = first_choice(chunk)
                    finish_reason = string_at(choice, "finish_reason") or finish_reason
                    # completions: choices[0].text; chat: choices[0].delta.content
                    text = string_at(choice, "text") or string_at(mapping_at(choice, "delta"), "content")
                    if cleaner:
                        text = cleaner.feed(text)
                    if text:
                        parts.append(text)
                        yield TextDelta(text)
                break
            except LLMError as e:
                if (attempt == 0 and self.server and not parts
                        and e.kind in (FailureKind.CONNECTION, FailureKind.STREAM_CUT)
                        and await self.server.has_died(serving_pid)):
                    continue  # wait_ready waits for the watchdog's restart
                yield ReplyFailed(e)
                return
        tail = cleaner.finish() if cleaner else ""
        if tail:
            parts.append(tail)
            yield TextDelta(tail)
        yield ReplyDone("".join(parts).strip(), finish_reason)


class BaseModelCleaner:
    """Streaming cleanup of a base model's transcript continuation.

    Drops a repeated agent label (`Ada:`) at the start and ends the reply at the next
    speaker label, in case the server did not apply the stop strings (some do not match
    across token boundaries). Text that might be the start of a label, and whitespace
    before it, is held back until the next delta shows whether it is one.
    """

    def __init__(self, agent_label: str):
        self.agent_label = agent_label
        self.labels = (USER_LABEL, agent_label)
        self._held = ""
        self._started = False
        self._stopped = False

    def feed(self, text: str) -> str:
        if self._stopped:
            return ""
        buf = self._held + text
        if not self._started:
            buf = buf.lstrip()
            if any(label.startswith(buf) for label in self.labels) and buf:
                self._held = buf  # could still become "Ada:"
                return ""
            if buf.startswith(self.agent_label):
                buf = buf[len(self.agent_label):].lstrip()
            self._started = bool(buf)
        cut = min((i for i in (buf.find(label) for label in self.labels) if i >= 0), default=-1)
        if cut >= 0:
            self._stopped = True
            self._held = ""
            return buf[:cut].rstrip()
        keep = len(buf) - max((n for label in self.labels for n in range(1, len(label))
                               if buf.endswith(label[:n])), default=0)
        while keep and buf[keep - 1].isspace():  # whitespace before a label must not leak out
            keep -= 1
        self._held = buf[keep:]
        return buf[:keep]

    def finish(self) -> str:
        """What is still held back at the end of the stream (a partial label is just text)."""
        rest, self._held = ("" if self._stopped else self._held), ""
        return rest.rstrip() if self._started else rest.strip()


# ── sentences ─────────────────────────────────────────────────────────────────────────

# Sentence end: terminal punctuation, optional closing quotes/brackets, then whitespace.
# Requiring the whitespace means "3.14" and "e.g.," never end a sentence; the cost is
# waiting for the next token (tens of ms) to see it.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*\s+|\n+")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e",
                  "approx", "no", "fig", "mt", "u.s", "a.m", "p.m"}
# A clause this long without a sentence end is split at its last comma, so TTS is not
# kept waiting by a rambling sentence.
MAX_SENTENCE_CHARS = 160
_CLAUSE_BREAK = re.compile(r"[,;:—–]\s+")
# The first words of a reply go to TTS at the first clause break after this many words,
# not at the end of the sentence: the voice starts while the model is still writing.
FIRST_CLAUSE_WORDS = 4
# With no comma yet, the first words go at the first phrase boundary after as many: before
# a preposition or conjunction, where a speaker may pause too ("Jupiter is the biggest
# planet | in our solar system"). Each word the model writes costs ~40 ms on two cores.
_PHRASE_START = re.compile(r"\s+(?=(?:in|on|at|of|for|with|from|to|by|about|into|over|under|after|before|"
                           r"around|and|but|or|so|because|which|that|who|when|where|while|if|than|as|like)\s)",
                           re.IGNORECASE)


def split_sentences(text: str) -> tuple[list[str], str]:
    """(complete sentences at the start of `text`, the unfinished rest). Pure."""
    done: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        if m.group().strip() == "." and _is_abbreviation(text[start:m.start()]):
            continue
        sentence = text[start:m.end()].strip()
        if sentence:
            done.append(sentence)
        start = m.end()
    rest = text[start:]
    while len(rest) > MAX_SENTENCE_CHARS:
        breaks = [m.end() for m in _CLAUSE_BREAK.finditer(rest, 0, MAX_SENTENCE_CHARS)]
        if not breaks:
            break
        done.append(rest[:breaks[-1]].strip())
        rest = rest[breaks[-1]:]
    return done, rest.lstrip()


def first_clause(text: str, min_words: int = FIRST_CLAUSE_WORDS) -> tuple[str | None, str]:
    """(the text up to its first clause break or phrase boundary after `min_words` words,
    the rest), or (None, text) when there is none yet. Pure."""
    for pattern in (_CLAUSE_BREAK, _PHRASE_START):
        for m in pattern.finditer(text):
            if len(text[:m.start()].split()) >= min_words:
                return text[:m.end()].strip(), text[m.end():]
    return None, text


def _is_abbreviation(before: str) -> bool:
    words = before.split()
    if not words:
        return False
    word = words[-1].lower().strip("\"'(")
    # A single letter before the period is an initial ("J. R. R. Tolkien").
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


async def sentences(events: AsyncIterator[ReplyEvent]) -> AsyncIterator[ReplyEvent]:
    """Adds a Sentence event as soon as each sentence of the TextDeltas ends (the first one
    already at its first clause break); every event passes through. When the reply was cut by max_tokens, a trailing fragment is dropped
    (unless it is all there is): better to stop at a full stop than mid-phrase."""
    buffer = ""
    spoke = False
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, TextDelta):
                done, buffer = split_sentences(buffer + event.text)
                if not spoke and not done:
                    clause, buffer = first_clause(buffer)
                    done = [clause] if clause else []
                for text in done:
                    spoke = True
                    yield Sentence(text)
            elif isinstance(event, ReplyDone) and buffer.strip():
                if not (event.finish_reason == "length" and spoke):
                    yield Sentence(buffer.strip())
            yield event
