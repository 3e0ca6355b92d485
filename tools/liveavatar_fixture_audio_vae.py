"""Regenerate tests/fixtures/liveavatar/audio_vae/ from a Live Avatar reference checkout.

    pip install --target /tmp/tf4 "transformers==4.51.3" "huggingface_hub<1.0" "tokenizers<0.22" --no-deps
    PYTHONPATH=/tmp/tf4 python tools/liveavatar_fixture_audio_vae.py /path/to/LiveAvatar

Runs the reference's own modules (never copied into this project) at a tiny size with
random weights on CPU, and writes what they output:
- `liveavatar/models/wan/wan_2_2/modules/s2v/audio_encoder.py` (`AudioEncoder`): a 16 kHz
  file through a tiny random wav2vec2 (24 layers, width 32, the real feature-extractor
  strides) → all 25 hidden states, interpolated 50 → 30 fps (`extract_audio_feat`), then
  indexed at 25 fps in clips of 48 frames (`get_audio_embed_bucket_fps`) and laid out as
  `causal_s2v_pipeline_tpp.py` `encode_audio` does: (1, 25, 32, frames).
- `liveavatar/models/wan/wan_2_2/modules/vae_streaming.py` (`WanVAE`, the streaming Wan2.1
  VAE the TPP pipeline uses): encode of a reference image and of the 73-frame motion video,
  then `stream_decode` warmed with the first 7 motion latents and 4 blocks of 3 latent frames,
  sliced as `causal_s2v_pipeline_tpp.py` l.1118–1128 does.

Run it under the reference's transformers (4.49–4.51.3): transformers 5 changed what the
last of `hidden_states` is for this model (before, not after, the final LayerNorm).
Needs einops (the reference VAE imports it). Stubs, no edits: the package `__init__`s are
skipped (they import peft, decord, ...), `librosa.load` reads the 16 kHz file with
soundfile, torch.compile is off (ENABLE_COMPILE=false), and the reference's fixed
`dim=96` VAE builder is called with `dim=4`. Every parameter, including the zero- and
one-initialised ones, is randomised so that no branch hides.
"""
from __future__ import annotations

import argparse
import functools
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import soundfile
import torch
from safetensors.torch import load_file, save_file

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "liveavatar" / "audio_vae"
SAMPLE_RATE = 16000
SPEECH_S = 2.3              # 57 video frames of audio, padded by the reference to 2 clips of 48
CLIP_FRAMES, FPS = 48, 25   # infer_frames and sample_fps of the Live Avatar config
VAE_DIM = 4                 # the real VAE has 96
IMAGE_HW = (16, 32)         # a 2 × 4 latent
MOTION_FRAMES = 73          # config.transformer.motion_frames
WARMUP_LATENTS = 7          # motion_latents[:, :, :7] warms the stream decoder
BLOCK_LATENTS, BLOCKS = 3, 4


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def reference_modules(root: Path):
    """The reference audio encoder and streaming VAE modules, imported without their packages."""
    os.environ["ENABLE_COMPILE"] = "false"
    wan = root / "liveavatar" / "models" / "wan"
    for name, path in [("liveavatar", root / "liveavatar"), ("liveavatar.models", root / "liveavatar" / "models"),
                       ("liveavatar.models.wan", wan)]:
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    load_module("liveavatar.models.wan.inference_utils", wan / "inference_utils.py")

    def librosa_load(path, sr):
        audio, rate = soundfile.read(path, dtype="float32")
        assert rate == sr and audio.ndim == 1, "the fixture speech is 16 kHz mono"
        return audio, rate
    librosa = types.ModuleType("librosa")
    librosa.__spec__ = importlib.machinery.ModuleSpec("librosa", None)   # looks installed to find_spec
    librosa.load = librosa_load
    sys.modules["librosa"] = librosa
    modules = wan / "wan_2_2" / "modules"
    return (load_module("reference_audio_encoder", modules / "s2v" / "audio_encoder.py"),
            load_module("reference_vae_streaming", modules / "vae_streaming.py"))


@torch.no_grad()
def randomise(module: torch.nn.Module, generator: torch.Generator):
    """Every parameter random: norm gains around 1, biases around 0, weights ~ 1/sqrt(fan-in)."""
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=generator)
        if name.endswith(("gamma", "original0", "weight_g")) or (p.ndim == 1 and "norm" in name and name.endswith("weight")):
            p.copy_(1 + 0.2 * noise)
        elif p.ndim <= 1:
            p.copy_(0.1 * noise)
        else:
            fan_in = p[0].numel()
            p.copy_(noise / fan_in ** 0.5)


def speech_like(seconds: float, generator: np.random.Generator) -> np.ndarray:
    """A voiced, syllable-modulated signal with noise: a stand-in for speech, as 16-bit PCM."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    audio = 0.2 * syllables * voiced + 0.02 * generator.standard_normal(len(t))
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16)


def build_wav2vec2(directory: Path, generator: torch.Generator):
    """A tiny random wav2vec2 laid out like wav2vec2-large-xlsr-53-english (CTC, stable layer norm)."""
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=24, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16,) * 7, conv_bias=True, feat_extract_norm="layer",
                            do_stable_layer_norm=True, num_conv_pos_embeddings=128,
                            num_conv_pos_embedding_groups=16, vocab_size=8, pad_token_id=0,
                            architectures=["Wav2Vec2ForCTC"])
    model = Wav2Vec2ForCTC(config).eval()
    randomise(model, generator)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    # the published file names the positional conv's weight norm weight_g / weight_v
    weights = load_file(directory / "model.safetensors")
    weights = {k.replace("parametrizations.weight.original0", "weight_g")
                .replace("parametrizations.weight.original1", "weight_v"): v for k, v in weights.items()}
    save_file(weights, directory / "model.safetensors", metadata={"format": "pt"})
    vocab = directory / "vocab.json"
    vocab.write_text(json.dumps({"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5, "b": 6, "c": 7}))
    tokenizer = Wav2Vec2CTCTokenizer(str(vocab), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(directory)


def run_audio(audio_encoder, out: Path) -> dict:
    encoder = audio_encoder.AudioEncoder(model_id=str(out / "wav2vec2-large-xlsr-53-english"))
    z = encoder.extract_audio_feat(str(out / "speech.wav"), return_all_layers=True)   # (25, T30, 32)
    bucket, clips = encoder.get_audio_embed_bucket_fps(z, fps=FPS, batch_frames=CLIP_FRAMES, m=0)
    audio_emb = bucket.unsqueeze(0).permute(0, 2, 3, 1)          # (1, 25, 32, clips · 48), encode_audio
    return {"audio_layers_30fps": z, "audio_emb": audio_emb.contiguous(), "audio_clips": torch.tensor(clips)}


def run_vae(vae_streaming, out: Path, generator: torch.Generator) -> dict:
    builder = vae_streaming._video_vae
    model = vae_streaming.WanVAE_(dim=VAE_DIM, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                  attn_scales=[], temperal_downsample=[False, True, True])
    randomise(model, generator)
    torch.save(model.state_dict(), out / "Wan2.1_VAE.pth")
    vae_streaming._video_vae = functools.partial(builder, dim=VAE_DIM)
    vae = vae_streaming.WanVAE(vae_pth=str(out / "Wan2.1_VAE.pth"), device="cpu")    # for encode and decode

    h, w = IMAGE_HW
    image = torch.rand(1, 3, 1, h, w, generator=generator) * 2 - 1
    ref_latents = torch.stack(vae.encode(image))                                    # (1, 16, 1, 2, 4)
    motion_latents = torch.stack(vae.encode(image.repeat(1, 1, MOTION_FRAMES, 1, 1)))  # (1, 16, 19, 2, 4)
    blocks = torch.randn(BLOCKS, 1, 16, BLOCK_LATENTS, h // 8, w // 8, generator=generator)
    result = {"ref_image": image, "ref_latents": ref_latents, "motion_latents": motion_latents, "block_latents": blocks}

    # what the pipeline emits: clamped frames, the last 12 of each block, 3 fewer for the first
    vae.stream_decode(motion_latents[:, :, :WARMUP_LATENTS])
    for i, block in enumerate(blocks):
        image_out = torch.stack(vae.stream_decode(block))[:, :, -(CLIP_FRAMES // BLOCKS):]
        result[f"stream_frames_{i}"] = image_out[:, :, 3:] if i == 0 else image_out
    # the same stream before the clamp, and the warm-up's own output, from the model under the wrapper
    raw = vae_streaming.WanVAE(vae_pth=str(out / "Wan2.1_VAE.pth"), device="cpu")
    result["stream_raw_warmup"] = raw.model.stream_decode(motion_latents[:, :, :WARMUP_LATENTS], raw.scale)
    for i, block in enumerate(blocks):
        result[f"stream_raw_{i}"] = raw.model.stream_decode(block, raw.scale)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("liveavatar", type=Path, help="a checkout of Alibaba-Quark/LiveAvatar")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    import transformers
    if int(transformers.__version__.split(".")[0]) >= 5:
        sys.exit(f"transformers {transformers.__version__}: run this under the reference's 4.49–4.51.3 "
                 f"(see the docstring), transformers 5 changed the last hidden state")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(9)
    audio_encoder, vae_streaming = reference_modules(args.liveavatar.resolve())
    args.out.mkdir(parents=True, exist_ok=True)
    build_wav2vec2(args.out / "wav2vec2-large-xlsr-53-english", generator)
    soundfile.write(args.out / "speech.wav", speech_like(SPEECH_S, np.random.default_rng(9)), SAMPLE_RATE,
                    subtype="PCM_16")
    with torch.no_grad():
        tensors = run_audio(audio_encoder, args.out) | run_vae(vae_streaming, args.out, generator)
    commit = subprocess.run(["git", "-C", str(args.liveavatar), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    meta = {"liveavatar_commit": commit, "transformers": transformers.__version__, "torch": torch.__version__,
            "fps": str(FPS), "clip_frames": str(CLIP_FRAMES), "warmup_latents": str(WARMUP_LATENTS)}
    save_file({k: v.float().contiguous() if v.is_floating_point() else v for k, v in tensors.items()},
              args.out / "reference.safetensors", metadata=meta)
    for k, v in tensors.items():
        print(f"{k:22s} {tuple(v.shape)}")
    print(f"wrote {args.out} ({sum(f.stat().st_size for f in args.out.rglob('*') if f.is_file()) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
