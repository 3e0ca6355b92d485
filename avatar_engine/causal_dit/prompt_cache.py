"""umT5 prompt states cached per prompt, so a session never keeps the 5.7 B-parameter text
encoder resident: a persona's prompt is encoded once (the encoder can be freed after) and
read from disk ever after. The DiT's own `prompt_context` projects the states.

    cache = PromptCache(folder)
    states = cache.get(prompt, encode=encoder)   # (S, 4096): encoded once if missing, stored
    states = cache.get(prompt)                   # from disk, or a one-line PromptCacheError

The folder holds at most `max_entries` prompts; the least recently used go first.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file


class PromptCacheError(RuntimeError):
    """A prompt that cannot be served, phrased as one line."""


class PromptCache:
    def __init__(self, folder: str | Path, max_entries: int = 64):
        self.folder, self.max_entries = Path(folder), max_entries

    def path(self, prompt: str) -> Path:
        return self.folder / f"{hashlib.sha256(prompt.encode()).hexdigest()[:32]}.safetensors"

    def get(self, prompt: str, encode: Callable[[str], torch.Tensor] | None = None) -> torch.Tensor:
        """The prompt's umT5 states (S, Dt), from the cache or, once, from `encode`."""
        path = self.path(prompt)
        if path.is_file():
            with safe_open(str(path), framework="pt") as f:
                if f.metadata().get("prompt") == prompt:
                    path.touch()                      # least recently used goes first
                    return f.get_tensor("states")
        if encode is None:
            raise PromptCacheError(f"prompt {prompt[:40]!r} has no cached umT5 states in {self.folder}; "
                                   f"encode it once with the text encoder")
        states = encode(prompt)
        if states.ndim == 3 and states.shape[0] == 1:
            states = states[0]
        if states.ndim != 2:
            raise PromptCacheError(f"the text encoder gave states of shape {tuple(states.shape)}, expected (tokens, width)")
        self.folder.mkdir(parents=True, exist_ok=True)
        save_file({"states": states.detach().float().cpu().contiguous()}, str(path), metadata={"prompt": prompt})
        self._evict()
        return states

    def _evict(self):
        entries = sorted(self.folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        for old in entries[: max(0, len(entries) - self.max_entries)]:
            old.unlink()
