"""Speech to text: faster-whisper with the bundled Whisper model, int8 on the CPU."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import assets
from config import ASRConfig

ASR_RATE = 16000


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
        self.cfg = cfg
        self.model = WhisperModel(str(assets.whisper_dir(cfg.model)), device="cpu",
                                  compute_type=cfg.compute_type, cpu_threads=cfg.threads)

    def transcribe(self, audio: np.ndarray, *, words: bool = True) -> Transcript:
        """Transcribe mono float32 audio at 16 kHz (use speech.audio.prepare first).
        `words=False` skips the word-timing pass (~0.1 s of a ~0.55 s short turn) and
        returns no `words`: for a reply, the text is all that is needed."""
        audio = np.asarray(audio, np.float32)
        seconds = len(audio) / ASR_RATE
        # Whisper hallucinates words into silence and sub-100 ms blips; don't ask it.
        if len(audio) < ASR_RATE // 10 or float(np.max(np.abs(audio))) < 1e-4:
            return Transcript("", (), seconds)
        segments, _ = self.model.transcribe(
            audio, language="en", beam_size=self.cfg.beam_size, word_timestamps=words,
            condition_on_previous_text=False, vad_filter=False)
        segments = list(segments)
        timed = tuple(Word(w.word.strip(), w.start, w.end, w.probability)
                      for s in segments for w in (s.words or ()))
        return Transcript(" ".join(" ".join(s.text.split()) for s in segments).strip(), timed, seconds)


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation, for comparing transcripts."""
    import re
    return re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))


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
