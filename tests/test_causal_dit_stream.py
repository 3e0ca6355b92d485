"""Streaming with the KV cache gives what the training-time block-causal forward gives;
state stays bounded; RAPR makes late blocks see what early blocks saw."""
import pytest
import torch

from avatar_engine.causal_dit.model import CausalDiT, apply_rope, preset
from avatar_engine.causal_dit.positions import PositionScheme, time_positions
from avatar_engine.causal_dit.sequence import BlockCausalContext
from avatar_engine.causal_dit.stream import CausalStreamer, StreamConfig


pytestmark = pytest.mark.usefixtures("one_torch_thread")
GRID = (4, 4)   # latent height, width → 4 tokens per frame


def tiny_model(seed=0):
    torch.manual_seed(seed)
    model = CausalDiT(preset("tiny")).eval()
    with torch.no_grad():   # untrained audio branches start at zero; make them matter here
        for block in model.blocks:
            for attn in (block.talk_attn, block.listen_attn):
                attn.o.weight.normal_(0, 0.2)
    return model


def random_tokens(model, blocks, frames, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (blocks, 1, frames, model.cfg.audio_tokens, model.cfg.dim)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def stream_and_reference(cfg: StreamConfig, n_blocks=5, reference_window=None):
    """Max |streamed velocity − block-causal whole-sequence velocity| over all blocks and steps."""
    model = tiny_model()
    ch, c = model.cfg.latent_channels, cfg.frames_per_block
    reference = torch.randn(1, ch, *GRID, generator=torch.Generator().manual_seed(2))
    talk, listen = random_tokens(model, n_blocks, c)
    streamer = CausalStreamer(model, cfg)
    worst = 0.0
    with torch.no_grad():
        streamer.reset(reference)
        inputs, clean = [], []   # inputs[n][i]: the latent block n had at step i
        for n in range(n_blocks):
            x, steps = streamer.initial_noise(n), []
            for i in range(cfg.steps):
                x_next, v = streamer.denoise_step(n, i, x, talk[n], listen[n])
                steps.append((x, v))
                x = x_next
            streamer.finish_block(n, x, talk[n], listen[n])
            inputs.append(steps)
            clean.append(x)
        silent = model.silent_tokens(1, 1)
        for n in range(n_blocks):
            for i, (x, v_stream) in enumerate(inputs[n]):
                sigma = streamer.sigmas[i]
                if cfg.cache_mode == "timestep_forcing":   # context: earlier blocks at this step
                    context, ctx_sigma = [inputs[m][i][0] for m in range(n)], sigma
                else:                                       # context: earlier blocks, clean
                    context, ctx_sigma = clean[:n], 0.0
                frames = torch.cat([reference[:, None], *context, x], 1)
                sig = torch.tensor([[0.0] + [ctx_sigma] * (n * c) + [sigma] * c])
                t_seq = torch.cat([silent, *talk[:n + 1]], 1)
                l_seq = torch.cat([silent, *listen[:n + 1]], 1)
                mask = BlockCausalContext(frames.shape[1], c, reference_window or cfg.window,
                                          cfg.pin_first_block, cfg.positions, model.rope, GRID)
                v_full = model(frames, sig, t_seq, l_seq, mask)[:, -c:]
                worst = max(worst, (v_full - v_stream).abs().max().item())
    return worst


CASES = {
    "timestep_forcing/rapr/euler": StreamConfig(frames_per_block=2, window=3, steps=3,
                                                positions=PositionScheme("rapr", rapr_cap=4)),
    "timestep_forcing/rolling/x0_renoise/pinned": StreamConfig(
        frames_per_block=2, window=4, steps=2, step_rule="x0_renoise", pin_first_block=True,
        positions=PositionScheme("rolling", rolling_gap=2)),
    "clean_refresh/absolute": StreamConfig(frames_per_block=3, window=4, steps=2, cache_mode="clean_refresh",
                                           positions=PositionScheme("absolute")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_streaming_equals_block_causal_forward(name):
    worst = stream_and_reference(CASES[name])
    print(f"{name}: max abs diff {worst:.2e}")
    assert worst <= 1e-5


def test_comparison_detects_a_wrong_window():
    # The same comparison with a reference that keeps one frame less must disagree.
    assert stream_and_reference(CASES["timestep_forcing/rapr/euler"], reference_window=2) > 1e-3


def run_blocks(streamer, model, n_blocks, on_block=None):
    talk, listen = random_tokens(model, 1, streamer.cfg.frames_per_block)
    with torch.no_grad():
        for n in range(n_blocks):
            if on_block:
                on_block(n)
            # identical content every block: same starting noise, same audio
            streamer.generate_block(n, talk[0], listen[0], noise=streamer.initial_noise(0))


def test_cache_bytes_constant_over_1000_blocks():
    model = tiny_model()
    cfg = StreamConfig(frames_per_block=3, window=6, steps=2, pin_first_block=True)
    streamer = CausalStreamer(model, cfg)
    streamer.reset(torch.randn(1, model.cfg.latent_channels, *GRID))
    sizes = {}
    run_blocks(streamer, model, 1001, on_block=lambda n: sizes.__setitem__(n, streamer.cache_bytes()))
    print(f"cache bytes after block 10: {sizes[11]}, after block 1000: {sizes[1000]}")
    assert sizes[11] == sizes[1000] > 0
    assert [len(c.window_frames) for c in streamer.caches] == [6, 6]


def sink_view_at(mode: str, blocks: list[int]):
    """Layer-0 time positions, rotated queries/sink keys and sink logits at the given blocks."""
    model = tiny_model()
    d = 4
    cfg = StreamConfig(frames_per_block=2, window=4, steps=1, positions=PositionScheme(mode, rapr_cap=d))
    streamer = CausalStreamer(model, cfg)
    streamer.reset(torch.randn(1, model.cfg.latent_channels, *GRID))
    attn = model.blocks[0].self_attn
    seen, wanted = {}, set(blocks)
    current = {}

    def recording_attend(q, q_angles, k, v, k_angles, _original=attn.attend):
        if current.get("n") in wanted:
            seen[current["n"]] = (q, q_angles, k, k_angles)
        return _original(q, q_angles, k, v, k_angles)

    attn.attend = recording_attend

    def before(n):
        current["n"] = n
        if n in wanted:
            cache = streamer.caches[0]
            seen[("pos", n)] = time_positions(cfg.positions, cache.sink_frames, cache.window_frames,
                                              streamer.block_frames(n), cfg.window)

    run_blocks(streamer, model, max(blocks) + 1, on_block=before)
    views = {}
    n_tok = GRID[0] * GRID[1] // 4
    heads = model.cfg.heads
    for n in blocks:
        q, qa, k, ka = seen[n]
        split = lambda t: t.unflatten(-1, (heads, -1)).transpose(1, 2)
        q_rot = apply_rope(split(q), qa)
        sink_rot = apply_rope(split(k), ka)[:, :, :n_tok]         # the sink frame's keys come first
        views[n] = (torch.cat(seen[("pos", n)]), q_rot, sink_rot, q_rot @ sink_rot.transpose(-1, -2))
    return views, d


def test_rapr_block_1000_sees_what_block_d_plus_1_saw():
    views, d = sink_view_at("rapr", [5, 1000])
    pos_a, q_a, sink_a, logits_a = views[d + 1]
    pos_b, q_b, sink_b, logits_b = views[1000]
    assert torch.equal(pos_a, pos_b)
    assert pos_b.max() <= d + 2            # never beyond D + block
    assert torch.equal(sink_a, sink_b) and torch.equal(q_a, q_b)
    assert torch.equal(logits_a, logits_b)


def test_absolute_positions_do_drift():
    # The counterpart that shows the RAPR test can fail: absolute positions change the logits.
    views, d = sink_view_at("absolute", [5, 1000])
    assert not torch.equal(views[5][0], views[1000][0])
    assert (views[5][3] - views[1000][3]).abs().max() > 1e-3


def test_adaptive_sink_swaps_the_reference_for_a_generated_frame():
    model = tiny_model()
    cfg = StreamConfig(frames_per_block=2, window=4, steps=2, adaptive_sink=True, pin_first_block=True)
    streamer = CausalStreamer(model, cfg)
    reference = torch.randn(1, model.cfg.latent_channels, *GRID)
    talk, listen = random_tokens(model, 1, 2)
    with torch.no_grad():
        streamer.reset(reference)
        before = [c.layer_kv(0)[0][:, :1].clone() for c in streamer.caches]
        x0 = streamer.generate_block(0, talk[0], listen[0])
        expected = streamer._clean_kv(x0[:, -1])[0][0]          # layer-0 keys of the last frame, clean
    for cache, old in zip(streamer.caches, before):
        k = cache.layer_kv(0)[0]
        assert cache.sink_frames == [0, 1, 2]                    # reference slot + pinned block 0
        assert torch.equal(k[:, :1], expected) and not torch.equal(k[:, :1], old)


def test_history_corruption_touches_only_what_blocks_read_from_history():
    model = tiny_model()
    frames = torch.randn(1, 7, model.cfg.latent_channels, *GRID)    # sink + 3 blocks of 2
    sigma = torch.rand(1, 7)
    talk, listen = (torch.randn(1, 7, model.cfg.audio_tokens, model.cfg.dim) for _ in range(2))
    outputs = []
    for noise in (0.0, 0.5):
        ctx = BlockCausalContext(7, 2, 4, False, PositionScheme("absolute"), model.rope, GRID,
                                 history_noise=noise, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            outputs.append(model(frames, sigma, talk, listen, ctx))
    clean, corrupted = outputs
    assert torch.equal(clean[:, :3], corrupted[:, :3])      # the sink and block 0 read no history
    assert (clean[:, 3:] - corrupted[:, 3:]).abs().max() > 1e-3
