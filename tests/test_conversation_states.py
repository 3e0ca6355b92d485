"""The conversation's state machine on its own: no speech models, a scripted brain.

The user is a script of tones on the session clock; a stand-in VAD scores a frame as
speech when it is loud, and a scripted ASR tells the words from the tone's pitch, so
every turn, backchannel and barge-in is known exactly. The avatar is the real runtime on
the real session clock with a backend that draws nothing. The tests check the states
the conversation passes through, the events it publishes (Interruption among them),
what the user hears, and the turn log and history it leaves.
"""
import asyncio
import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from agent.brain import Speech, UserText
from agent.conversation import Conversation
from agent.events import ReplyDone
from agent.frames import Backchannel, BargeIn, Interruption, ReplyEnded, State, StateChanged
from agent.history import History
from avatar_engine.backend import BlankBackend
from avatar_engine.clocked import ClockedAvatar
from avatar_engine.runtime import AvatarRuntime
from config import Config, load_config
from speech.timeline import SessionClock, SpeakerTimeline

RATE = 16000
# the scripted ASR hears these words in tones of these pitches (Hz)
WORDS = {300: "Mm-hm.", 400: "Yeah.", 500: "Wait, stop.", 600: "What is a black hole?", 700: "Tell me about Mars.",
         800: "I'd like to, um...", 900: "order a pizza."}
REPLY_CHUNK_S, REPLY_CHUNKS = 0.5, 6      # the agent's answer: 3 s of voice in six pieces


def tone(hz: int, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def pitch(audio: np.ndarray) -> int | None:
    """The scripted words' tone in `audio` (the loudest of WORDS' pitches)."""
    if not len(audio) or np.abs(audio).max() < 0.05:
        return None
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    return max(WORDS, key=lambda hz: spectrum[np.argmin(np.abs(freqs - hz))])


class LoudnessVAD:
    """Stand-in for Silero: a frame is speech when it is loud."""

    def __call__(self, frame, rate):
        return 1.0 if float(frame.abs().max()) > 0.05 else 0.0

    def reset_states(self):
        pass


@dataclass
class Heard:
    text: str


class ScriptedASR:
    def __init__(self):
        self.calls = 0

    def transcribe(self, audio, *, words=True):
        self.calls += 1
        hz = pitch(audio)
        return Heard("" if hz is None else WORDS[hz])


class ScriptedBrain:
    """Hears the turn's words, thinks `think_s` on the session clock, and answers each
    with 3 s of a 1 kHz voice."""

    def __init__(self, asr, clock, think_s):
        self.asr, self.clock, self.think_s = asr, clock, think_s

    async def reply(self, audio, history):
        text = self.asr.transcribe(audio).text
        yield UserText(text)
        until = self.clock.now + self.think_s
        while self.clock.now < until:
            await asyncio.sleep(0)
        for i in range(REPLY_CHUNKS):
            await asyncio.sleep(0)
            yield Speech(tone(1000, REPLY_CHUNK_S) * 0.5, f"piece{i} ")
        yield ReplyDone(" ".join(f"piece{i}" for i in range(REPLY_CHUNKS)), "stop")

    async def speak(self, text):
        yield Speech(tone(1000, 1.0) * 0.5, text + " ")

    async def warm_up(self):
        pass

    async def reread(self, history):
        pass


class TurnEndScript:
    """Stand-in for Smart Turn: a turn is complete when its last words end a sentence."""

    def complete(self, audio):
        tail = audio[-int(0.6 * RATE):]
        hz = pitch(tail)
        return 0.9 if hz is not None and WORDS[hz].endswith(("?", ".")) and not WORDS[hz].endswith("...") else 0.1

    def warm_up(self):
        pass


def make(overlap="words", end_of_turn="silence", think_s=0.0, **turns):
    base = Config()
    cfg = dataclasses.replace(base, turns=dataclasses.replace(base.turns, overlap=overlap, end_of_turn=end_of_turn,
                                                              **turns))
    clock, timeline = SessionClock(RATE), SpeakerTimeline()
    runtime = AvatarRuntime(BlankBackend(), np.zeros((4, 4, 3), np.uint8), fps=25, frames_per_block=2,
                            sample_rate=RATE, listen_mask=timeline.mask)
    asr = ScriptedASR()
    conv = Conversation(cfg, ScriptedBrain(asr, clock, think_s), ClockedAvatar(runtime, clock), clock=clock, timeline=timeline,
                        history=History(8, 1024), asr=asr, turn_end=TurnEndScript(), vad_model=LoudnessVAD())
    return conv, asr


def run(conv, script, seconds):
    """Feed the mic: `script` is [(start_s, hz, duration_s)]. Returns what was recorded:
    the events, the state at each tick, and the agent voice per tick (from the blocks)."""
    mic = np.zeros(int(seconds * RATE), np.float32)
    for start, hz, dur in script:
        a = int(start * RATE)
        mic[a:a + int(dur * RATE)] += tone(hz, dur)
    events, states, voice = [], [], np.zeros(len(mic) + RATE, np.float32)
    conv.subscribe(events.append)
    tick = conv.tick_samples

    async def main():
        for i in range(0, len(mic) - tick + 1, tick):
            for b in await conv.step(mic[i:i + tick]):
                k = int(round(b.t0 * RATE))
                voice[k:k + len(b.audio)] = b.audio
            states.append((conv.now, conv.state))
            await asyncio.sleep(0)
            while conv.detector.busy:      # the scripted models take no session time
                await asyncio.sleep(0.001)
        await conv.close()
    asyncio.run(main())
    return events, states, voice


def voiced(voice, start, end):
    """Seconds of agent voice the user got between session times start and end (10 ms
    windows with the voice in them)."""
    hop = RATE // 100
    seg = voice[int(start * RATE):int(end * RATE)]
    seg = seg[:len(seg) // hop * hop].reshape(-1, hop)
    return float(np.count_nonzero(np.abs(seg).max(axis=1) > 1e-3)) / 100


def test_a_question_goes_through_every_state_and_is_answered():
    conv, _ = make()
    events, states, voice = run(conv, [(0.5, 600, 1.0)], 6.0)
    path = [e.state for e in events if isinstance(e, StateChanged)]
    assert path == [State.PREPARING, State.THINKING, State.SPEAKING, State.LISTENING], path
    (turn,) = conv.turns
    assert turn.user_text == "What is a black hole?" and turn.prepared and not turn.interrupted
    assert turn.agent_text == turn.reply_text == " ".join(f"piece{i}" for i in range(REPLY_CHUNKS))
    assert abs(turn.user_start - 0.5) < 0.05 and abs(turn.user_end - 1.5) < 0.05
    # the turn ends vad.end_s after the speech, and the voice starts at once
    assert abs(turn.detected_at - turn.user_end - conv.detector.end_s) < 0.05
    assert turn.first_audio_at - turn.detected_at < 0.05
    assert turn.response_s < conv.detector.end_s + 0.15
    assert voiced(voice, 0, turn.first_audio_at) == 0
    assert voiced(voice, turn.first_audio_at, 6.0) == pytest.approx(REPLY_CHUNKS * REPLY_CHUNK_S, abs=0.05)
    assert [t.role for t in conv.history.turns] == ["user", "agent"]
    breakdown = turn.breakdown()
    assert sum(v for v in breakdown.values() if v is not None) == pytest.approx(turn.response_s, abs=1e-6)


@pytest.mark.parametrize("hz, seconds", [(300, 0.3), (400, 0.8), (300, 1.2)])
def test_a_backchannel_ducks_the_voice_then_the_reply_goes_on(hz, seconds):
    conv, asr = make()
    # the reply plays from about 2.0 s to 5.0 s; the backchannel comes at 2.6 s
    events, states, voice = run(conv, [(0.5, 600, 1.0), (2.6, hz, seconds)], 9.0)
    (turn,) = conv.turns                      # the backchannel is not a turn
    assert not turn.interrupted and turn.agent_text == turn.reply_text
    assert not any(isinstance(e, (Interruption, BargeIn)) for e in events)
    (bc,) = [e for e in events if isinstance(e, Backchannel)]
    assert bc.text == WORDS[hz] and abs(bc.onset - 2.6) < 0.05
    ducked = [t for t, s in states if s is State.DUCKED]
    # the voice stops within 300 ms of the onset and stays off only for the duck
    assert ducked[0] - 2.6 < 0.3
    # (the voice resumes at the start of the block in which it was handed over)
    assert voiced(voice, ducked[0] + 0.1, ducked[-1] - conv.output.avatar.block_s) == 0
    assert ducked[-1] - (2.6 + seconds) < conv.detector.cfg.backchannel_gap_s + 0.15
    # all of the reply is heard, in the end
    assert voiced(voice, 0, 9.0) == pytest.approx(REPLY_CHUNKS * REPLY_CHUNK_S, abs=0.1)
    assert [t.role for t in conv.history.turns] == ["user", "agent"]


@pytest.mark.parametrize("hz, seconds", [(500, 0.5), (700, 1.0)])
def test_a_barge_in_interrupts_and_its_words_are_answered(hz, seconds):
    conv, _ = make()
    cut_at = 2.6
    events, states, voice = run(conv, [(0.5, 600, 1.0), (cut_at, hz, seconds)], 9.0)
    first, second = conv.turns
    assert first.interrupted and 0 < len(first.agent_text) < len(first.reply_text)
    (cut,) = [e for e in events if isinstance(e, Interruption)]
    assert cut.reason == "barge_in" and cut.turn == first.index and abs(cut.onset - cut_at) < 0.05
    (barge,) = [e for e in events if isinstance(e, BargeIn)]
    assert barge.text == WORDS[hz]
    # silent within 300 ms of the onset until the answer to the interruption
    assert first.barge_in_s is not None and first.barge_in_s <= 0.3
    # (the answer may start at the beginning of the block in which it was handed over)
    assert voiced(voice, cut_at + 0.3, second.first_audio_at - conv.output.avatar.block_s) == 0
    assert second.user_text == WORDS[hz] and not second.interrupted and second.first_frame_at is not None
    assert abs(second.user_start - cut_at) < 0.05
    ended = [e.outcome for e in events if isinstance(e, ReplyEnded)]
    assert ended == ["interrupted", "played"]
    history = conv.history.turns
    assert [t.role for t in history] == ["user", "agent", "user", "agent"] and history[1].interrupted


def test_backchannel_words_said_for_too_long_are_a_barge_in():
    conv, _ = make()
    events, _, _ = run(conv, [(0.5, 600, 1.0), (2.6, 400, 2.2)], 10.0)
    (barge,) = [e for e in events if isinstance(e, BargeIn)]
    assert barge.t - barge.onset == pytest.approx(conv.detector.cfg.max_backchannel_s, abs=0.1)
    assert conv.turns[0].interrupted and conv.turns[1].user_text == "Yeah."


def test_duration_mode_judges_by_length_alone():
    conv, asr = make(overlap="duration")
    events, _, _ = run(conv, [(0.5, 600, 1.0), (2.6, 700, 0.3)], 8.0)
    # a short question is taken for a backchannel: that is what words mode fixes
    assert any(isinstance(e, Backchannel) for e in events) and len(conv.turns) == 1
    assert asr.calls == 1                     # only the brain listened


def test_the_interrupt_button_stops_the_reply():
    conv, _ = make()
    events, states, voice = [], [], None

    async def main():
        conv.subscribe(events.append)
        mic = np.zeros(int(6 * RATE), np.float32)
        mic[int(0.5 * RATE):int(1.5 * RATE)] = tone(600, 1.0)
        tick = conv.tick_samples
        for i in range(0, len(mic) - tick + 1, tick):
            await conv.step(mic[i:i + tick])
            if conv.state is State.SPEAKING and conv.now > 2.5 and not events_of(Interruption):
                assert conv.interrupt()
                assert conv.state is State.LISTENING
            await asyncio.sleep(0)
        assert not conv.interrupt()            # nothing left to stop
        await conv.close()

    def events_of(kind):
        return [e for e in events if isinstance(e, kind)]
    asyncio.run(main())
    (cut,) = events_of(Interruption)
    assert cut.reason == "interrupt" and cut.onset is None
    (turn,) = conv.turns
    assert turn.interrupted and turn.agent_text and conv.history.turns[-1].interrupted


def test_going_on_after_a_pause_drops_the_prepared_reply():
    conv, _ = make()
    # 0.35 s of silence: past pause_s (a reply is prepared), short of end_s
    events, _, _ = run(conv, [(0.5, 600, 1.0), (1.85, 700, 0.8)], 7.0)
    (turn,) = conv.turns
    assert abs(turn.user_start - 0.5) < 0.05 and turn.user_end > 2.6
    assert [e.outcome for e in events if isinstance(e, ReplyEnded)] == ["dropped", "played"]
    assert turn.index == 0 and turn.user_text == WORDS[600]   # the scripted ASR hears the louder tone


def test_going_on_before_the_answer_is_heard_makes_one_turn():
    conv, _ = make(think_s=1.0)
    # 0.6 s of silence ends the turn, but the user goes on before the answer is ready
    events, _, _ = run(conv, [(0.5, 600, 1.0), (2.1, 700, 0.8)], 8.0)
    (turn,) = conv.turns
    assert abs(turn.user_start - 0.5) < 0.05 and turn.user_end > 2.8
    assert [e.outcome for e in events if isinstance(e, ReplyEnded)] == ["dropped", "played"]


def test_semantic_end_of_turn_ends_a_finished_turn_sooner():
    conv, _ = make(end_of_turn="semantic")
    run(conv, [(0.5, 600, 1.0)], 5.0)
    (turn,) = conv.turns
    assert turn.semantic_end and turn.detected_at - turn.user_end < conv.detector.end_s - 0.1


def test_semantic_end_of_turn_waits_through_a_mid_sentence_pause():
    conv, _ = make(end_of_turn="semantic")
    # "I'd like to, um..." 0.6 s of silence "order a pizza."
    events, _, _ = run(conv, [(0.5, 800, 1.0), (2.1, 900, 0.8)], 7.0)
    (turn,) = conv.turns
    assert abs(turn.user_start - 0.5) < 0.05 and turn.user_end > 2.8
    with_silence = make(end_of_turn="silence")[0]
    run(with_silence, [(0.5, 800, 1.0), (2.1, 900, 0.8)], 7.0)
    assert len(with_silence.turns) == 2 or with_silence.turns[0].user_end < 1.6   # silence alone cuts it


def test_the_session_clock_has_one_owner():
    conv, _ = make()
    run(conv, [(0.5, 600, 1.0)], 3.0)
    assert conv.now == conv.detector.vad.clock.now == conv.output.avatar.clock.now
    runtime = conv.output.avatar.runtime
    assert runtime.handed == conv.clock.samples // runtime.block_samples


def test_a_web_call_drops_what_its_tracks_hold_on_an_interruption():
    from aiortc import RTCPeerConnection

    from agent.persona import load_persona
    from agent.session import Stack
    from transports.web.call import Call
    from transports.web.call_media import CallMedia
    from transports.web.recording import Recordings

    conv, _ = make()
    persona = load_persona("ada")

    class Shown:                     # the call's side of a CallMedia (transports.web.call)
        def __init__(self):
            self.blocks, self.dropped = [], 0

        def show(self, block):
            self.blocks.append(block)

        def drop_shown(self):
            self.dropped += 1

        def update(self, message):
            pass

        notify = update

    async def conversation_side():
        """The worker's side: an Interruption is told to the call as soon as it happens."""
        out = Shown()
        media = CallMedia(conv, Stack(Config(), None, None), persona, out, asyncio.get_running_loop(), 1.0, 8,
                          Recordings(), 60.0)
        running = asyncio.create_task(media.run())
        media.start()
        mic = np.zeros(int(4 * RATE), np.float32)
        mic[int(0.5 * RATE):int(1.5 * RATE)] = tone(600, 1.0)
        tick = conv.tick_samples
        for i in range(0, len(mic) - tick + 1, tick):
            media.hear(mic[i:i + tick], RATE)
            while media._mic._items:   # heard before the next tick
                await asyncio.sleep(0)
            if conv.state is State.SPEAKING and conv.now > 2.5:
                break
        voiced = sum(float(np.abs(b.audio).max()) > 0 for b in out.blocks)
        before = out.dropped                      # the mic's tone cut the greeting off
        conv.interrupt()                          # the Interrupt button, on the worker
        await asyncio.sleep(0)
        dropped = out.dropped - before
        media.hear(None)                          # the page hangs up
        await running
        return voiced, dropped

    async def call_side():
        """The server's side: what the tracks hold is dropped."""
        call = Call(RTCPeerConnection(), conv, Stack(Config(), None, None), persona, 8, Recordings(), 60.0, "vp8")
        call.video.push(np.zeros((4, 8, 8, 3), np.uint8))
        call.voice.push(np.ones(RATE // 5, np.float32))
        held = (len(call.video._frames), len(call.voice._pending))
        call.drop_shown()
        await asyncio.sleep(0.05)
        await call.discard()
        return held, (len(call.video._frames), len(call.voice._pending))

    voiced, dropped = asyncio.run(conversation_side())
    assert voiced > 0 and dropped > 0 and conv.turns[0].interrupted
    conv, _ = make()
    before, after = asyncio.run(call_side())
    assert before[0] > 0 and before[1] > 0          # voice and video were waiting to be sent
    assert after == (0, 0)


def test_warming_up_again_during_a_call_leaves_the_vad_alone():
    conv, _ = make()
    model = conv.detector.vad.model
    resets = []
    model.reset_states = lambda: resets.append(conv.now)
    conv.warm_up_listening()                 # before the call: the VAD starts fresh
    assert len(resets) == 1
    asyncio.run(conv.warm_up())              # the call's own warm-up, while it listens
    assert len(resets) == 1


@pytest.mark.parametrize("text, acknowledges", [
    ("Mm-hmm.", True), ("Uh-huh.", True), ("Ha ha ha!", True), ("HUH-H-H", True), ("Hehe.", True),
    ("Yeah, okay.", True), ("(laughs)", True), ("", True),
    ("Wait, stop.", False), ("Huh, what about Mars?", False), ("Hello there", False)])
def test_what_counts_as_a_backchannel_is_read_from_the_words(text, acknowledges):
    from agent.turns import is_backchannel
    words = frozenset(load_config().turns.backchannel_words)
    assert is_backchannel(text, words) is acknowledges


@pytest.mark.parametrize("heard, own", [
    ("The biggest...", True), ("planet Jupiter", True),
    ("Wait, what about Saturn?", False), ("", False)])
def test_the_agents_own_words_coming_back_are_not_a_barge_in(heard, own):
    from agent.turns import is_own_echo
    assert is_own_echo(heard, "The biggest planet in our solar system is Jupiter.") is own
