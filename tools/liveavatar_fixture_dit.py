"""Regenerate the Live Avatar DiT equivalence fixture from a reference checkout.

    python tools/liveavatar_fixture_dit.py /path/to/LiveAvatar [--out tests/fixtures/liveavatar/dit]

Runs the public reference code (github.com/Alibaba-Quark/LiveAvatar, `CausalWanModel_S2V`
in liveavatar/models/wan/causal_model_s2v.py, the streaming loop of
causal_s2v_pipeline_tpp.py) at a tiny size with random weights on CPU and writes what
tests/test_liveavatar_dit.py compares against: the weights (reference key names), a PEFT
LoRA, the inputs, and the outputs — sink K/V, every step's velocity and every block's
latent over 12 blocks (3 clips: the ring wraps, the reference rolls, the adaptive sink
swaps at clip 1), the merged LoRA weights and the audio encoder's tokens.

The reference code is not part of this project: it is copied to a temporary folder and
run there with these edits only (each must match exactly once):
- empty package `__init__`s (the real ones import the whole pipeline: T5, VAE, decord…);
- flash / cuDNN attention replaced by plain fp32 scaled_dot_product_attention (all keys
  attended, as the reference does: it passes no padding mask to those kernels);
- `.to("cuda")` of the RoPE table dropped; the hard-coded width 5120 of the empty noisy
  input of the sink forward made the model width;
- the bf16 cast of norm3's input dropped (a no-op in the bf16 model; here it would only
  round an fp32 comparison);
- `random.randint` (the rolling-RoPE distance) fed from a recorded sequence;
- umT5 (t5.py): the CUDA default device evaluated at import made 'cpu'; `ftfy` (imported by
  the tokenizer module, unused here) stubbed.
It also writes t5.safetensors: a tiny Wan T5Encoder (umT5 structure) with random weights,
token ids and its states, as Wan's T5EncoderModel computes them (padded with a mask, trimmed).
Needs diffusers, einops and peft importable (e.g. `pip install --target DIR ...` and
PYTHONPATH=DIR); none of them is a project requirement.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

# The tiny configuration (mirrored by preset "liveavatar-tiny" in causal_dit/model.py).
TINY = dict(cond_dim=16, audio_dim=16, num_audio_token=4, enable_adain=True, adain_mode="attn_norm",
            audio_inject_layers=[0, 2], zero_init=True, zero_timestep=True, enable_motioner=False,
            add_last_motion=True, enable_framepack=True, framepack_drop_mode="padd", in_dim=16,
            dim=32, ffn_dim=64, freq_dim=32, text_dim=16, out_dim=16, num_heads=2, num_layers=3,
            cross_attn_norm=True, eps=1e-6, text_len=512)
LATENT_H, LATENT_W = 16, 8
CLIPS, BLOCKS_PER_CLIP, FRAMES_PER_BLOCK = 3, 4, 3
MOTION_FRAMES, MOTION_LATENTS = 73, 19
PROMPT_TOKENS, STEPS, SHIFT, SEED = 7, 4, 3.0, 42
LORA_RANK, LORA_ALPHA = 4, 2.0
LORA_TARGETS = ["q", "k", "v", "o", "ffn.0", "ffn.2"]

EDITS = {   # file → [(old, new)], each old must occur exactly once
    "liveavatar/models/wan/wan_2_2/modules/t5.py": [
        ("device=torch.cuda.current_device(),", "device='cpu',"),      # evaluated at import
    ],
    "liveavatar/models/wan/causal_model_s2v.py": [
        ('dim=1).to("cuda")', "dim=1)"),
        ("torch.zeros([1,5120,nf,height//2,width//2])", "torch.zeros([1,self.dim,nf,height//2,width//2])"),
        ("self.norm3(x.to(torch.bfloat16))", "self.norm3(x)"),
    ],
}
PACKAGES = ["liveavatar", "liveavatar/models", "liveavatar/models/wan", "liveavatar/models/wan/wan_2_2",
            "liveavatar/models/wan/wan_2_2/modules", "liveavatar/models/wan/wan_2_2/modules/s2v",
            "liveavatar/models/wan/wan_2_2/distributed"]


def sdpa(q, k, v, *args, **kwargs):
    """(B, L, heads, hd) in → (B, Lq, heads, hd) out, fp32, every key attended."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2).float(), k.transpose(1, 2).float(),
                                         v.transpose(1, 2).float())
    return out.transpose(1, 2).contiguous()


def import_reference(checkout: Path, workdir: Path):
    shutil.copytree(checkout / "liveavatar", workdir / "liveavatar")
    for pkg in PACKAGES:
        (workdir / pkg / "__init__.py").write_text("")
    for rel, edits in EDITS.items():
        path = workdir / rel
        text = path.read_text()
        for old, new in edits:
            if text.count(old) != 1:
                raise SystemExit(f"{rel}: expected one {old!r}; the reference changed, update EDITS")
            text = text.replace(old, new)
        path.write_text(text)
    os.environ["ENABLE_COMPILE"] = "false"
    sys.path.insert(0, str(workdir))
    import liveavatar.models.wan.causal_model_s2v as causal
    import liveavatar.models.wan.wan_2_2.modules.model as wan_model
    for module in (causal, wan_model):
        for name in ("flash_attention", "attention"):
            if hasattr(module, name):
                setattr(module, name, sdpa)
    return causal


T5_TINY = dict(vocab=100, dim=32, dim_attn=32, dim_ffn=48, num_heads=4, num_layers=2, num_buckets=32,
               shared_pos=False, dropout=0.0)
T5_TOKENS, T5_PADDED = 21, 40


def t5_case(g: torch.Generator) -> dict[str, torch.Tensor]:
    import types

    sys.modules.setdefault("ftfy", types.ModuleType("ftfy"))
    from liveavatar.models.wan.wan_2_2.modules.t5 import T5Encoder

    encoder = T5Encoder(**T5_TINY).eval()
    randomise(encoder, g)
    ids = torch.randint(1, T5_TINY["vocab"], (1, T5_PADDED), generator=g)
    mask = torch.zeros(1, T5_PADDED, dtype=torch.long)
    mask[:, :T5_TOKENS] = 1
    ids = ids * mask                                  # padding id 0, as the tokenizer pads
    with torch.no_grad():
        states = encoder(ids, mask)[0, :T5_TOKENS]    # T5EncoderModel.__call__ keeps u[:seq_len]
    weights = {f"weight.{k}": v.detach().clone().contiguous() for k, v in encoder.state_dict().items()}
    return weights | {"ids": ids[0, :T5_TOKENS].clone(), "states": states.clone()}


def randomise(model: torch.nn.Module, g: torch.Generator):
    """Every parameter random (zero-initialised ones too, so no branch hides)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("casual_audio_encoder.weights"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)          # SiLU weights summing away from 0
            elif p.ndim >= 2 and "modulation" not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkout", type=Path, help="a LiveAvatar checkout (the folder holding liveavatar/)")
    p.add_argument("--latent", type=int, nargs=2, default=(LATENT_H, LATENT_W), metavar=("H", "W"),
                   help="latent height and width (the committed fixture: 16 8)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/liveavatar/dit")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from diffusers import FlowMatchEulerDiscreteScheduler
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        causal = import_reference(args.checkout.resolve(), Path(tmp))
        g = torch.Generator().manual_seed(SEED)
        torch.manual_seed(SEED)
        model = causal.CausalWanModel_S2V(**TINY).float()
        randomise(model, g)
        base = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

        # LoRA as the pipeline adds it (PEFT), random A and B, merged before streaming
        model = get_peft_model(model, LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=LORA_TARGETS))
        lora = {}
        with torch.no_grad():
            for name, prm in model.named_parameters():
                if ".lora_" in name:
                    prm.copy_(torch.randn(prm.shape, generator=g) * 0.3)
                    lora[name.removeprefix("base_model.model.")] = prm.detach().clone()
        model = model.merge_and_unload().eval()
        merged = {k: v.detach().clone() for k, v in model.state_dict().items()
                  if not torch.equal(v, base[k])}

        (h, w), c, d = args.latent, 16, TINY["dim"]
        heads, hd = TINY["num_heads"], d // TINY["num_heads"]
        frame_tokens = (h // 2) * (w // 2)
        case = {
            "reference_latent": torch.randn(1, c, 1, h, w, generator=g),
            "motion_latents": torch.randn(1, c, MOTION_LATENTS, h, w, generator=g),
            "prompt_states": torch.randn(PROMPT_TOKENS, TINY["text_dim"], generator=g),
        }
        clip_frames = BLOCKS_PER_CLIP * FRAMES_PER_BLOCK * 4
        for r in range(CLIPS):
            case[f"audio_features.clip{r}"] = torch.randn(1, 25, TINY["audio_dim"], clip_frames, generator=g)
            case[f"noise.clip{r}"] = torch.randn(c, BLOCKS_PER_CLIP * FRAMES_PER_BLOCK, h, w,
                                                 generator=torch.Generator().manual_seed(SEED + r))
        draws = random.Random(SEED)
        rd = [draws.randint(4, 30) for _ in range(CLIPS * BLOCKS_PER_CLIP * STEPS)]
        feed = iter(rd)
        random.randint = lambda a, b: next(feed)

        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=SHIFT)
        scheduler.set_timesteps(STEPS)
        case["timesteps"], case["sigmas"] = scheduler.timesteps.clone(), scheduler.sigmas.clone()
        case["relative_distance"] = torch.tensor(rd)

        ring = BLOCKS_PER_CLIP * FRAMES_PER_BLOCK * frame_tokens
        sink_len = 2 * frame_tokens + frame_tokens // 4 + frame_tokens // 16 * 4 + 16
        caches = [[{"k": torch.zeros(1, ring, heads, hd), "v": torch.zeros(1, ring, heads, hd),
                    "cond_k": torch.zeros(1, sink_len, heads, hd), "cond_v": torch.zeros(1, sink_len, heads, hd),
                    "cond_end": torch.tensor([0])} for _ in range(TINY["num_layers"])] for _ in range(STEPS)]
        cross = [{"k": torch.zeros(1, 0, heads, hd), "v": torch.zeros(1, 0, heads, hd), "is_init": False}
                 for _ in range(TINY["num_layers"])]
        ref = case["reference_latent"]
        block_seq = FRAMES_PER_BLOCK * frame_tokens
        with torch.no_grad():
            for r in range(CLIPS):
                clip = case[f"noise.clip{r}"].clone()
                audio = case[f"audio_features.clip{r}"]
                common = dict(context=[case["prompt_states"]], seq_len=None,
                              cond_states=torch.zeros(1, c, FRAMES_PER_BLOCK, h, w),
                              motion_latents=case["motion_latents"], motion_frames=[MOTION_FRAMES, MOTION_LATENTS],
                              drop_motion_frames=False, crossattn_cache=cross)
                if r in (0, 1):          # sink prefill; at clip 1 the adaptive sink's new reference
                    for step_cache in caches:
                        model([clip[:, :FRAMES_PER_BLOCK]], t=torch.zeros(1, FRAMES_PER_BLOCK), ref_latents=ref,
                              audio_input=audio[..., :12], sink_flag=True, kv_cache=step_cache,
                              current_start=0, current_end=block_seq, **common)
                    for layer, kv in enumerate(caches[0]):
                        end = int(kv["cond_end"])
                        case[f"sink.clip{r}.layer{layer}.k"] = kv["cond_k"][:, :end].clone()
                        case[f"sink.clip{r}.layer{layer}.v"] = kv["cond_v"][:, :end].clone()
                for b in range(BLOCKS_PER_CLIP):
                    n = r * BLOCKS_PER_CLIP + b
                    x = clip[:, b * FRAMES_PER_BLOCK:(b + 1) * FRAMES_PER_BLOCK]
                    scheduler._step_index, scheduler._begin_index = 0, 0
                    start = n * block_seq
                    for i, t in enumerate(scheduler.timesteps):
                        v = model([x], t=torch.tensor([t] * FRAMES_PER_BLOCK).unsqueeze(0), ref_latents=ref,
                                  audio_input=audio[..., b * 12:(b + 1) * 12], kv_cache=caches[i],
                                  current_start=start, current_end=start + block_seq, **common)[0]
                        case[f"velocity.block{n}.step{i}"] = v.clone()
                        x = scheduler.step(v.unsqueeze(0), t, x.unsqueeze(0), return_dict=False)[0].squeeze(0)
                    case[f"latent.block{n}"] = x.clone()
                    clip[:, b * FRAMES_PER_BLOCK:(b + 1) * FRAMES_PER_BLOCK] = x
                    if n == 0:
                        tokens_global, tokens = model.casual_audio_encoder(torch.cat(
                            [audio[..., :1].repeat(1, 1, 1, MOTION_FRAMES), audio[..., :12]], -1))
                        case["audio_tokens.block0"] = tokens[:, MOTION_LATENTS:].clone()
                        case["audio_global.block0"] = tokens_global[:, MOTION_LATENTS:].clone()
                if r == 0:
                    ref = clip[None, :, :1].clone()       # adaptive sink: block 0's first frame
        t5 = t5_case(g)
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(t5, str(args.out / "t5.safetensors"), metadata={"t5_config": json.dumps(T5_TINY)})
    meta = {"reference_config": json.dumps(TINY), "clips": str(CLIPS), "blocks_per_clip": str(BLOCKS_PER_CLIP),
            "lora_rank": str(LORA_RANK), "lora_alpha": str(LORA_ALPHA), "seed": str(SEED)}
    save_file(base, str(args.out / "reference_weights.safetensors"), metadata=meta)
    save_file(lora, str(args.out / "lora.safetensors"))
    save_file({f"merged.{k}": v.contiguous() for k, v in merged.items()}
              | {k: v.contiguous() for k, v in case.items()}, str(args.out / "case.safetensors"), metadata=meta)
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB): {len(base)} weights, {len(lora)} LoRA tensors, "
          f"{len(case)} case tensors; timesteps {[round(float(t), 2) for t in case['timesteps']]}")


if __name__ == "__main__":
    main()
