"""What happens in a conversation, as typed events on the session clock (seconds).

The stages of a conversation (turn detector, reply runner, output scheduler) report what
they did as these events, the conversation reacts to them, and everyone subscribed
(`Conversation.subscribe`: the metrics observer, a transport) sees the same stream, in
order, as it happens. As with pipecat's frames, an interruption is an event of its own:
whoever holds agent voice or video drops it on `Interruption`.

    user side      UserStarted → (UserPaused → UserResumed)* → UserStopped
    over the agent UserStarted(overlap) → Backchannel | Interruption
    agent side     ReplyStarted → (TurnEnded) → UserTranscript, StageTiming*, ReplyMade
                   → AgentStarted → FirstFrame → ReplyEnded (played out, interrupted, or dropped)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class State(str, Enum):
    """Where the conversation is; exactly one at a time."""
    LISTENING = "listening"     # no reply under way
    PREPARING = "preparing"     # the user paused: a reply is being made, held silent
    THINKING = "thinking"       # the user's turn is over: the reply is being made
    SPEAKING = "speaking"       # the agent's voice is playing
    DUCKED = "ducked"           # the user speaks over the agent: voice paused, deciding


# ── the user's speech (from the turn detector) ─────────────────────────────────────────


@dataclass(frozen=True)
class UserStarted:
    t: float                    # speech onset
    overlap: bool = False       # over the agent's voice: a backchannel or a barge-in


@dataclass(frozen=True, eq=False)
class UserPaused:
    """Silence that may end the turn: a reply can be prepared."""
    t: float                    # end of speech
    start: float                # onset of the turn
    audio: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class UserResumed:
    t: float


@dataclass(frozen=True, eq=False)
class UserStopped:
    """The user's turn is over; `audio` is all of it."""
    t: float                    # end of speech
    start: float                # onset of the turn
    audio: np.ndarray = field(repr=False)
    semantic: bool = False      # ended early because what was said sounded complete
    end_of_turn_s: float | None = None  # wall time the end-of-turn model took


@dataclass(frozen=True)
class Backchannel:
    """Speech over the agent that only acknowledged it ("mm-hm"): the agent goes on."""
    onset: float
    t: float                    # when it was decided
    text: str                   # what the ASR heard ("" for a laugh or a noise)


@dataclass(frozen=True)
class BargeIn:
    """Speech over the agent that takes the turn ("wait, stop", a new question)."""
    onset: float
    t: float
    text: str                   # what the ASR heard so far ("" when decided by duration)


# ── the agent's side ───────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Interruption:
    """The reply in progress is cancelled: drop every agent sample and frame not yet
    played. `reason`: "barge_in" (the user took the turn) or "interrupt" (the app's
    Interrupt button, `Conversation.interrupt`)."""
    t: float
    reason: str
    onset: float | None = None  # onset of the speech that cut in
    turn: int | None = None     # the turn whose reply was cut (None: the greeting)


@dataclass(frozen=True)
class StateChanged:
    t: float
    state: State


@dataclass(frozen=True)
class ReplyStarted:
    turn: int
    t: float
    user_start: float
    user_end: float
    prepared: bool              # started at a pause, before the turn was known to be over


@dataclass(frozen=True)
class TurnEnded:
    """The user turn a (prepared) reply answers is over."""
    turn: int
    t: float                    # when it was detected
    user_end: float
    semantic: bool = False
    end_of_turn_s: float | None = None


@dataclass(frozen=True)
class UserTranscript:
    turn: int
    text: str
    asr_s: float


@dataclass(frozen=True)
class StageTiming:
    """Wall-clock time of a brain stage, from the reply's start."""
    turn: int
    stage: str                  # "llm_first_token" | "llm_first_clause" | "tts_first_audio"
    seconds: float


@dataclass(frozen=True)
class ReplyMade:
    """The brain has finished (the voice may still be playing)."""
    turn: int
    text: str                   # the whole reply
    failure: str | None = None  # why it failed (the user hears an apology)


@dataclass(frozen=True)
class AgentStarted:
    """The reply's first sample went to the avatar."""
    turn: int | None
    t: float


@dataclass(frozen=True)
class FirstFrame:
    """The reply's first frame with its voice was shown."""
    turn: int | None
    t: float


@dataclass(frozen=True)
class ReplyEnded:
    turn: int | None
    t: float
    outcome: str                # "played" | "interrupted" | "dropped" (a prepared reply not needed)
    spoken: str                 # what the user heard of it
    audio_stopped_at: float | None = None  # interrupted: end of the last agent sample heard


Event = (UserStarted | UserPaused | UserResumed | UserStopped | Backchannel | BargeIn | Interruption
         | StateChanged | ReplyStarted | TurnEnded | UserTranscript | StageTiming | ReplyMade | AgentStarted | FirstFrame
         | ReplyEnded)
