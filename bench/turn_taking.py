"""Turn taking on speech that is not the agent's voice: the semantic end of turn, and
backchannel-or-barge-in judged by words.

Real Silero VAD, real Whisper (asr.model), Smart Turn v3, and a user in espeak-ng
voices (accents, speeds, some in a noisy room). The agent is the conversation's own
machinery with a brain that listens (the ASR) and answers every turn with a fixed line
in the Piper voice: no LLM, so what is measured is the turn taking alone.

    python bench/turn_taking.py [--voices 6]

1. End of turn, for complete questions: from the true end of speech to the end of the
   turn, and to the reply's first frame, with `turns.end_of_turn` semantic and silence.
   (A reply is prepared at the pause either way; with semantic end of turn a turn the
   model does not call finished waits for the prepared reply's words, which costs no
   response time as long as they come before its voice would.)
2. A 0.6 s pause mid-sentence ("I'd like to, um... order a pizza."): how often the turn
   is kept whole (target: always, with semantic end of turn).
3. Speech over the agent's voice: backchannels of 0.3-1.2 s ("uh-huh", "yeah", "okay",
   "right", a laugh) and barge-ins ("wait, stop", a new question), judged right how
   often, with `turns.overlap` words and duration; and how long the voice was ducked.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.brain import LocalVoice, UserText  # noqa: E402
from agent.conversation import Conversation  # noqa: E402
from agent.events import ReplyDone  # noqa: E402
from agent.frames import Backchannel, BargeIn, UserStopped  # noqa: E402
from agent.history import History  # noqa: E402
from agent.persona import load_persona  # noqa: E402
from avatar_engine.backend import BlankBackend  # noqa: E402
from avatar_engine.clocked import ClockedAvatar  # noqa: E402
from avatar_engine.runtime import AvatarRuntime  # noqa: E402
from config import load_config  # noqa: E402
from speech.espeak import VOICES, Room, speak  # noqa: E402
from speech.synthetic import Cue, ScriptedUser  # noqa: E402
from speech.timeline import SessionClock, SpeakerTimeline  # noqa: E402
from transports.headless import run_conversation  # noqa: E402

RATE = 16000
PAUSE, PAUSE_S = " / ", 0.6
QUESTIONS = ["What is the biggest planet in our solar system?", "How far away is the moon?"]
MID_PAUSE = f"I'd like to, um...{PAUSE}order a pizza."
BACKCHANNELS = ["Uh-huh.", "Yeah.", "Okay.", "Right.", "Ha ha ha."]
BARGE_INS = ["Wait, stop.", "Hold on, what about Mars?"]
SHORT, LONG = "Sure.", ("Let me tell you all about it. It is a long story, and it starts a long time ago, "
                        "with a small star and a cloud of gas.")


class ListeningBrain(LocalVoice):
    """Hears the turn with the real ASR and answers it with a fixed line."""

    def __init__(self, asr, tts, persona, line: str):
        self.asr, self.tts, self.persona, self.rate, self.line = asr, tts, persona, RATE, line

    async def reply(self, audio, history):
        heard = await asyncio.to_thread(self.asr.transcribe, audio, words=False)
        yield UserText(heard.text)
        async for speech in self.speak(self.line):
            yield speech
        yield ReplyDone(self.line, "stop")

    async def warm_up(self):
        pass

    async def reread(self, history):
        pass


def voiced(voice_cfg, room):
    def say(text: str) -> np.ndarray:
        parts = [speak(p, voice_cfg, room).audio for p in text.split(PAUSE)]
        gap = np.zeros(int(PAUSE_S * RATE), np.float32)
        return np.concatenate([x for p in parts for x in (p, gap)][:-1])
    return say


async def session(cfg, models, cues, say, line):
    asr, tts, turn_end, persona = models
    clock, timeline = SessionClock(RATE), SpeakerTimeline()
    runtime = AvatarRuntime(BlankBackend(), np.zeros((4, 4, 3), np.uint8), fps=cfg.avatar.fps,
                            frames_per_block=cfg.avatar.frames_per_block, sample_rate=RATE, listen_mask=timeline.mask)
    conv = Conversation(cfg, ListeningBrain(asr, tts, persona, line), ClockedAvatar(runtime, clock), clock=clock,
                        timeline=timeline, history=History(8, 1024), asr=asr, turn_end=turn_end)
    events = []
    conv.subscribe(events.append)
    user = ScriptedUser(None, cues, RATE, voice=say)
    await run_conversation(conv, user, None, fast=True, max_s=120, progress=lambda m: None)
    return conv, user, events


def with_turns(cfg, **turns):
    return dataclasses.replace(cfg, turns=dataclasses.replace(cfg.turns, **turns))


async def main(n_voices: int) -> None:
    from speech.asr import ASR
    from speech.tts import TTS
    from speech.turn_end import SmartTurn
    cfg = load_config()
    models = (ASR(cfg.asr), TTS(cfg.tts), SmartTurn(cfg.turns.threads), load_persona(cfg.agent.persona))
    voices = [(v, Room(snr_db=20) if i % 2 else None) for i, v in enumerate(VOICES[:n_voices])]

    print("1-2. end of turn (complete questions; a 0.6 s pause mid-sentence)")
    for mode in ("silence", "semantic"):
        delays, responses, kept, semantic = [], [], 0, 0
        for v, room in voices:
            cues = [Cue(q, "after", 0.5) for q in QUESTIONS] + [Cue(MID_PAUSE, "after", 0.5)]
            conv, user, events = await session(with_turns(cfg, end_of_turn=mode), models, cues, voiced(v, room), SHORT)
            turns = list(conv.turns)
            for said in user.said[:len(QUESTIONS)]:
                turn = next((t for t in turns if abs(t.user_start - said.onset) < 0.2), None)
                if turn is not None:
                    delays.append(turn.detected_at - said.end)
                    if turn.first_frame_at is not None:
                        responses.append(turn.first_frame_at - said.end)
                    semantic += turn.semantic_end
            mid = user.said[-1]
            stops = [e for e in events if isinstance(e, UserStopped) and mid.onset < e.t < mid.end - 0.3]
            kept += not stops
        print(f"  {mode:<9} end of turn after the speech: p50 {statistics.median(delays):.2f} s, "
              f"mean {statistics.mean(delays):.2f} s, max {max(delays):.2f} s (n={len(delays)}, "
              f"{semantic} ended by the model); first frame of the reply p50 {statistics.median(responses):.2f} s; "
              f"mid-sentence pause kept whole in {kept}/{len(voices)} voices")

    print("3. speech over the agent's voice")
    for mode in ("duration", "words"):
        right, total, ducks, decide = 0, 0, [], []
        for i, (v, room) in enumerate(voices):
            overlaps = [(BACKCHANNELS[(i + k) % len(BACKCHANNELS)], False) for k in range(2)] + \
                       [(BARGE_INS[i % len(BARGE_INS)], True)]
            cues = []
            for k, (text, barge) in enumerate(overlaps):
                cues += [Cue(QUESTIONS[k % len(QUESTIONS)], "after", 0.5), Cue(text, "during", 0.8)]
            conv, user, events = await session(with_turns(cfg, overlap=mode), models, cues, voiced(v, room), LONG)
            judged = [e for e in events if isinstance(e, (Backchannel, BargeIn))]
            for said, (text, barge) in zip([s for s in user.said if s.when == "during"], overlaps):
                verdict = next((e for e in judged if abs(e.onset - said.onset) < 0.2), None)
                total += 1
                if verdict is None:
                    continue
                right += isinstance(verdict, BargeIn) == barge
                decide.append(verdict.t - said.end)
                if not barge and isinstance(verdict, Backchannel):
                    ducks.append(verdict.t - verdict.onset)
        print(f"  {mode:<9} judged right {right}/{total}; decided {statistics.median(decide):.2f} s after the "
              f"speech ended (p50); backchannel duck p50 {statistics.median(ducks) if ducks else float('nan'):.2f} s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voices", type=int, default=len(VOICES))
    asyncio.run(main(ap.parse_args().voices))
