"""Speech to text: faster-whisper with a bundled Whisper model, int8 on the CPU.

One model, two ways to read a turn:
- `transcribe(audio)`: faster-whisper's own pipeline, with word timings.
- `transcribe(audio, words=False)`: the text alone, which is all a reply needs, fast.
  faster-whisper pads every input to Whisper's 30 s training window (3000 mel frames),
  so a 2 s question costs the encoder as much as 30 s of speech. CTranslate2's encoder
  takes any length: it reads `asr.window_s` (the turn and silence after it), for a
  third of the cost, hearing as well (bench/asr.py measures both).

A hint (the persona's greeting: its name and topic) goes to Whisper as the text said
before the turn, so "Hi Ada" is not heard as "Hi Eda". The first call of a fresh model
pays for allocations and kernel set-up (1.5-3x a warm call); the constructor pays it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import assets
from config import ASRConfig

ASR_RATE = 16000
FRAMES_PER_S = 100      # Whisper's mel hop is 10 ms
FULL_FRAMES = 3000      # the 30 s window Whisper was trained on
SECONDS_PER_TIMESTAMP = 0.02
# A decoded turn that Whisper itself thinks is no speech (and is unsure of) is dropped,
# as faster-whisper does: its no_speech_threshold and log_prob_threshold defaults.
NO_SPEECH_PROB, LOG_PROB = 0.6, -1.0


@dataclass(frozen=True)
class Word:
    text: str
    start: float   # seconds from the start of the transcribed audio
    end: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[Word, ...]
    seconds: float  # audio duration


class ASR:
    def __init__(self, cfg: ASRConfig):
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        self.cfg = cfg
        self.model = WhisperModel(str(assets.whisper_dir(cfg.model)), device="cpu",
                                  compute_type=cfg.compute_type, cpu_threads=cfg.threads)
        self.tokenizer = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual,
                                   task="transcribe", language="en")
        self.warm_up()

    def transcribe(self, audio: np.ndarray, *, words: bool = True, hint: str = "") -> Transcript:
        """Transcribe mono float32 audio at 16 kHz (use speech.audio.prepare first).
        `words=False` skips the word timings and reads `cfg.window_s`; `hint` is text
        Whisper takes as said just before (names, topic), used when `cfg.hints` is on."""
        hint = hint if self.cfg.hints else ""
        audio = np.asarray(audio, np.float32)
        seconds = len(audio) / ASR_RATE
        # Whisper hallucinates words into silence and sub-100 ms blips; don't ask it.
        if len(audio) < ASR_RATE // 10 or float(np.max(np.abs(audio))) < 1e-4:
            return Transcript("", (), seconds)
        if not words and self.window_frames(seconds) < FULL_FRAMES:
            return Transcript(self._text(audio, hint), (), seconds)
        # Word timings, or a turn too long for one window: faster-whisper's own pipeline
        # (it reads a long turn window by window).
        segments, _ = self.model.transcribe(
            audio, language="en", beam_size=self.cfg.beam_size, word_timestamps=words,
            condition_on_previous_text=False, vad_filter=False, initial_prompt=hint or None)
        segments = list(segments)
        timed = tuple(Word(w.word.strip(), w.start, w.end, w.probability)
                      for s in segments for w in (s.words or ()))
        return Transcript(without_repeats(" ".join(" ".join(s.text.split()) for s in segments).strip()), timed, seconds)

    def window_frames(self, seconds: float) -> int:
        """Mel frames the encoder reads for `seconds` of audio: `cfg.window_s`, or the
        audio plus a second when longer, in whole seconds, at most Whisper's 30 s
        (which sends the turn to faster-whisper's pipeline)."""
        return min(FULL_FRAMES, FRAMES_PER_S * max(math.ceil(self.cfg.window_s), math.ceil(seconds + 1)))

    def _text(self, audio: np.ndarray, hint: str) -> str:
        """Encode the window once; decode greedily with timestamps, keeping the segments
        that start inside the audio. (In a short window Whisper tends to go on past the
        end, repeating itself in segments it times after the audio: those are dropped.)"""
        import ctranslate2
        frames = self.window_frames(len(audio) / ASR_RATE)
        # Pad with digital silence before the log-mel, as Whisper's training windows were:
        # (80, frames) log-mel of the turn, then of silence.
        padded = np.zeros(frames * ASR_RATE // FRAMES_PER_S, np.float32)
        padded[:len(audio)] = audio   # the window holds the turn and a second more
        mel = self.model.feature_extractor(padded)[:, :frames]
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None])))
        previous = self.tokenizer.encode(" " + hint.strip()) if hint.strip() else []
        prompt = self.model.get_prompt(self.tokenizer, previous, without_timestamps=False)
        seconds = len(audio) / ASR_RATE
        # ~3 words a second is ~5 tokens with timestamps; more is a loop.
        new_tokens = 16 + int(12 * seconds)
        result = self.model.model.generate(
            encoded, [prompt], beam_size=self.cfg.beam_size,
            max_length=min(self.model.max_length, len(prompt) + new_tokens),
            return_scores=True, return_no_speech_prob=True, suppress_blank=True, suppress_tokens=[-1],
            max_initial_timestamp_index=50)[0]   # faster-whisper's: a first segment starts within 1 s
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)  # as faster-whisper averages
        if result.no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOG_PROB:
            return ""
        first_time = self.tokenizer.timestamp_begin
        text = []
        for token in tokens:
            if token >= first_time:
                if (token - first_time) * SECONDS_PER_TIMESTAMP >= seconds:
                    break
            elif token < self.tokenizer.eot:
                text.append(token)
        return without_repeats(" ".join(self.tokenizer.decode(text).split()))

    def warm_up(self) -> None:
        """One throwaway decode, so that the first turn of a session is not the slow one."""
        t = np.arange(2 * ASR_RATE) / ASR_RATE
        self.transcribe((0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), words=False)


def without_repeats(text: str) -> str:
    """`text` without sentences that only repeat the one before. In noise Whisper often
    hears a short turn twice, in one segment timed inside the audio ("Why is the sky blue?
    Why is the sky blue?"), or starts it again and runs out of tokens ("… blue? Why is
    the"): a sentence equal to the one before is dropped, and so is a last, unfinished one
    that is the start of it. Pure."""
    import re
    sentences = re.split(r"(?<=[.!?…])\s+", text.strip())
    kept: list[str] = []
    for i, sentence in enumerate(sentences):
        words = normalize_words(sentence)
        before = normalize_words(kept[-1]) if kept else None
        unfinished = i == len(sentences) - 1 and not sentence.endswith((".", "!", "?", "…"))
        if before is not None and words and (words == before or unfinished and before[:len(words)] == words):
            continue
        kept.append(sentence)
    return " ".join(kept)


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation, numbers spelled out, for comparing
    transcripts: Whisper writes "10 plus 5" for "ten plus five"."""
    import re
    words = re.findall(r"[a-z0-9']+", re.sub(r"(\d),(\d)", r"\1\2", text.lower()).replace("-", " "))
    return [w for word in words for w in (number_words(int(word)) if word.isdigit() else [word])]


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> list[str]:
    """n ≥ 0 as words without "and": 342 → three hundred forty two."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + (number_words(n % 10) if n % 10 else [])
    size, name = next(s for s in ((10 ** 6, "million"), (1000, "thousand"), (100, "hundred")) if n >= s[0])
    return number_words(n // size) + [name] + (number_words(n % size) if n % size else [])


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by edit distance."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1] / len(ref)
