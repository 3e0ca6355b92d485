"""Two personas talking, recorded through the real CLI: a playable side-by-side MP4 with
both voices, and a transcript for each persona. The transcript must read as a
conversation: nobody cut off, the voices never at once, on the topic, nothing said twice,
and two voices that sound apart. On the real local LLM, one thread per persona's server
(the two share two cores)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from agent.persona import load_persona
from avatar_engine.media import read_mp4
from speech.voice_measures import compare_voices
from transports.two_agents import on_topic, spoken_replies

ROOT = Path(__file__).resolve().parents[1]
A, B = "ada", "juno"
TURNS = 4  # greeting → B → A → B → A: both hand the turn over, twice
TOPIC = "the moon"
TOPIC_WORDS = re.compile(r"\b(moons?|lunar|space|earth|orbits?|craters?|tides?|astronauts?|sky|night|sun|"
                         r"planets?|gravity|stars?|apollo|phases?|rockets?|surface|landings?|rocks?)\b", re.IGNORECASE)
# Both voices at once, in all: at most one duck's worth (speech over a voice pauses it).
MAX_OVERLAP_S = 0.3


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    out = tmp_path_factory.mktemp("two") / "talk.mp4"
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["llm"]["threads"] = 1
    config = out.with_name("config.yaml")
    config.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, str(ROOT / "app.py"), "--config", str(config), "--two-agents", A, B,
                        "--turns", str(TURNS), "--topic", TOPIC, "--output", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return out, json.loads(out.with_suffix(".json").read_text())


def test_mp4_has_both_avatars_and_the_right_length(recording):
    out, result = recording
    frames, audio, rate, fps = read_mp4(out)
    assert fps == 25 and frames.shape[1:] == (512, 1024, 3)   # side by side
    assert abs(len(frames) / fps - len(audio) / rate) < 0.1
    # both halves are alive: each avatar moves during the recording
    for half in (frames[:, :, :512], frames[:, :, 512:]):
        assert np.abs(half[::25].astype(int) - half[0].astype(int)).mean(axis=(1, 2, 3)).max() > 0.5


def test_both_voices_are_in_the_mix(recording):
    out, result = recording
    _, audio, rate, _ = read_mp4(out)
    a_turns, b_turns = result["a"]["turns"], result["b"]["turns"]
    assert len(a_turns) + len(b_turns) >= 2 and b_turns, (a_turns, b_turns)
    for turn in a_turns + b_turns:      # every reply is heard where the transcript says
        t = turn["first_audio_at"]
        assert t is not None and turn["agent_text"]
        assert np.abs(audio[int(t * rate):int((t + 0.5) * rate)]).max() > 0.05
    # B answered A's opening, then A answered B: each heard the other
    assert b_turns[0]["user_text"] and b_turns[0]["user_start"] < (a_turns[0]["user_start"] if a_turns else 1e9)


def test_each_persona_keeps_its_own_prompt_evaluated(recording):
    # Each persona has its own LLM server, so a turn evaluates only what is new: the
    # other's last reply, ~30-60 tokens, about 1.3 s after the ASR for the 1.5B default
    # on a quiet 2-core machine (0.2 s for Gemma 270M). On one shared server every turn
    # re-read the other persona's replaced prompt and history (~400 tokens): several
    # times that (1.5-2.2 s with Gemma, which reads prompts ~6x faster).
    _, result = recording
    for turn in result["a"]["turns"] + result["b"]["turns"]:
        # what is new is the other's reply: ~0.05 s a word on one thread of this Xeon,
        # where re-reading the ~400-token prompt would take 5 s and more
        assert turn["llm_first_token_s"] - turn["asr_s"] < 1.5 + 0.05 * len(turn["user_text"].split()), turn


def test_nobody_is_cut_off_and_the_voices_take_turns(recording):
    _, result = recording
    turns = spoken_replies(result)
    assert len(turns) >= TURNS, turns
    assert not [t for t in turns if t["interrupted"] or t["barge_in_at"] is not None], turns
    both = sum(max(0.0, min(a1, b1) - max(a0, b0))
               for a0, a1 in result["a"]["voice"] for b0, b1 in result["b"]["voice"])
    assert both < MAX_OVERLAP_S and result["overlap_s"] == pytest.approx(both), result["overlap_s"]
    # each reply begins after the other persona has stopped speaking
    for t in turns:
        assert t["first_audio_at"] >= t["user_end"], t


def test_replies_stay_on_the_topic(recording):
    _, result = recording
    said = [t["agent_text"] for t in spoken_replies(result)]
    mention = [s for s in said if TOPIC_WORDS.search(s)]
    assert len(mention) * 2 >= len(said), said           # at least half mention the moon
    # the JSON's own verdict: a word shared with the topic or the line answered
    assert len(result["on_topic"]["replies"]) == len(said) and result["on_topic"]["share"] >= 0.5, result["on_topic"]


def test_the_on_topic_verdict_looks_for_shared_words():
    said = ["The moon's craters are old.", "Are those craters from comets?", "I had soup for lunch."]
    assert on_topic(said, "the moon", "Hi! Let's talk about the moon.") == {"replies": [True, True, False],
                                                                            "share": 0.667}
    assert on_topic(["That is what they said."], "the moon", "Hello.")["replies"] == [False]  # common words only
    assert on_topic([], "the moon", "Hello.") == {"replies": [], "share": 0.0}


def test_no_reply_repeats_an_earlier_one(recording):
    _, result = recording
    said = [t["agent_text"] for t in spoken_replies(result)]
    words = [" ".join(re.findall(r"[a-z']+", s.lower())) for s in said]
    assert len(set(words)) == len(words), said            # word for word, either persona


def test_the_two_personas_sound_apart_in_the_recording(recording):
    """Measured in the mix, where each voice plays: Ada higher than Juno by about the
    pitch setting, her formants lower (not one voice at two speeds)."""
    out, result = recording
    _, audio, rate, _ = read_mp4(out)
    voices = compare_voices(audio, rate, result["a"]["voice"], result["b"]["voice"])
    a, b = load_persona(A), load_persona(B)
    pitch_a, pitch_b = voices["pitch_hz"]
    assert 12 * np.log2(pitch_a / pitch_b) == pytest.approx(a.voice_pitch - b.voice_pitch, abs=1.5), voices
    assert voices["formants_b_above_a"] >= 1.5, voices
