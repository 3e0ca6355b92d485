"""Live Avatar's audio front end and streaming Wan2.1 VAE at full size: FLOPs per block.

Counted with torch's FlopCounterMode on the meta device (no weights, no data), for one
steady-state block (3 latent frames → 12 video frames, 0.48 s at 25 fps) after the
reference's warm-up, and for the wav2vec2-large pass that `Wav2VecBlockStream` runs per
block over its window. Printed with the throughput real time needs and its share of an
H100's dense bf16 peak (a vendor figure, for scale only). `--cpu` also times the full-size
wav2vec2 window here, with random weights in float32.

    python bench/liveavatar_audio_vae.py [--context-s 3] [--cpu]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatar_engine.causal_dit.wan_vae import WARMUP_LATENTS, WanVAE  # noqa: E402

SIZES = [(400, 720), (480, 832)]        # (H, W) in pixels
BLOCK_LATENTS, BLOCK_S = 3, 12 / 25
H100_BF16_DENSE_TFLOPS = 989.0


def flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def vae_block_tflops(h: int, w: int) -> float:
    from diffusers import AutoencoderKLWan
    with torch.device("meta"):
        vae = WanVAE(AutoencoderKLWan(base_dim=96, z_dim=16))
        decoder = vae.stream()
        decoder.decode(torch.zeros(1, 16, WARMUP_LATENTS, h // 8, w // 8), clamp=False)
        return flops(lambda: decoder.decode(torch.zeros(1, 16, BLOCK_LATENTS, h // 8, w // 8), clamp=False)) / 1e12


def wav2vec2_large():
    from transformers import Wav2Vec2Config, Wav2Vec2Model
    config = Wav2Vec2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                            conv_bias=True, feat_extract_norm="layer", do_stable_layer_norm=True)
    return Wav2Vec2Model(config).eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--context-s", type=float, default=3.0, help="Wav2VecBlockStream window")
    parser.add_argument("--cpu", action="store_true", help="also time the wav2vec2 window on this CPU")
    args = parser.parse_args()
    torch.set_num_threads(1)

    print("Wan2.1 VAE stream decode, one 3-latent block (12 frames) after the warm-up")
    for h, w in SIZES:
        tflops = vae_block_tflops(h, w)
        need = tflops / BLOCK_S
        print(f"  {w}x{h}: {tflops:.2f} TFLOP per block; real time needs {need:.1f} TFLOP/s "
              f"= {need / H100_BF16_DENSE_TFLOPS:.3f} of an H100's bf16 peak")

    samples = int(args.context_s * 16000)
    with torch.device("meta"):
        model = wav2vec2_large()
        tflops = flops(lambda: model(torch.zeros(1, samples), output_hidden_states=True)) / 1e12
    print(f"wav2vec2-large over a {args.context_s:g} s window, once per block: {tflops:.3f} TFLOP; "
          f"real time needs {tflops / BLOCK_S:.2f} TFLOP/s = {tflops / BLOCK_S / H100_BF16_DENSE_TFLOPS:.4f} "
          f"of an H100's bf16 peak")
    if args.cpu:
        model = wav2vec2_large()
        x = torch.randn(1, samples)
        with torch.no_grad():
            model(x, output_hidden_states=True)
            start = time.perf_counter()
            model(x, output_hidden_states=True)
        seconds = time.perf_counter() - start
        print(f"  on this CPU (1 thread, fp32): {seconds * 1e3:.0f} ms per block = "
              f"{BLOCK_S / seconds:.2f} x real time")


if __name__ == "__main__":
    main()
