"""The turn log: one record per user turn with the timings of its reply, written by an
observer of the conversation's events (it never steers anything), and the latency
summary over a session.

Times ending in `_at` are on the session clock; times ending in `_s` are wall-clock
stage durations measured from the reply's start. `stage_at` holds the session time each
stage's result reached the conversation: the breakdown is made of those, so its parts
add up to the response time even when the machine is too loaded to keep the session
clock at wall-clock pace.
"""
from __future__ import annotations

import statistics
from collections import deque
from dataclasses import asdict, dataclass, field

from agent.frames import (AgentStarted, Event, FirstFrame, Interruption, ReplyEnded, ReplyMade, ReplyStarted,
                          StageTiming, TurnEnded, UserTranscript)


@dataclass
class TurnLog:
    """One user turn and the agent's reply, with timings on the session clock (s)."""
    index: int
    user_start: float
    user_end: float
    detected_at: float                     # when the end of the turn was detected
    reply_started_at: float = 0.0          # when the brain began (at the pause, if prepared)
    prepared: bool = False                 # the reply was started at a pause
    semantic_end: bool = False             # the end-of-turn model ended the turn early
    end_of_turn_s: float | None = None     # wall time of the end-of-turn model
    user_text: str = ""
    reply_text: str = ""                   # what the brain produced
    agent_text: str = ""                   # what was actually played
    interrupted: bool = False
    failure: str | None = None
    asr_s: float | None = None             # wall-clock stage times from the reply's start
    llm_first_token_s: float | None = None
    llm_first_clause_s: float | None = None  # the first words handed to TTS
    tts_first_audio_s: float | None = None
    first_audio_at: float | None = None    # first agent sample handed to the avatar
    first_frame_at: float | None = None    # first frame of the reply shown, with its voice
    barge_in_at: float | None = None       # onset of the user speech that cut in
    audio_stopped_at: float | None = None  # end of the last agent sample played after it
    stage_at: dict[str, float] = field(default_factory=dict)  # asr, llm_first_token, ... → session time

    @property
    def response_s(self) -> float | None:
        """End of the user's speech → the reply's first voice and frame, as the user
        sees and hears them."""
        return None if self.first_frame_at is None else self.first_frame_at - self.user_end

    @property
    def barge_in_s(self) -> float | None:
        if self.barge_in_at is None or self.audio_stopped_at is None:
            return None
        return max(0.0, self.audio_stopped_at - self.barge_in_at)

    def breakdown(self) -> dict[str, float | None]:
        """Where the response time went, stage by stage, each from the previous one (s):
        the parts add up to `response_s` when every stage was reached."""
        marks = [("end_of_turn", self.detected_at)] + \
            [(stage, self.stage_at.get(stage)) for stage in ("asr", "llm_first_token", "llm_first_clause",
                                                             "tts_first_audio")] + \
            [("playout", self.first_audio_at), ("first_frame", self.first_frame_at)]
        out, last = {}, self.user_end
        for name, t in marks:
            if t is None:
                out[name] = None
                continue
            # a prepared reply's stages can come before the end of the turn was known:
            # the time the user waited for them is what is left after it
            out[name] = max(0.0, t - last)
            last = max(last, t)
        return out

    def to_json(self) -> dict:
        return {**asdict(self), "response_s": self.response_s, "barge_in_s": self.barge_in_s,
                "breakdown": self.breakdown()}


class TurnMetrics:
    """Observer: keeps the last `max_turns` turn logs up to date from the events."""

    def __init__(self, clock, max_turns: int = 1000):
        self.clock = clock                  # SessionClock: when each stage's result arrived
        self.turns: deque[TurnLog] = deque(maxlen=max_turns)

    def _turn(self, index: int | None) -> TurnLog | None:
        if index is None:
            return None
        for turn in reversed(self.turns):   # the live turn is the last, or close to it
            if turn.index == index:
                return turn
        return None

    def __call__(self, event: Event) -> None:
        if isinstance(event, ReplyStarted):
            self.turns.append(TurnLog(event.turn, event.user_start, event.user_end, event.t,
                                      reply_started_at=event.t, prepared=event.prepared))
            return
        turn = self._turn(getattr(event, "turn", None))
        if turn is None:
            return
        if isinstance(event, TurnEnded):
            turn.user_end, turn.detected_at = event.user_end, event.t
            turn.semantic_end, turn.end_of_turn_s = event.semantic, event.end_of_turn_s
        elif isinstance(event, UserTranscript):
            turn.user_text, turn.asr_s = event.text, event.asr_s
            turn.stage_at["asr"] = self.clock.now
        elif isinstance(event, StageTiming):
            setattr(turn, f"{event.stage}_s", event.seconds)
            turn.stage_at[event.stage] = self.clock.now
        elif isinstance(event, ReplyMade):
            turn.reply_text, turn.failure = event.text, event.failure
        elif isinstance(event, AgentStarted):
            turn.first_audio_at = turn.first_audio_at if turn.first_audio_at is not None else event.t
        elif isinstance(event, FirstFrame):
            turn.first_frame_at = turn.first_frame_at if turn.first_frame_at is not None else event.t
        elif isinstance(event, Interruption):
            turn.barge_in_at = event.onset if event.onset is not None else event.t
        elif isinstance(event, ReplyEnded):
            if event.outcome == "dropped":   # a prepared reply that was not needed: no trace
                self.turns.remove(turn)
                return
            turn.agent_text = event.spoken
            turn.interrupted = event.outcome == "interrupted"
            turn.audio_stopped_at = event.audio_stopped_at


def summary(turns) -> dict:
    """Latency percentiles over the turns that got a reply."""
    def pct(values, q):
        values = sorted(v for v in values if v is not None)
        if not values:
            return None
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]
    turns = list(turns)
    response = [t.response_s for t in turns]
    barge = [t.barge_in_s for t in turns]
    stages = [t.breakdown() for t in turns if t.first_frame_at is not None]
    return {
        "turns": len(turns),
        "replied": sum(t.first_frame_at is not None for t in turns),
        "interrupted": sum(t.interrupted for t in turns),
        "failed": sum(t.failure is not None for t in turns),
        "response_p50_s": pct(response, 0.5), "response_p90_s": pct(response, 0.9),
        "barge_in_p50_s": pct(barge, 0.5), "barge_in_max_s": max((b for b in barge if b is not None), default=None),
        "asr_p50_s": pct([t.asr_s for t in turns], 0.5),
        "llm_first_token_p50_s": pct([t.llm_first_token_s for t in turns], 0.5),
        "tts_first_audio_p50_s": pct([t.tts_first_audio_s for t in turns], 0.5),
        "vad_end_p50_s": pct([t.detected_at - t.user_end for t in turns], 0.5),
        "breakdown_p50_s": {k: pct([s[k] for s in stages], 0.5) for k in stages[0]} if stages else {},
        "mean_response_s": statistics.mean([r for r in response if r is not None]) if any(response) else None,
    }


def transcript(turns, **meta) -> dict:
    """A session's record as JSON: `meta` (who, which files), every turn, the summary."""
    return {**meta, "turns": [t.to_json() for t in turns], "summary": summary(turns)}
