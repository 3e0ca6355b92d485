"""Inference matches training: a tiny model overfit on one clip reproduces it through the
engine backend's full streaming path (audio encoder, cache, positions, 4-step sampler,
streaming VAE). Also: no checkpoint, no avatar."""
import numpy as np
import pytest
import torch

from avatar_engine.backend import Block
from config import load_config
from avatar_engine.causal_dit.audio import WhisperEncoder
from avatar_engine.causal_dit.backend import BackendError, CausalDiTBackend
from avatar_engine.causal_dit.checkpoint import save_checkpoint
from avatar_engine.causal_dit.synthetic import talking_clip
from avatar_engine.causal_dit.train import TrainConfig, train_on_clip
from avatar_engine.causal_dit.vae import VAEConfig

FPS, SR = 25, 16000


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = (((a.astype(np.float64) - b.astype(np.float64)) / 255) ** 2).mean()
    return 10 * np.log10(1 / mse)


@pytest.mark.parametrize("checkpoint", ["", "/nonexistent/model.safetensors"])
def test_backend_refuses_without_a_checkpoint(checkpoint):
    cfg = load_config(overrides={"avatar": {"backend": "causal_dit", "checkpoint": checkpoint}})
    with pytest.raises(BackendError) as e:
        CausalDiTBackend.from_config(cfg.avatar, cfg.causal_dit)
    assert "\n" not in str(e.value) and "checkpoint" in str(e.value)


def test_overfit_clip_is_reproduced_through_the_streaming_path(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        check_overfit(tmp_path)
    finally:
        torch.set_num_threads(before)


def check_overfit(tmp_path):
    frames, audio, mask = talking_clip(48)                 # 4 blocks of 12 frames, 32×32
    silence = np.zeros_like(audio)
    encoder = WhisperEncoder(threads=2)
    cfg = TrainConfig(vae=VAEConfig(latent_channels=8, width=32), vae_steps=250, dit_steps=150)
    model, vae, clip = train_on_clip(frames, audio, silence, mask, cfg, encoder=encoder)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, model, vae, cfg.stream)

    backend = CausalDiTBackend(str(path), encoder=encoder)
    backend.reset(frames[0])
    per_block = 12 * SR // FPS
    rendered = np.concatenate([
        backend.render(Block(n, n * 12 / FPS, FPS, SR, audio[n * per_block:(n + 1) * per_block],
                             silence[n * per_block:(n + 1) * per_block], mask[n * 12:(n + 1) * 12]))
        for n in range(4)])
    with torch.no_grad():
        reconstructed = vae.decode(vae.encode(clip.video))[0]
    vae_only = ((reconstructed.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()
    print(f"PSNR streamed vs clip {psnr(rendered, frames):.1f} dB; VAE reconstruction alone "
          f"{psnr(vae_only, frames):.1f} dB; streamed vs VAE reconstruction {psnr(rendered, vae_only):.1f} dB")
    assert rendered.shape == frames.shape and rendered.dtype == np.uint8
    assert psnr(rendered, frames) >= 20.0
    assert psnr(rendered, vae_only) >= 30.0      # the DiT itself reproduces the clip's latents
