"""Regenerate tests/fixtures/liveavatar/wan_s2v_14b_keys.json.gz from the reference code.

Builds the published modules at full size on torch's meta device (no weights, no GPU) and
writes every state-dict key with its shape:
  - transformer: Live Avatar's `CausalWanModel_S2V` (what `from_pretrained` fills from
    `diffusion_pytorch_model-*.safetensors`), cross-checked against Wan2.2's `WanModel_S2V`;
  - lora: the PEFT adapter Live Avatar wraps it in (rank 128, alpha 64, targets
    q,k,v,o,ffn.0,ffn.2), the names `model.load_state_dict(strict=False)` fills from
    `liveavatar.safetensors`;
  - vae: Wan2.1's `WanVAE_` (`Wan2.1_VAE.pth`); t5: the umT5-XXL encoder
    (`models_t5_umt5-xxl-enc-bf16.pth`).

The reference packages are copied to a temporary folder and made importable there (empty
package `__init__`s, which pull in decord/transformers pipelines; no `.to("cuda")` on the
RoPE table; no CUDA default argument in t5.py). Nothing from them enters this repository:
only the figures.

    python tools/liveavatar_keys.py --liveavatar ../LiveAvatar --wan ../Wan2.2 \
        [--out tests/fixtures/liveavatar/wan_s2v_14b_keys.json.gz]

Needs torch, diffusers, einops, easydict, ftfy and peft (the reference's own dependencies;
install them in a scratch environment, not the app's).
"""
from __future__ import annotations

import argparse
import gzip
import importlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests/fixtures/liveavatar/wan_s2v_14b_keys.json.gz"

# Wan2.2-S2V-14B's transformer config (wan/configs/wan_s2v_14B.py, `transformer`), which
# its config.json carries for `from_pretrained`.
TRANSFORMER_CONFIG = dict(
    cond_dim=16, audio_dim=1024, num_audio_token=4, enable_adain=True, adain_mode="attn_norm",
    audio_inject_layers=[0, 4, 8, 12, 16, 20, 24, 27, 30, 33, 36, 39], zero_init=True,
    zero_timestep=True, enable_motioner=False, add_last_motion=True, enable_tsm=False,
    trainable_token_pos_emb=False, enable_framepack=True, framepack_drop_mode="padd",
    model_type="s2v", patch_size=[1, 2, 2], text_len=512, in_dim=16, dim=5120, ffn_dim=13824,
    freq_dim=256, text_dim=4096, out_dim=16, num_heads=40, num_layers=40, window_size=[-1, -1],
    qk_norm=True, cross_attn_norm=True, eps=1e-6)
# s2v_causal_sft.yaml: lora_rank, lora_alpha, lora_target_modules
LORA = dict(rank=128, alpha=64, targets=["q", "k", "v", "o", "ffn.0", "ffn.2"])
# The base directory as published (Wan-AI/Wan2.2-S2V-14B) and the LoRA (Quark-Vision/Live-Avatar).
BASE_FILES = ["config.json", "diffusion_pytorch_model.safetensors.index.json",
              *(f"diffusion_pytorch_model-{i:05d}-of-00004.safetensors" for i in range(1, 5)),
              "Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth", "wav2vec2-large-xlsr-53-english/"]


def git_head(path: Path) -> str:
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def importable_copy(package: Path, into: Path) -> None:
    """Copy a reference package with its `__init__`s emptied and the CUDA-only lines made portable."""
    shutil.copytree(package, into / package.name)
    for init in (into / package.name).rglob("__init__.py"):
        init.write_text("")
    for py in (into / package.name).rglob("*.py"):
        text = py.read_text()
        patched = (text.replace('dim=1).to("cuda")', "dim=1)")
                   .replace("device=torch.cuda.current_device(),", "device='cpu',"))
        if patched != text:
            py.write_text(patched)


def shapes(module) -> list[list]:
    return [[k, list(v.shape)] for k, v in module.state_dict().items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--liveavatar", type=Path, required=True, help="checkout of Alibaba-Quark/LiveAvatar")
    ap.add_argument("--wan", type=Path, required=True, help="checkout of Wan-Video/Wan2.2")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model

    with tempfile.TemporaryDirectory() as tmp:
        importable_copy(args.liveavatar / "liveavatar", Path(tmp))
        importable_copy(args.wan / "wan", Path(tmp))
        sys.path.insert(0, tmp)
        causal = importlib.import_module("liveavatar.models.wan.causal_model_s2v")
        wan_s2v = importlib.import_module("wan.modules.s2v.model_s2v")
        vae2_1 = importlib.import_module("wan.modules.vae2_1")
        t5 = importlib.import_module("wan.modules.t5")
        with torch.device("meta"):
            transformer = causal.CausalWanModel_S2V(**TRANSFORMER_CONFIG)
            base = wan_s2v.WanModel_S2V(**TRANSFORMER_CONFIG)
            # _video_vae's own config, without its checkpoint load
            vae = vae2_1.WanVAE_(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                 temperal_downsample=[False, True, True], dropout=0.0)
            text_encoder = t5.umt5_xxl(encoder_only=True, return_tokenizer=False, dtype=torch.bfloat16,
                                       device="meta")
        transformer_keys = shapes(transformer)
        if transformer_keys != shapes(base):
            raise SystemExit("Live Avatar's CausalWanModel_S2V and Wan2.2's WanModel_S2V differ in keys or shapes")
        peft_model = get_peft_model(transformer, LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"],
                                                            target_modules=LORA["targets"]))
        lora_keys = [[k, s] for k, s in shapes(peft_model) if ".lora_" in k]

    fixture = {
        "source": {"Alibaba-Quark/LiveAvatar": git_head(args.liveavatar), "Wan-Video/Wan2.2": git_head(args.wan)},
        "transformer_config": TRANSFORMER_CONFIG,
        "lora_config": LORA,
        "base_files": BASE_FILES,
        "transformer": transformer_keys,
        "lora": lora_keys,
        "vae": shapes(vae),
        "t5": shapes(text_encoder),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt", compresslevel=9) as f:
        json.dump(fixture, f, separators=(",", ":"))
    count = lambda keys: sum(torch.Size(s).numel() for _, s in keys)
    print(f"wrote {args.out}: transformer {len(transformer_keys)} tensors {count(transformer_keys) / 1e9:.3f} B, "
          f"lora {len(lora_keys)} tensors {count(lora_keys) / 1e6:.1f} M, vae {len(fixture['vae'])} tensors "
          f"{count(fixture['vae']) / 1e6:.1f} M, t5 {len(fixture['t5'])} tensors {count(fixture['t5']) / 1e9:.2f} B")


if __name__ == "__main__":
    main()
