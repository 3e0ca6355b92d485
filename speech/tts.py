"""Text to speech: Piper with the bundled voice, streamed sentence by sentence.

Each `SpeechChunk` is one sentence: its PCM, sample rate, and the phonemes with their
times inside the chunk (Piper's alignments), which the avatar turns into visemes.
Synthesis is cancellable between sentences; a sentence takes ~5 % of its duration to
make, so a cancel lands within a few tens of milliseconds.

One bundled voice makes several speakers: `pitch` moves the voice up or down, and
`with_formants` gives a persona its own vocal tract (speech/formants.py), so two
personas differ in timbre, not only in pitch.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import AsyncIterator, Iterator

import numpy as np

import assets
from config import TTSConfig
from speech.formants import shift_formants
from speech.timeline import Phoneme


@dataclass(frozen=True)
class SpeechChunk:
    audio: np.ndarray                   # float32 mono in [-1, 1]
    sample_rate: int
    phonemes: tuple[Phoneme, ...]       # seconds from the start of this chunk

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


def phonemes_from_alignment(alignments, rate: int) -> tuple[Phoneme, ...]:
    """Piper's per-phoneme sample counts → consecutive (symbol, start, end) spans."""
    out, pos = [], 0
    for a in alignments:
        out.append(Phoneme(a.phoneme, pos / rate, (pos + a.num_samples) / rate))
        pos += a.num_samples
    return tuple(out)


def load_piper_voice(model: Path, config: Path, threads: int):
    """Piper's own `PiperVoice.load`, with ONNX Runtime held to `threads` non-spinning
    threads: on two cores its default pool spins against llama.cpp's threads, and a
    first sentence that takes 0.2 s alone took 1 s while the LLM wrote the next one."""
    import onnx
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig
    from piper.patch_voice_with_alignment import add_alignment_output

    graph = onnx.load(str(model))
    with contextlib.suppress(ValueError):  # raised when the voice file already has the output
        add_alignment_output(graph)        # per-phoneme sample counts, for the avatar's visemes
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Its memory arena keeps the largest sentence's buffers for good and grows in steps
    # as longer ones come: +300 MB over 40 sentences (bench/web_soak.py saw the steps in
    # a server's RSS). Without it memory stays flat, synthesis ~10 % slower.
    options.enable_cpu_mem_arena = False
    session = onnxruntime.InferenceSession(graph.SerializeToString(), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=PiperConfig.from_dict(json.loads(config.read_text("utf-8"))))


class TTS:
    def __init__(self, cfg: TTSConfig):
        from piper import SynthesisConfig
        self.cfg = cfg
        model, config = assets.piper_voice(cfg.voice)
        self.voice = load_piper_voice(model, config, cfg.threads)
        self.sample_rate = self.voice.config.sample_rate
        self._syn = SynthesisConfig(length_scale=cfg.length_scale, volume=cfg.volume)
        self.formants: float | None = None   # see with_formants

    def with_formants(self, semitones: float | None) -> "TTS":
        """This TTS, sharing its loaded voice, with every sentence's formants `semitones`
        above the voice's own (below when negative), whatever the pitch. None: the
        formants move with the pitch, as when one speaker's recording is sped up."""
        voiced = copy.copy(self)
        voiced.formants = semitones
        return voiced

    def stream(self, text: str, cancel: threading.Event | None = None, *,
               pitch: float = 0.0) -> Iterator[SpeechChunk]:
        """Sentences of `text` as they are synthesized; stops early once `cancel` is set.

        `pitch` (semitones) gives one bundled voice several: the sentence is spoken
        `factor` times slower and labelled `factor` times the voice's rate, so it plays
        back as long as before, higher (or lower) by `pitch` semitones, formants and
        all; the formants are then moved back to `self.formants`, if set."""
        factor = 2 ** (pitch / 12)
        formant_factor = 1.0 if self.formants is None else 2 ** ((self.formants - pitch) / 12)
        syn = self._syn if pitch == 0 else replace(self._syn, length_scale=self.cfg.length_scale * factor)
        rate = round(self.sample_rate * factor)
        for chunk in self.voice.synthesize(text, syn, include_alignments=True):
            if cancel is not None and cancel.is_set():
                return
            audio = shift_formants(chunk.audio_float_array, rate, formant_factor)
            phonemes = phonemes_from_alignment(chunk.phoneme_alignments or (), rate)
            yield SpeechChunk(audio, rate, phonemes)

    def synthesize(self, text: str, *, pitch: float = 0.0) -> SpeechChunk:
        """All of `text` as one chunk (fixtures, tests, benchmarks)."""
        parts = list(self.stream(text, pitch=pitch))
        if not parts:
            return SpeechChunk(np.zeros(0, np.float32), self.sample_rate, ())
        phonemes, offset = [], 0.0
        for p in parts:
            phonemes += [Phoneme(ph.symbol, ph.start + offset, ph.end + offset) for ph in p.phonemes]
            offset += p.seconds
        return SpeechChunk(np.concatenate([p.audio for p in parts]), parts[0].sample_rate, tuple(phonemes))

    async def astream(self, text: str, *, pitch: float = 0.0) -> AsyncIterator[SpeechChunk]:
        """Async `stream`: each sentence is made in a worker thread; cancelling the
        consuming task stops synthesis after the sentence in progress."""
        cancel = threading.Event()
        it = self.stream(text, cancel, pitch=pitch)
        done = object()
        try:
            while True:
                chunk = await asyncio.to_thread(next, it, done)
                if chunk is done:
                    return
                yield chunk
        finally:
            cancel.set()
