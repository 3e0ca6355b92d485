"""The Live Avatar backend end to end on the CPU: a tiny checkpoint directory in the
published layout (the fixtures' random DiT + LoRA, Wan2.1 VAE and wav2vec2), a portrait
and speech in, 12-frame blocks at 25 fps out, through the engine's runtime.

The DiT fixture mixes 16-wide audio states and the wav2vec2 fixture gives 32: the
directory's transformer takes the fixture's weights with its two first audio convs widened
to 32 inputs (random), and says so in its config.json.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file, save_file

import assets
from avatar_engine.causal_dit import liveavatar_files as la
from avatar_engine.causal_dit.backend import BackendError, open_liveavatar
from avatar_engine.causal_dit.liveavatar_backend import LiveAvatarBackend
from avatar_engine.causal_dit.model import preset
from avatar_engine.causal_dit.preflight import GPU
from avatar_engine.causal_dit.prompt_cache import PromptCache
from avatar_engine.causal_dit.wan_keys import wan_config
from avatar_engine.runtime import AvatarRuntime
from config import load_config

FIXTURES = Path(__file__).parent / "fixtures" / "liveavatar"
PROMPT = "A woman talks to the camera in a bright studio."
HEIGHT, WIDTH = 128, 64         # latent 16 × 8: FramePack packs 4× with an 8 × 8 kernel
BLOCKS = 5                     # clip 0 and the first block after the adaptive sink
LORA_ALPHA = 2.0               # the fixture LoRA's (tools/liveavatar_fixture_dit.py)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    base = tmp_path_factory.mktemp("liveavatar") / "Wan2.2-S2V-14B"
    base.mkdir()
    weights = load_file(FIXTURES / "dit" / "reference_weights.safetensors")
    g = torch.Generator().manual_seed(0)
    for conv in ("conv1_local", "conv1_global"):
        key = f"casual_audio_encoder.encoder.{conv}.conv.weight"
        out, _, kernel = weights[key].shape
        weights[key] = torch.randn(out, 32, kernel, generator=g) / 8
    cfg = preset("liveavatar-tiny", audio_dim=32)
    (base / la.CONFIG).write_text(json.dumps({"_class_name": "WanModel_S2V", **wan_config(cfg)}))
    save_file(weights, str(base / "diffusion_pytorch_model.safetensors"))
    shutil.copy(FIXTURES / "audio_vae" / la.VAE, base)
    shutil.copytree(FIXTURES / "audio_vae" / la.WAV2VEC2, base / la.WAV2VEC2)
    # the prompt's states as the umT5 encoder would leave them in the cache (its own test
    # is test_liveavatar_text_encoder; the tiny T5 fixture is 32 wide, this DiT reads 16)
    PromptCache(base / "prompt_cache").get(PROMPT, encode=lambda p: torch.randn(7, cfg.text_dim, generator=g))
    return base, FIXTURES / "dit" / "lora.safetensors"


@pytest.fixture(scope="module")
def backend(checkpoint):
    base, lora = checkpoint
    return LiveAvatarBackend(base, lora, prompt=PROMPT, height=HEIGHT, width=WIDTH, seed=3, audio_context_s=1.0,
                             device="cpu", lora_alpha=LORA_ALPHA)


@pytest.fixture(scope="module")
def speech():
    wave, rate = soundfile.read(FIXTURES / "audio_vae" / "speech.wav", dtype="float32")
    return wave, rate


def stream(backend, talk=None, rate=16000):
    runtime = AvatarRuntime(backend, assets.default_portrait(), fps=25, frames_per_block=backend.block_video_frames)
    if talk is not None:
        runtime.push_talk(talk, rate)
    return [runtime.step() for _ in range(BLOCKS)]


def test_speech_in_twelve_frame_blocks_out_following_the_audio(backend, speech):
    talking = stream(backend, *speech)
    assert [b.index for b in talking] == list(range(BLOCKS))
    for b in talking:
        assert b.frames.shape == (12, HEIGHT, WIDTH, 3) and b.frames.dtype == np.uint8
        assert len(b.audio) == 12 * 640 and b.mask[0] == 1                  # talking (2.3 s of speech)
        assert b.frames.std() > 1                                            # a picture, not a flat fill
        assert np.abs(np.diff(b.frames[3:].astype(int), axis=0)).mean() > 0  # moving (block 0 holds 3 frames)
    silent = stream(backend)                              # listening: silent talk audio
    again = stream(backend, *speech)                      # reset: the same session again
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(talking, again))
    differ = [np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() for a, b in zip(talking, silent)]
    assert min(differ) > 0.1, differ


def test_flush_forgets_the_speech_heard(backend, speech):
    wave, _ = speech
    backend.talk.push(wave[:12 * 640])
    assert len(backend.talk._buffer) >= 12 * 640
    backend.flush()
    assert len(backend.talk._buffer) == 0


def test_cpu_and_sizes_only_when_asked(checkpoint):
    base, lora = checkpoint
    with pytest.raises(BackendError) as e:                # this machine: no CUDA
        LiveAvatarBackend(base, lora, prompt=PROMPT)
    assert "torch sees no CUDA GPU" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(BackendError, match="multiples of 16 pixels, got 64×40"):
        LiveAvatarBackend(base, lora, prompt=PROMPT, height=64, width=40, device="cpu")
    # a prompt not cached yet goes to the checkpoint's umT5 encoder, which this directory lacks
    with pytest.raises(BackendError, match=r"models_t5_umt5-xxl-enc-bf16.pth is missing: it comes with Wan2.2-S2V"):
        LiveAvatarBackend(base, lora, prompt="another prompt", height=HEIGHT, width=WIDTH, device="cpu",
                          lora_alpha=LORA_ALPHA)


def test_the_app_path_still_refuses_in_one_line(checkpoint):
    """Through the config the preflight guards the published model: the tiny directory is
    not it, and several ranks are torchrun's job, not the app's."""
    base, lora = checkpoint
    cfg = load_config(overrides={"avatar": {"backend": "causal_dit", "checkpoint": str(base), "lora": str(lora)}})
    with pytest.raises(BackendError) as e:
        open_liveavatar(cfg.avatar, cfg.causal_dit, gpus=[GPU("NVIDIA H100 80GB HBM3", 81559 * 2**20, (9, 0))])
    assert str(e.value).startswith(f"Live Avatar checkpoint {base}: {la.CONFIG}: dim 32") and "\n" not in str(e.value)
