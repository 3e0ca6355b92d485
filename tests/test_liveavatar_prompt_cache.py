"""Prompt states are encoded once per prompt, read back exactly, bounded, and feed the DiT."""
import os
import time

import pytest
import torch

from avatar_engine.causal_dit.model import CausalDiT, preset
from avatar_engine.causal_dit.prompt_cache import PromptCache, PromptCacheError


class CountingEncoder:
    """Stands in for umT5-XXL (11 GB of weights): deterministic states per prompt."""

    def __init__(self, width):
        self.width, self.calls = width, 0

    def __call__(self, prompt):
        self.calls += 1
        g = torch.Generator().manual_seed(len(prompt))
        return torch.randn(1, len(prompt.split()), self.width, generator=g)


def test_encoded_once_then_read_from_disk(tmp_path):
    cfg = preset("liveavatar-tiny")
    encoder = CountingEncoder(cfg.text_dim)
    prompt = "A woman talks to the camera in a bright studio."
    first = PromptCache(tmp_path).get(prompt, encode=encoder)
    again = PromptCache(tmp_path).get(prompt, encode=encoder)       # a new session: no encoder call
    assert encoder.calls == 1 and torch.equal(first, again) and first.shape == (10, cfg.text_dim)
    assert PromptCache(tmp_path).get(prompt).shape == first.shape   # no encoder needed at all
    context = CausalDiT(cfg).prompt_context(again[None])
    assert context.shape == (1, cfg.text_len, cfg.dim)


def test_missing_prompt_without_encoder_is_one_line(tmp_path):
    with pytest.raises(PromptCacheError, match="no cached umT5 states") as e:
        PromptCache(tmp_path).get("never encoded")
    assert "\n" not in str(e.value)


def test_the_cache_is_bounded_least_recently_used_first(tmp_path):
    cache, encoder = PromptCache(tmp_path, max_entries=2), CountingEncoder(4)
    for i, prompt in enumerate(["one", "two two", "three three three"]):
        cache.get(prompt, encode=encoder)
        os.utime(cache.path(prompt), (time.time() + i, time.time() + i))
    assert len(list(tmp_path.iterdir())) == 2 and not cache.path("one").exists()
