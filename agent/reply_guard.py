"""What a persona may say: each sentence of a reply, checked before it is spoken.

    events = guarded(sentences(llm.reply(persona, history, text)), history)   # TextLLM.spoken
    # Sentence events fit to speak, then ReplyDone

- Markup and markers are taken out: bracketed text (`[interrupted]`, `[laughs]`), tags,
  markdown emphasis, headings and list bullets, emoji. Small models copy what they see
  in the prompt, and a voice would read these out.
- A reply that starts repeating itself (a sentence it already said, or a run of
  `LOOP_WORDS` words it already said) or says a sentence of an earlier reply again
  verbatim (or starts one: its first clause) is stopped before that sentence: ReplyDone
  with finish_reason "repeat", the request closed. The repeat penalty
  (llm.repeat_penalty) makes this rare; this makes it inaudible.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterable

from agent.events import ReplyDone, ReplyEvent, Sentence
from agent.history import History

# A run of this many words said twice in one reply is a loop, not style.
LOOP_WORDS = 6
# A sentence of an earlier reply said again counts as a repeat from this many words on
# ("Yes, exactly." may come twice in a conversation; a whole answer may not).
REPEAT_WORDS = 4

_MARKUP = re.compile(
    r"\[[^\]]*\]?"                          # [interrupted], [laughs]; also one left open
    r"|<[^>]*>?"                            # <tags>
    r"|[*`#~|]+"                            # **bold**, `code`, # heading, ~strike~, tables
    r"|^\s*(?:[-•]|\d+[.)])\s+"             # list bullets and numbers
    r"|[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200D]"  # emoji (and their joiners)
)
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+(?=[,.!?;:…])")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"[.!?…]+")


def speakable(text: str) -> str:
    """`text` without markup, markers and emoji, its spaces collapsed. Pure."""
    return _SPACE_BEFORE_PUNCTUATION.sub("", " ".join(_MARKUP.sub(" ", text).split()))


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _runs(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


class RepeatGuard:
    """Says whether the next sentence of a reply repeats what was said before."""

    def __init__(self, earlier_replies: Iterable[str]):
        # The sentences of earlier replies, as words: a new sentence (or the first clause
        # of one) that is one of them, or their start, is that sentence said again.
        self._earlier = [words for reply in earlier_replies for s in _SENTENCE_END.split(reply)
                         if (words := _words(s))]
        self._sentences: set[tuple[str, ...]] = set()
        self._words: list[str] = []   # this reply's words so far

    def repeats(self, sentence: str) -> bool:
        """Whether `sentence` repeats this reply or an earlier one; if not, it is taken
        as said."""
        words = _words(sentence)
        if not words:
            return False
        if tuple(words) in self._sentences:
            return True
        runs = _runs(self._words + words, LOOP_WORDS)
        if len(set(runs)) < len(runs):
            return True
        if len(words) >= REPEAT_WORDS and any(e[:len(words)] == words for e in self._earlier):
            return True
        self._sentences.add(tuple(words))
        self._words += words
        return False


async def guarded(events: AsyncIterator[ReplyEvent], history: History) -> AsyncIterator[ReplyEvent]:
    """`events` (from `sentences()`) with each Sentence made speakable and the reply
    stopped at its first repeat; ReplyDone then carries what was said, and closing
    `events` closes the request. Other events pass through."""
    guard = RepeatGuard(t.text for t in history.turns if t.role == "agent")
    said: list[str] = []
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Sentence):
                text = speakable(event.text)
                if not text:
                    continue
                if guard.repeats(text):
                    yield ReplyDone(" ".join(said), "repeat")
                    return
                said.append(text)
                yield Sentence(text)
            elif isinstance(event, ReplyDone):
                yield ReplyDone(" ".join(said), event.finish_reason)
            else:
                yield event
