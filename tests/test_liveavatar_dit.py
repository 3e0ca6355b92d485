"""The Live Avatar DiT equals the reference code (fixture from tools/liveavatar_fixture_dit.py).

The fixture holds a tiny CausalWanModel_S2V with every parameter random, a PEFT LoRA,
inputs and the reference's outputs over 12 streaming blocks (3 clips): the ring wraps
after block 3, the reference rolls once cur + rd > 30, the adaptive sink swaps at clip 1.
"""
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from avatar_engine.causal_dit.liveavatar import LiveAvatarConfig, LiveAvatarStreamer, flow_match_schedule
from avatar_engine.causal_dit.lora import merge_lora
from avatar_engine.causal_dit.model import CausalDiT, preset
from avatar_engine.causal_dit.wan_keys import convert_state_dict, reference_shapes

FIXTURE = Path(__file__).parent / "fixtures" / "liveavatar" / "dit"
TOL = 1e-5


@pytest.fixture(scope="module")
def case():
    with safe_open(str(FIXTURE / "case.safetensors"), "pt") as f:
        meta = f.metadata()
    return load_file(FIXTURE / "case.safetensors"), meta


@pytest.fixture(scope="module")
def model(case):
    tensors, meta = case
    reference = load_file(FIXTURE / "reference_weights.safetensors")
    assert merge_lora(reference, load_file(FIXTURE / "lora.safetensors"), float(meta["lora_alpha"])) == 38
    cfg = preset("liveavatar-tiny")
    m = CausalDiT(cfg)
    m.load_state_dict(convert_state_dict(reference, cfg), strict=True)
    return m.eval()


def close(a, b):
    return (a - b).abs().max().item() <= TOL


def test_tiny_preset_is_the_fixture_config(case):
    ref = json.loads(case[1]["reference_config"])
    cfg = preset("liveavatar-tiny")
    assert (cfg.dim, cfg.ffn_dim, cfg.heads, cfg.layers, cfg.text_dim, cfg.audio_dim, cfg.freq_dim,
            list(cfg.audio_inject_layers)) == (ref["dim"], ref["ffn_dim"], ref["num_heads"], ref["num_layers"],
                                               ref["text_dim"], ref["audio_dim"], ref["freq_dim"],
                                               ref["audio_inject_layers"])


def test_lora_merge_equals_peft(case):
    tensors, meta = case
    reference = load_file(FIXTURE / "reference_weights.safetensors")
    merge_lora(reference, load_file(FIXTURE / "lora.safetensors"), float(meta["lora_alpha"]))
    merged = {k[len("merged."):]: v for k, v in tensors.items() if k.startswith("merged.")}
    assert len(merged) == 38
    assert all(close(reference[k], v) for k, v in merged.items())


def test_schedule_is_diffusers_bit_for_bit(case):
    timesteps, sigmas = flow_match_schedule(4, 3.0)
    assert torch.equal(timesteps, case[0]["timesteps"]) and torch.equal(sigmas, case[0]["sigmas"])
    assert [round(float(t), 1) for t in timesteps] == [1000.0, 857.7, 602.2, 8.9]


def test_conversion_covers_the_reference_keys_exactly():
    reference = load_file(FIXTURE / "reference_weights.safetensors")
    assert {k: tuple(v.shape) for k, v in reference.items()} == reference_shapes(preset("liveavatar-tiny"))


def run_stream(model, tensors, blocks, record):
    meta_blocks = 4
    rd = tensors["relative_distance"].tolist()            # drawn per call: block n, step i → 4n + i
    streamer = LiveAvatarStreamer(model, LiveAvatarConfig(seed=42), relative_distance=lambda n, i: rd[4 * n + i])
    to_ours = lambda lat: lat.permute(0, 2, 1, 3, 4)          # (B, C, F, H, W) → (B, F, C, H, W)
    streamer.reset(to_ours(tensors["reference_latent"])[:, 0], to_ours(tensors["motion_latents"]),
                   tensors["prompt_states"][None])
    record("sink", 0, streamer.sink)
    with torch.no_grad():
        for n in range(blocks):
            clip, pos = divmod(n, meta_blocks)
            feats = tensors[f"audio_features.clip{clip}"][..., pos * 12:(pos + 1) * 12].permute(0, 3, 1, 2)
            audio = streamer.audio(feats)
            record("audio", n, audio)
            x = streamer.clip_noise(n)
            for i in range(4):
                x, v = streamer.denoise_step(i, n, x, audio)
                record("velocity", (n, i), v)
            record("latent", n, x)
            streamer.finish_block(n, x)
            if n == meta_blocks - 1:
                record("sink", 1, streamer.sink)
    return streamer


def test_streaming_equals_the_reference(model, case):
    tensors, _ = case
    worst = {}

    def record(kind, key, value):
        if kind == "sink":
            for layer, (k, v) in enumerate(value.kv):
                for name, ours in (("k", k), ("v", v)):
                    ref = tensors[f"sink.clip{key}.layer{layer}.{name}"]          # (1, L, heads, hd)
                    worst[f"sink{key}"] = max(worst.get(f"sink{key}", 0), (ours - ref.flatten(2)).abs().max().item())
        elif kind == "audio" and key == 0:
            tokens, glob = value
            worst["audio"] = max((tokens - tensors["audio_tokens.block0"]).abs().max().item(),
                                 (glob - tensors["audio_global.block0"][:, :, 0]).abs().max().item())
        elif kind == "velocity":
            n, i = key
            ref = tensors[f"velocity.block{n}.step{i}"].transpose(0, 1)[None]
            worst[f"v{n}.{i}"] = (value - ref).abs().max().item()
        elif kind == "latent":
            ref = tensors[f"latent.block{key}"].transpose(0, 1)[None]
            worst[f"x{key}"] = (value - ref).abs().max().item()

    run_stream(model, tensors, 12, record)
    assert len([k for k in worst if k.startswith("v")]) == 48
    bad = {k: v for k, v in worst.items() if not v <= TOL}
    assert not bad, f"beyond {TOL}: {bad}"


def test_load_liveavatar_reads_shards_and_merges_the_lora(model, tmp_path):
    from safetensors.torch import save_file
    from avatar_engine.causal_dit.checkpoint import CheckpointError, load_liveavatar

    reference = load_file(FIXTURE / "reference_weights.safetensors")
    keys = sorted(reference)
    save_file({k: reference[k] for k in keys[::2]}, str(tmp_path / "diffusion_pytorch_model-00001-of-00002.safetensors"))
    save_file({k: reference[k] for k in keys[1::2]}, str(tmp_path / "diffusion_pytorch_model-00002-of-00002.safetensors"))
    loaded = load_liveavatar(tmp_path, FIXTURE / "lora.safetensors", device="cpu", cfg=preset("liveavatar-tiny"),
                             lora_alpha=2.0)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert next(loaded.parameters()).dtype == torch.float32

    (tmp_path / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_liveavatar(tmp_path, device="cpu", cfg=preset("liveavatar-tiny"))


def test_conversion_maps_the_published_key_list_onto_the_full_model():
    """The full-size Wan2.2-S2V-14B transformer and LoRA key/shape list (tools/liveavatar_keys.py)
    converts onto CausalDiT(preset("liveavatar-14b")) exactly, on the meta device."""
    import gzip

    from avatar_engine.causal_dit.liveavatar_files import lora_targets
    from avatar_engine.causal_dit.lora import lora_pairs
    from avatar_engine.causal_dit.wan_keys import converted_shapes, dit_config, wan_config

    published = json.loads(gzip.open(FIXTURE.parent / "wan_s2v_14b_keys.json.gz").read())
    transformer = {k: tuple(s) for k, s in published["transformer"]}
    cfg = preset("liveavatar-14b")
    assert len(transformer) == 1260 and reference_shapes(cfg) == transformer
    config = published["transformer_config"]                      # the published config.json ↔ the preset
    assert dit_config(config) == cfg and all(config[k] == v for k, v in wan_config(cfg).items() if k in config)
    tiny = preset("liveavatar-tiny")
    assert dataclasses.replace(dit_config(wan_config(tiny)), name=tiny.name) == tiny
    meta = {k: torch.empty(s, device="meta") for k, s in transformer.items()}
    lora = {k: torch.empty(s, device="meta") for k, s in published["lora"]}
    assert len(lora_pairs(lora)) == 448 and sorted(lora_pairs(lora)) == sorted(lora_targets(transformer))
    assert merge_lora(meta, lora, float(published["lora_config"]["alpha"])) == 448
    converted = convert_state_dict(meta, cfg)
    assert {k: tuple(v.shape) for k, v in converted.items()} == converted_shapes(cfg)
    with torch.device("meta"):
        model = CausalDiT(cfg)
    model.load_state_dict(converted, strict=True, assign=True)


def test_bf16_model_streams_close_to_the_fp32_reference(model, case):
    """The GPU dtype path (bf16 weights, fp32 modulation/head/audio encoder as the reference)
    runs end to end on the CPU and stays near the fp32 reference."""
    import copy

    tensors, _ = case
    half = copy.deepcopy(model).to(torch.bfloat16)
    worst = []

    def record(kind, key, value):
        if kind == "velocity":
            n, i = key
            ref = tensors[f"velocity.block{n}.step{i}"].transpose(0, 1)[None]
            assert value.dtype == torch.bfloat16
            worst.append(((value.float() - ref).abs().max() / ref.abs().max()).item())

    run_stream(half, tensors, 2, record)
    assert len(worst) == 8 and max(worst) < 0.03, worst


def test_stream_state_is_bounded(model):
    """One sink and a one-clip ring per step, allocated once: the bytes held never grow."""
    streamer = LiveAvatarStreamer(model, LiveAvatarConfig())
    g = torch.Generator().manual_seed(0)
    streamer.reset(torch.randn(1, 16, 16, 8, generator=g), torch.randn(1, 19, 16, 16, 8, generator=g),
                   torch.randn(1, 3, 16, generator=g))
    held = []
    with torch.no_grad():
        for n in range(14):
            streamer.generate_block(n, streamer.audio(torch.randn(1, 12, 25, 16, generator=g)))
            held.append(streamer.cache_bytes())
    layers, dim, frame_tokens, sink_tokens = 3, 32, 32, 32 + 48     # reference + FramePack tokens
    ring = 12 * frame_tokens * dim * 4 * 2 * layers                  # one clip of K and V, fp32
    assert held == [sink_tokens * dim * 4 * 2 * layers + 4 * ring] * 14
    assert all(ring.slot_frame == list(range(36, 42)) + list(range(30, 36)) for ring in streamer.rings.values())


def test_full_size_streams_at_720x400_on_meta():
    """The full liveavatar-14b model streams a 720×400 block (latent 90×50, not a multiple of
    8) on the meta device: every shape fits, and the per-step cache is one clip."""
    cfg = preset("liveavatar-14b")
    with torch.device("meta"):
        model = CausalDiT(cfg).to(torch.bfloat16)
        streamer = LiveAvatarStreamer(model, LiveAvatarConfig())
        streamer.reset(torch.empty(1, 16, 90, 50), torch.empty(1, 19, 16, 90, 50), torch.empty(1, 20, 4096))
        audio = streamer.audio(torch.empty(1, 12, 25, 1024))
        x, v = streamer.denoise_step(0, 0, streamer.clip_noise(0), audio)
    assert x.shape == v.shape == (1, 3, 16, 90, 50) and v.dtype == torch.bfloat16
    assert audio[0].shape == (1, 3, 5, 5120) and audio[1].shape == (1, 3, 5120)
    sink_tokens = 45 * 25 + 45 * 25 + 22 * 12 + 4 * 11 * 6       # reference + FramePack 1×, 2×, 4×
    assert streamer.sink.kv[0][0].shape == (1, sink_tokens, 5120) and sink_tokens <= 3000  # the reference's cond cache
    assert streamer.rings[0].k[0].shape == (1, 12, 45 * 25, 5120)
