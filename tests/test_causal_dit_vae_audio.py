"""Streaming VAE decode equals whole decode; audio reaches the right branch; the bundled
Whisper encoder gives features block by block."""
import numpy as np
import pytest
import torch

from avatar_engine.causal_dit.audio import (AudioEncoderError, AudioFeatureStream, Wav2Vec2Encoder,
                                            WhisperEncoder, mask_gates)
from avatar_engine.causal_dit.cache import CacheContext, KVCache
from avatar_engine.causal_dit.model import CausalDiT, preset
from avatar_engine.causal_dit.positions import PositionScheme
from avatar_engine.causal_dit.vae import ConvCache, StreamingVAE, VAEConfig


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_block_by_block_decode_equals_whole_decode():
    torch.manual_seed(0)
    vae = StreamingVAE(VAEConfig(latent_channels=8, width=16)).eval()
    latents = torch.randn(1, 9, 8, 4, 4)
    with torch.no_grad():
        whole = vae.decode(latents)
        cache = ConvCache()
        blocks = torch.cat([vae.decode(latents[:, i:i + 3], cache) for i in range(0, 9, 3)], 2)
        seamless = (blocks - whole).abs().max().item()
        no_cache = torch.cat([vae.decode(latents[:, i:i + 3]) for i in range(0, 9, 3)], 2)
    print(f"block vs whole decode max abs diff {seamless:.2e}")
    assert whole.shape == (1, 3, 36, 32, 32)
    assert seamless <= 1e-5
    assert (no_cache - whole).abs().max() > 1e-3     # without the feature cache, blocks have seams


def test_encode_is_causal():
    torch.manual_seed(0)
    vae = StreamingVAE(VAEConfig(latent_channels=8, width=16)).eval()
    video = torch.rand(1, 3, 16, 32, 32) * 2 - 1
    changed = video.clone()
    changed[:, :, 8:] = 0        # change the future (latent frames 2, 3)
    with torch.no_grad():
        a, b = vae.encode(video), vae.encode(changed)
    assert a.shape == (1, 4, 8, 4, 4)
    assert torch.equal(a[:, :2], b[:, :2]) and not torch.equal(a[:, 2:], b[:, 2:])


def test_mask_gates_follow_the_mask_bits():
    mask = np.array([1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 1, 0], np.uint8)   # TALK, LISTEN, mixed
    talk, listen = mask_gates(mask, 4)
    assert talk.tolist() == [1.0, 0.0, 0.75] and listen.tolist() == [0.0, 1.0, 0.5]


def test_talk_branch_gets_zeros_where_listening_and_vice_versa():
    torch.manual_seed(0)
    model = CausalDiT(preset("tiny")).eval()
    cfg = model.cfg
    feats = torch.randn(2, model.talk_adapter.history + 3 * cfg.frames_per_latent, cfg.audio_layers, cfg.audio_dim)
    seen = {}
    for name in ("talk_attn", "listen_attn"):
        module = getattr(model.blocks[0], name)
        module.register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, args[1]))
    listen_mask = np.full(12, 2, np.uint8)
    talk_mask = np.full(12, 1, np.uint8)
    gates = [torch.from_numpy(np.stack(g)) for g in zip(mask_gates(listen_mask, 4), mask_gates(talk_mask, 4))]
    talk, listen = model.audio_tokens(feats, feats, gates[0], gates[1])   # batch 0 listens, batch 1 talks
    with torch.no_grad():
        ctx = CacheContext(KVCache(cfg.layers, 0), [1, 2, 3], PositionScheme(), model.rope, (4, 4))
        model(torch.randn(2, 3, cfg.latent_channels, 4, 4), torch.full((2, 3), 0.5), talk, listen, ctx)
    assert torch.count_nonzero(seen["talk_attn"][0]) == 0 and torch.count_nonzero(seen["talk_attn"][1]) > 0
    assert torch.count_nonzero(seen["listen_attn"][1]) == 0 and torch.count_nonzero(seen["listen_attn"][0]) > 0


def test_whisper_features_block_by_block():
    encoder = WhisperEncoder(threads=1)
    stream = AudioFeatureStream(encoder, context_s=2.0)
    t = np.arange(16000 * 2) / 16000
    speechy = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    block = 12 * 16000 // 25
    feats = [stream.push(speechy[i:i + block], 12) for i in range(0, 3 * block, block)]
    assert all(f.shape == (12, 1, 384) and np.isfinite(f).all() for f in feats)
    stream.reset()
    again = stream.push(speechy[:block], 12)
    np.testing.assert_array_equal(again, feats[0])             # deterministic from a reset
    silence = AudioFeatureStream(encoder).push(np.zeros(block, np.float32), 12)
    assert np.abs(silence - feats[0]).mean() > 1e-2             # and it hears the audio


def test_wav2vec2_without_a_model_directory_is_one_clear_line():
    with pytest.raises(AudioEncoderError) as e:   # transformers missing, or the directory missing
        Wav2Vec2Encoder("/nonexistent/wav2vec2")
    assert "\n" not in str(e.value) and ("transformers" in str(e.value) or "does not exist" in str(e.value))
