"""Conversation history, bounded by turns and by an approximate token budget.

A turn is one speaker's utterance. An agent turn cut by barge-in keeps only the text the
user actually heard, rendered ending in an ellipsis, as a transcript shows speech that
broke off: the model sees it was cut off and does not believe it said the rest. (A
bracketed `[interrupted]` marker was copied by small models into their own replies.)
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

# What a cut-off reply ends in, in the prompt: its last punctuation gives way to it.
CUT_OFF = "…"


def approx_tokens(text: str) -> int:
    # ~4 characters per token for English with BPE/SentencePiece vocabularies, plus the
    # role label and separators around each turn. Good enough for a budget.
    return len(text) // 4 + 4


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "agent"]
    text: str
    interrupted: bool = False

    @property
    def prompt_text(self) -> str:
        """The turn as the model should see it; "" for a reply cut off before a word was
        heard (the user heard no turn, so the prompt shows none)."""
        if not self.interrupted or not self.text:
            return self.text
        return self.text.rstrip(" ,;:.!?—–-") + CUT_OFF


class History:
    """The most recent turns that fit both `max_turns` and `max_tokens`: when either is
    exceeded, the oldest turns are dropped until half of each is left."""

    def __init__(self, max_turns: int, max_tokens: int):
        self.max_turns = max_turns
        self.max_tokens = max_tokens
        self._turns: deque[Turn] = deque()
        self._tokens = 0
        self.trims = 0   # times the oldest turns were dropped: the prompt after the persona changed

    @classmethod
    def from_config(cls, agent_cfg) -> History:
        return cls(agent_cfg.history_turns, agent_cfg.history_tokens)

    def add_user(self, text: str) -> None:
        self._add(Turn("user", text.strip()))

    def add_agent(self, text: str, *, interrupted: bool = False) -> None:
        """`text`: what was spoken; when interrupted, only the part the user heard."""
        self._add(Turn("agent", text.strip(), interrupted))

    @property
    def turns(self) -> tuple[Turn, ...]:
        return tuple(self._turns)

    @property
    def tokens(self) -> int:
        return self._tokens

    def _add(self, turn: Turn) -> None:
        self._turns.append(turn)
        self._tokens += approx_tokens(turn.prompt_text)
        if self._over(self.max_turns, self.max_tokens):
            # Trimmed to half of each bound, not just under it: the start of the prompt
            # then stays the same for several turns, so the LLM server evaluates only the
            # new turns (it reuses its context up to the first changed token) and re-reads
            # the whole history (~1 s per 250 tokens on two cores) only when it is trimmed.
            while len(self._turns) > 1 and self._over((self.max_turns + 1) // 2, (self.max_tokens + 1) // 2):
                self._drop_oldest()
            if self._over(self.max_turns, self.max_tokens):  # the new turn alone is too long
                self._drop_oldest()
            self.trims += 1

    def _drop_oldest(self) -> None:
        self._tokens -= approx_tokens(self._turns.popleft().prompt_text)

    def _over(self, turns: int, tokens: int) -> bool:
        return len(self._turns) > turns or self._tokens > tokens
