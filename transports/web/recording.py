"""Recordings made in the page: the Record switch of a call, and two-agent runs.

`Recordings` owns a folder that lives as long as the server and holds the newest
`MAX_KEPT` recordings, each named by a random token (the page downloads
`recordings/<token>.mp4` and its transcript `recordings/<token>.json`). `Recorder` writes one call as it happens: every A/V block
the avatar shows, with the agent's voice and the user's microphone mixed at the time
the block shows them, up to a length limit.
"""
from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from avatar_engine.media import MP4Writer
from speech.audio import RecentAudio

MAX_KEPT = 8                        # older recordings are deleted
MIC_HISTORY_S = 10.0                # blocks show audio at most this long after it was heard
TOKEN = re.compile(r"[0-9a-f]{16}")


class Recordings:
    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="persona-recordings-"))
        self._kept: list[Path] = []
        self._lock = threading.Lock()      # calls record on their own workers' threads

    def new(self) -> tuple[str, Path]:
        """A fresh (token, path); the oldest recording goes when there are too many."""
        token = secrets.token_hex(8)
        path = self.folder / f"{token}.mp4"
        with self._lock:
            self._kept.append(path)
            while len(self._kept) > MAX_KEPT:
                for old in self.folder.glob(f"{self._kept.pop(0).stem}.*"):  # the video, its transcript, …
                    old.unlink(missing_ok=True)
        return token, path

    def path(self, token: str, suffix: str) -> Path | None:
        """A finished file (.mp4 or .json) for a token from the page, or None."""
        video = self.folder / f"{token}.mp4"
        if not TOKEN.fullmatch(token) or suffix not in (".mp4", ".json") or video not in self._kept:
            return None
        path = video.with_suffix(suffix)
        return path if path.is_file() else None

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Recorder:
    """One call's recording. `hear` every mic tick (session rate) before the tick's
    blocks are `write`n; `close` finishes the file."""

    def __init__(self, path: Path, fps: int, size: int, rate: int, start_sample: int, max_s: float):
        self.path, self.rate = path, rate
        self._writer = MP4Writer(path, fps, size, size, rate)
        self._mic = RecentAudio(int(MIC_HISTORY_S * rate), start=start_sample)
        self._max_samples = int(max_s * rate)
        self.start_s = start_sample / rate   # session time of the recording's first sample
        self.samples = 0

    @property
    def full(self) -> bool:
        return self.samples >= self._max_samples

    @property
    def seconds(self) -> float:
        return self.samples / self.rate

    def hear(self, mic: np.ndarray) -> None:
        self._mic.push(mic)

    def write(self, block) -> None:
        """An AVBlock: its frames, its agent voice and the mic audio of its time span."""
        user = self._mic.get(int(round(block.t0 * self.rate)), len(block.audio))
        self._writer.write(block.frames, block.audio + user)
        self.samples += len(block.audio)

    def close(self) -> None:
        self._writer.close()
