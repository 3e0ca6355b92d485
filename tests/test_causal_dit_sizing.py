"""The meta-device size report agrees with a real tiny stream, and covers the large presets."""
import pytest
import torch

from avatar_engine.causal_dit.model import PRESETS, CausalDiT, preset
from avatar_engine.causal_dit.sizing import size_report
from avatar_engine.causal_dit.stream import CausalStreamer, StreamConfig


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_report_matches_a_real_stream():
    cfg, stream = preset("tiny"), StreamConfig(frames_per_block=3, window=6, steps=2, pin_first_block=True)
    report = size_report(cfg, stream, 32, 32, bytes_per_value=4)
    torch.manual_seed(0)
    model = CausalDiT(cfg).eval()
    streamer = CausalStreamer(model, stream)
    zeros = model.silent_tokens(1, 3)
    with torch.no_grad():
        streamer.reset(torch.randn(1, cfg.latent_channels, 4, 4))
        for n in range(4):
            streamer.generate_block(n, zeros, zeros)
    assert report.kv_bytes == streamer.cache_bytes()
    assert report.params == sum(p.numel() for p in model.parameters())


def test_large_presets_on_meta():
    stream = StreamConfig(frames_per_block=3, window=6, steps=4)
    r5 = size_report(PRESETS["wan2.2-ti2v-5b"], stream, 704, 1280)
    r14 = size_report(PRESETS["wan2.2-s2v-14b"], stream, 480, 832)
    # backbone of the papers' bases plus a second cross-attention (talk + listen instead of text)
    assert 5.5e9 < r5.params < 6.5e9 and 17.5e9 < r14.params < 19.5e9
    assert r5.tokens_per_frame == 44 * 80 // 4 and r14.tokens_per_frame == 60 * 104 // 4
    # one forward ≈ 2 · params · tokens (matmuls) plus attention; the counter sees both
    for r in (r5, r14):
        assert r.flops_per_forward > 2 * 0.8 * r.params * 3 * r.tokens_per_frame
