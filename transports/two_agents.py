"""Two personas talking to each other, recorded side by side.

Each persona is a full `Conversation`: its microphone is the other's voice, so turn
taking runs through the same VAD, brain and avatar as a human conversation, and each
avatar visibly listens while the other talks. A opens with its greeting and the topic;
the run ends after `turns` replies in all, when both have finished speaking.

A reply streams clause by clause. When its next clause is late (on two cores under load
it came 2-9 s late), the gap is not played: in the default fast mode the session clock
stops until the clause is ready (the wait for a reply's first clause, its latency, still
plays in full). Played, such a gap sounded to the other persona like the end of the
turn: it answered, and the resumed voice cut it off.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Callable

import numpy as np

from agent.conversation import TICK_S, Conversation
from agent.frames import State
from agent.metrics import transcript
from agent.persona import load_persona
from agent.session import SESSION_RATE, make_conversation, open_stack
from avatar_engine.media import MP4Writer
from config import Config
from speech.timeline import TALK
from transports.headless import Loudspeaker, Pacer

log = logging.getLogger(__name__)
MAX_TWO_AGENT_S = 1800.0
# The clock waits this long at most for a late clause, then plays on: a bound against a
# hung brain. Clauses came over 20 s late with the machine under load 17 on 2 cores.
MAX_GAP_WAIT_S = 60.0
# Words too common to tie a reply to a topic (besides those under four letters).
COMMON_WORDS = frozenset("""about after again also always another anything because been before being could does doing
down each even every everything from have having here into just know like make many more most much must never only other
nothing over really said same should some something such sure than that their them then there these they thing things
think this those through very want well were what when where which while will with would your yours
""".split())


def with_topic(persona, topic: str, other_name: str):
    """The persona, told who it talks to and about what."""
    if not topic:
        return persona
    prompt = (f"{persona.system_prompt.strip()} {persona.name} is talking with {other_name} "
              f"about {topic}, stays on that topic, and keeps the conversation going with a "
              f"question now and then.")
    return dataclasses.replace(persona, system_prompt=prompt)


def opening_line(persona, topic: str) -> str:
    """What A says first: its greeting and the topic."""
    return f"{persona.greeting} Let's talk about {topic}." if topic else persona.greeting


async def talk(conv_a: Conversation, conv_b: Conversation, opening: str, turns: int,
               on_pair: Callable[[np.ndarray, np.ndarray], None], *,
               fast: bool = True, progress: Callable[[str], None] = log.info) -> "Talked":
    """Run two conversations as each other's microphone until `turns` replies in all.
    `on_pair(frames, audio)` gets each side-by-side block: (n, H, 2W, 3) frames, A left,
    and both voices mixed. Both conversations are closed when it returns. Returns when
    each voice was shown and how long the clock stood still for late clauses."""
    tick = conv_a.tick_samples
    waiting, waited, stood = 0.0, 0.0, False  # for the current late clause; in all
    talked = Talked(Voiced(conv_a.fps), Voiced(conv_b.fps))
    try:
        for conv in (conv_a, conv_b):  # each LLM reads its persona's prompt once
            await conv.warm_up()
        await conv_a.greet(opening)
        pacer = Pacer(realtime=not fast)
        voice_a = voice_b = np.zeros(tick, np.float32)
        speaker_a, speaker_b = Loudspeaker(tick), Loudspeaker(tick)
        quiet, seen = 0.0, 0
        while True:
            dry = fast and (ran_dry(conv_a) or ran_dry(conv_b))
            if dry and waiting < MAX_GAP_WAIT_S:
                await asyncio.sleep(TICK_S)   # the brain works; neither clock moves
                waiting += TICK_S
                stood = True
                if waiting >= MAX_GAP_WAIT_S:
                    log.warning("a reply's next clause is %.0f s late; playing on", waiting)
                continue
            if stood:  # the wall clock ran on while the session clock stood: re-anchor
                pacer, stood = Pacer(realtime=False), False
            if not dry:
                waited, waiting = waited + waiting, 0.0
            await pacer.wait(conv_a.now, must_pace=conv_a.busy or conv_b.busy)
            # each hears what the other played in the previous tick
            blocks_a = await conv_a.step(voice_b)
            blocks_b = await conv_b.step(voice_a)
            speaker_a.play(blocks_a)
            speaker_b.play(blocks_b)
            voice_a, voice_b = speaker_a.next_tick(), speaker_b.next_tick()
            for ba, bb in zip(blocks_a, blocks_b):  # same clock and block size: pairs
                on_pair(np.concatenate([ba.frames, bb.frames], axis=2), ba.audio + bb.audio)
                talked.voice_a.add(ba)
                talked.voice_b.add(bb)
            replies = len(conv_a.turns) + len(conv_b.turns)
            done = replies >= turns and conv_a.idle and conv_b.idle
            quiet = quiet + TICK_S if done else 0.0
            if quiet >= 1.0 or conv_a.now > MAX_TWO_AGENT_S:
                break
            if replies > seen:
                seen = replies
                progress(f"{conv_a.now:6.1f}s  {replies}/{turns} replies")
            # Enough replies: neither answers what is said from now on. Derived each
            # tick, not latched: a reply prepared at a pause counts until it is dropped.
            conv_a.answering = conv_b.answering = replies < turns
    finally:
        await conv_a.close()
        await conv_b.close()
    talked.late_clauses_s = waited
    return talked


def two_agent_transcript(conv_a, conv_b, pa, pb, topic: str, output: str | Path, talked: "Talked") -> dict:
    """Both transcripts, when each voice is heard in the recording, how long both are at
    once, and which replies stay on the topic."""
    spoken_a, spoken_b = talked.voice_a.spans, talked.voice_b.spans
    result = {"a": {**transcript(conv_a.turns, persona=pa.id), "voice": spoken_a},
              "b": {**transcript(conv_b.turns, persona=pb.id), "voice": spoken_b},
              "overlap_s": overlap_s(spoken_a, spoken_b), "late_clauses_s": talked.late_clauses_s,
              "topic": topic, "output": str(output)}
    said = [t["agent_text"] for t in spoken_replies(result)]
    result["on_topic"] = on_topic(said, topic, opening_line(pa, topic))
    return result


def spoken_replies(result: dict) -> list[dict]:
    """Both personas' replies that were heard, in the order they were spoken."""
    turns = result["a"]["turns"] + result["b"]["turns"]
    return sorted((t for t in turns if t["first_audio_at"] is not None), key=lambda t: t["first_audio_at"])


def content_words(text: str) -> set[str]:
    """The words that carry meaning, singular: "craters" and "crater" are one."""
    words = (w.removesuffix("'s") for w in re.findall(r"[a-z']+", text.lower()))
    return {w.removesuffix("s") if len(w) > 4 else w for w in words if len(w) >= 4 and w not in COMMON_WORDS}


def on_topic(said: list[str], topic: str, opening: str) -> dict:
    """A reply is on the topic when it shares a content word with the topic or with the
    line it answers (the opening line for the first). `replies`: each reply's verdict,
    in order; `share`: the fraction on the topic."""
    verdicts, previous = [], opening
    for line in said:
        verdicts.append(bool(content_words(line) & (content_words(topic) | content_words(previous))))
        previous = line
    return {"replies": verdicts, "share": round(sum(verdicts) / len(verdicts), 3) if verdicts else 0.0}


async def run_two_agents(cfg: Config, a: str, b: str, turns: int, topic: str, output_mp4: str | Path, *,
                         fast: bool = True, progress: Callable[[str], None] = log.info) -> dict:
    pa, pb = load_persona(a), load_persona(b)
    pa, pb = with_topic(pa, topic, pb.name), with_topic(pb, topic, pa.name)
    async with open_stack(cfg, progress, seats=2) as stack:
        conv_a, conv_b = make_conversation(stack, pa, seat=0), make_conversation(stack, pb, seat=1)
        size = cfg.avatar.size
        with MP4Writer(output_mp4, cfg.avatar.fps, 2 * size, size, SESSION_RATE) as writer:
            talked = await talk(conv_a, conv_b, opening_line(pa, topic), turns, writer.write,
                                fast=fast, progress=progress)
    result = two_agent_transcript(conv_a, conv_b, pa, pb, topic, output_mp4, talked)
    Path(output_mp4).with_suffix(".json").write_text(json.dumps(result, indent=2))
    return result


def ran_dry(conv: Conversation) -> bool:
    """Its reply has begun to play and the next words are not ready yet."""
    return conv.busy and conv.state is State.SPEAKING


@dataclasses.dataclass
class Talked:
    voice_a: "Voiced"
    voice_b: "Voiced"
    late_clauses_s: float = 0.0


class Voiced:
    """When a persona's voice is shown: [start, end] seconds of the frames its A/V
    blocks mark as talking, one span per stretch of speech (bounded, as the run is,
    by MAX_TWO_AGENT_S)."""

    def __init__(self, fps: int):
        self.fps = fps
        self.spans: list[list[float]] = []

    def add(self, block) -> None:
        for i in np.flatnonzero(block.mask & TALK):
            t = round(float(block.t0) + i / self.fps, 6)
            if self.spans and abs(self.spans[-1][1] - t) < 1e-6:
                self.spans[-1][1] = round(t + 1 / self.fps, 6)   # the next frame of the same stretch
            else:
                self.spans.append([t, round(t + 1 / self.fps, 6)])


def overlap_s(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Seconds during which both voices played: intervals (start, end) of each."""
    return sum(max(0.0, min(a1, b1) - max(a0, b0)) for a0, a1 in a for b0, b1 in b)
